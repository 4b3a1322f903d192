package classify

import (
	"bytes"
	"strings"

	"github.com/llmtransport/llmtransport/internal/wire"
)

// Whole-stream classification.
//
// A 2xx event stream can fail anywhere: an error event after content
// (OpenAI data: {"error":…}, Anthropic event: error, Responses
// response.failed or error), a chunk whose finish_reason is content_filter
// or error, or a stream that ends ([DONE], which new-api appends whatever
// happened) without any finish reason, when its format is one that ends
// with a finish reason. parseSSE walks every event of the
// bytes it is given (at most MaxPeek), with the line and field rules the
// transport's peek uses too (wire.Line, wire.Field), and reads each event's data with the
// allocation-free jsonScanner (scanEventFacts); only an error event is
// parsed in full. A stream is known to have ended only when it says so or
// when the body is whole (bodyInfo.whole): a prefix that stops early (the
// transport's peek of the first event) is never "a stream without a finish
// reason". An event that says the stream ended (message_stop,
// response.completed) counts only when it is complete, closed by its blank
// line or its JSON data whole: a prefix cut inside it has not yet read what
// it says (a Responses stream's finish is in response.completed's data).

// sseEvent is one event of a stream: its name, its data (lines joined),
// and whether a blank line closed it (the last event of a prefix may be
// cut off).
type sseEvent struct {
	name   []byte
	data   []byte
	closed bool
}

// sseWalker yields the events of an event stream that carry data. data may
// point into joined, which the next call reuses.
type sseWalker struct {
	body     []byte
	pos      int
	joined   []byte
	comments bool // the stream had comment lines
	// rawJSON is the offset of a line that starts with '{' or '[' outside
	// any field (a JSON error a gateway appended after keep-alives), or -1.
	rawJSON int
}

// next returns the next event that carries data, or ok == false at the end
// of the body or at a raw JSON line (w.rawJSON set).
func (w *sseWalker) next() (ev sseEvent, ok bool) {
	var (
		data  []byte
		dataN int
		name  []byte
	)
	w.joined = w.joined[:0]
	for w.pos < len(w.body) {
		start := w.pos
		var line []byte
		line, w.pos = wire.Line(w.body, w.pos)
		switch {
		case len(line) == 0:
			if dataN > 0 {
				return w.event(name, data, dataN, true), true
			}
			name = nil
		case line[0] == ':':
			w.comments = true
		case line[0] == '{' || line[0] == '[':
			if dataN == 0 {
				w.rawJSON = start
				return sseEvent{}, false
			}
		default:
			field, value := wire.Field(line)
			switch string(field) {
			case "data":
				dataN++
				switch dataN {
				case 1:
					data = value
				case 2:
					w.joined = append(append(append(w.joined, data...), '\n'), value...)
				default:
					w.joined = append(append(w.joined, '\n'), value...)
				}
			case "event":
				name = value
			}
		}
	}
	if dataN > 0 {
		return w.event(name, data, dataN, false), true
	}
	return sseEvent{}, false
}

func (w *sseWalker) event(name, data []byte, dataN int, closed bool) sseEvent {
	if dataN > 1 {
		data = w.joined
	}
	return sseEvent{name: name, data: bytes.TrimSpace(data), closed: closed}
}

// parseSSE walks an event stream. Its first event with data is parsed as
// before (bodySSEJSON, bodySSEText, bodySSEDone) and is always judged. The
// events after it count only when the stream is known to have ended in
// body: at [DONE], at an event that ends it (Anthropic message_stop,
// Responses response.completed), at an error event that ends it (Anthropic
// event: error, a Responses error or response.failed: nothing follows
// them), or at the end of a whole body. Then the first error event among
// them replaces the first event as what the body says, their finish
// reasons count, and a stream without any finish reason is known as such.
// A prefix that stops before (the transport's peek of a stream's start) is
// judged by its first event alone, as its later events may be followed by
// anything. A line that starts with '{' or '[' outside any field is read
// as JSON to the end: before any event it is the body; after events, it
// counts, as the stream's end, only if it is an error.
func (bi *bodyInfo) parseSSE(body []byte) {
	w := sseWalker{body: body, rawJSON: -1}
	var (
		first   = true
		pending *bodyInfo // the first error event after the first event
		later   streamRecord
	)
	for {
		ev, ok := w.next()
		if !ok {
			break
		}
		if len(ev.data) == 0 {
			continue
		}
		if string(ev.data) == "[DONE]" {
			if first {
				bi.kind = bodySSEDone
				bi.event = string(ev.name)
			}
			later.ended = true
			break
		}
		if first {
			first = false
			bi.event = string(ev.name)
			bi.dispatch(ev.data)
			if bi.inBandError() || !bi.success {
				return
			}
			bi.streamContent = true
			facts := nameFacts(ev.name)
			facts.merge(bi.facts)
			facts.settle(ev)
			bi.noteFacts(facts) // the first event's own finish reason always counts
			if facts.end {
				later.ended = true
				break
			}
			continue
		}
		facts := scanEventFacts(ev.name, ev.data)
		facts.settle(ev)
		later.note(facts)
		if pending == nil {
			pending = errorEvent(ev, facts)
		}
		if facts.terminal {
			later.ended = true
			break
		}
		if facts.end {
			break
		}
	}
	switch {
	case w.rawJSON >= 0 && first:
		// Raw JSON after keep-alives: the rest of the body.
		bi.kind = bodyJSON
		bi.parseJSON(body[w.rawJSON:], true)
		return
	case w.rawJSON >= 0 && pending == nil:
		var eb bodyInfo
		eb.kind = bodyJSON
		eb.parseJSON(body[w.rawJSON:], true)
		if eb.inBandError() {
			pending = &eb
			later.ended = true
		}
	case first && !later.ended:
		bi.kind = bodySSENoEvent
	}
	bi.keepAlive = w.comments
	if !later.ended && !bi.whole {
		return // a prefix: the first event is the verdict
	}
	bi.streamEnded = true
	if pending != nil {
		bi.adopt(pending)
		return
	}
	bi.streamFinished = bi.streamFinished || later.finished
	bi.streamKnown = bi.streamKnown || later.known
	if bi.filterReason == "" {
		bi.filterReason = later.filter
	}
}

// streamRecord is what the events after the first said.
type streamRecord struct {
	ended    bool   // an end marker was seen
	finished bool   // some event carried a finish reason
	known    bool   // some event was of a format that ends with a finish reason
	filter   string // the first filter reason
}

func (r *streamRecord) note(f eventFacts) {
	r.ended = r.ended || f.end
	r.finished = r.finished || len(f.finish) > 0
	r.known = r.known || f.known
	if len(f.filter) > 0 && r.filter == "" {
		r.filter = jsonText(f.filter)
	}
}

// errorEvent returns ev, an event after the first, parsed, when it is an
// error event; nil otherwise. A text event is an error (as a first one is)
// only when a blank line closed it: the cut-off end of a prefix says
// nothing.
func errorEvent(ev sseEvent, f eventFacts) *bodyInfo {
	d := ev.data
	if d[0] != '{' && d[0] != '[' {
		if !ev.closed {
			return nil
		}
	} else if !f.isError {
		return nil
	}
	eb := new(bodyInfo)
	eb.event = string(ev.name)
	eb.dispatch(d)
	if !eb.inBandError() {
		return nil
	}
	return eb
}

// adopt makes bi describe the error event eb, keeping what the walk found.
func (bi *bodyInfo) adopt(eb *bodyInfo) {
	eb.whole, eb.keepAlive = bi.whole, bi.keepAlive
	eb.streamEnded, eb.streamContent = true, true
	*bi = *eb
}

// dispatch records the data of the stream's first event.
func (bi *bodyInfo) dispatch(d []byte) {
	switch {
	case string(d) == "[DONE]":
		bi.kind = bodySSEDone
	case d[0] == '{' || d[0] == '[':
		bi.kind = bodySSEJSON
		bi.parseJSON(d, true)
	default:
		bi.kind = bodySSEText
		bi.text = jsonText(d)
	}
}

// noteFacts adds what one event (or a JSON body) says to the stream's
// record.
func (bi *bodyInfo) noteFacts(f eventFacts) {
	if f.end {
		bi.streamEnded = true
	}
	if len(f.finish) > 0 {
		bi.streamFinished = true
	}
	if f.known {
		bi.streamKnown = true
	}
	if len(f.filter) > 0 && bi.filterReason == "" {
		bi.filterReason = jsonText(f.filter)
	}
}

// eventFacts is what one event's data says about its stream. Byte slices
// are views of the data.
type eventFacts struct {
	isError  bool   // an error event
	terminal bool   // an error event that ends the stream (Anthropic, Responses)
	end      bool   // it ends the stream (message_stop, response.completed…)
	finish   []byte // a finish or stop reason
	filter   []byte // a finish, stop or block reason that means a content filter
	// known: the event is of a format whose streams end with a finish
	// reason: an OpenAI chat completion chunk ("object":
	// "chat.completion.chunk" or choices[].delta), an Anthropic event
	// (message_start…), Gemini candidates, a Responses event (response.…).
	// Only in such a stream is a missing finish reason a fault (not in an
	// Assistants stream, say).
	known bool
	// complete: the data was one JSON value read to its end (not cut off).
	complete bool
}

// settle drops the end marker of an event that is cut off: one that no
// blank line closed and whose JSON data did not parse completely. Such an
// event (the last of a prefix) has not said all it says: the finish of a
// Responses stream is in response.completed's data.
func (f *eventFacts) settle(ev sseEvent) {
	if !ev.closed && !f.complete {
		f.end = false
	}
}

// anthropicEvents are the event names and types of Anthropic Messages
// streams.
var anthropicEvents = [...]string{
	"message_start", "message_delta", "message_stop", "content_block_start", "content_block_delta", "content_block_stop",
}

// knownType reports whether an event's name or type is one of a format
// that ends with a finish reason: Anthropic's events, Responses' events.
func knownType(t []byte) bool {
	if bytes.HasPrefix(t, []byte("response.")) {
		return true
	}
	for _, a := range anthropicEvents {
		if string(t) == a {
			return true
		}
	}
	return false
}

// scanEventFacts reads an event's name and JSON data (or a JSON body, with
// a nil name) without copying: errors (an "error" key, a type or object
// "error", event: error, response.failed, finish_reason "error"), finish
// and stop reasons (choices[].finish_reason, Anthropic stop_reason and
// delta.stop_reason, Gemini candidates[].finishReason, Responses
// response.status and incomplete_details.reason), Gemini's
// promptFeedback.blockReason, and the events that end a stream.
func scanEventFacts(name, data []byte) eventFacts {
	f := nameFacts(name)
	if len(data) == 0 || data[0] != '{' {
		return f
	}
	s := newJSONScanner(data)
	for {
		k, raw, ok := s.next()
		if !ok {
			f.complete = s.done()
			return f
		}
		f.note(s.path(), k, raw)
	}
}

// nameFacts is what an event's name says. A Responses response.completed
// or response.incomplete is a finish by itself.
func nameFacts(name []byte) (f eventFacts) {
	switch string(name) {
	case "error", "response.failed":
		f.isError, f.terminal = true, true
	case "message_stop":
		f.end = true
	case "response.completed", "response.incomplete":
		f.end, f.finish = true, name
	}
	f.known = knownType(name)
	return f
}

// merge adds g to f.
func (f *eventFacts) merge(g eventFacts) {
	f.isError = f.isError || g.isError
	f.terminal = f.terminal || g.terminal
	f.end = f.end || g.end
	f.known = f.known || g.known
	f.complete = f.complete || g.complete
	if f.finish == nil {
		f.finish = g.finish
	}
	if f.filter == nil {
		f.filter = g.filter
	}
}

// note records one value of an event's data.
func (f *eventFacts) note(p []jsonSeg, k jsonKind, raw []byte) {
	str := k == jsonString
	switch len(p) {
	case 1:
		switch {
		case p[0].is("error"):
			f.isError = f.isError || k == jsonObject || k == jsonString || k == jsonPartial
		case p[0].is("type") && str:
			switch string(raw) {
			case "error", "response.failed":
				f.isError, f.terminal = true, true
			case "message_stop":
				f.end = true
			case "response.completed", "response.incomplete":
				f.end = true
				if f.finish == nil {
					f.finish = raw
				}
			}
			f.known = f.known || knownType(raw)
		case p[0].is("object") && str && string(raw) == "error":
			f.isError = true
		case p[0].is("object") && str && string(raw) == "chat.completion.chunk":
			f.known = true
		case p[0].is("candidates") && k == jsonArray: // Gemini
			f.known = true
		case p[0].is("stop_reason") && str: // an Anthropic message
			f.reason(raw)
		}
	case 2:
		switch {
		case p[0].is("delta") && p[1].is("stop_reason") && str: // Anthropic message_delta
			f.reason(raw)
		case p[0].is("promptFeedback") && p[1].is("blockReason") && str:
			f.finish, f.filter = raw, raw
		case p[0].is("response") && p[1].is("status") && str:
			switch string(raw) {
			case "failed":
				f.isError = true
			case "completed", "incomplete":
				f.finish = raw
			}
		case p[0].is("response") && p[1].is("error"):
			f.isError = f.isError || k == jsonObject || k == jsonString
		}
	case 3:
		switch {
		case p[0].is("choices") && p[1].key == nil && p[2].is("finish_reason") && str:
			f.reason(raw)
			f.isError = f.isError || errorFinish(string(raw))
		case p[0].is("choices") && p[1].key == nil && p[2].is("error"):
			f.isError = f.isError || k == jsonObject || k == jsonString
		case p[0].is("choices") && p[1].key == nil && p[2].is("delta"):
			f.known = true
		case p[0].is("candidates") && p[1].key == nil && p[2].is("finishReason") && str:
			f.reason(raw)
		case p[0].is("response") && p[1].is("incomplete_details") && p[2].is("reason") && str:
			f.reason(raw)
		}
	}
}

// reason records a finish or stop reason.
func (f *eventFacts) reason(raw []byte) {
	if len(raw) == 0 {
		return
	}
	f.finish = raw
	if f.filter == nil && filterReason(raw) {
		f.filter = raw
	}
}

// filterReasons are the finish and stop reasons that mean the output was
// withheld by a content filter: OpenAI and Azure content_filter (also a
// Responses incomplete reason), Anthropic refusal, Gemini's safety
// reasons (and RECITATION: output withheld as a quotation of its sources).
var filterReasons = [...]string{
	"content_filter", "refusal", "SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY", "RECITATION",
}

// filterReason reports whether a finish reason means a content filter.
func filterReason(raw []byte) bool {
	for _, r := range filterReasons {
		if len(raw) == len(r) && strings.EqualFold(string(raw), r) {
			return true
		}
	}
	return false
}
