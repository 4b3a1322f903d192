package llmtransport

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/llmtransport/llmtransport/internal/circuit"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/llmtransport/llmtransport/internal/wire"
)

// Streams observed as they pass.
//
// Once the first event of a 2xx event stream has reached the caller, the
// transport cannot retry the call; but the stream may still fail. new-api
// forwards an upstream's mid-stream error event verbatim and then appends
// its own usage chunk and [DONE]; Anthropic sends event: error with an
// overloaded_error; a stream may simply stop before its finish reason. To
// every layer that judged the call by its start, such a call looks like a
// success.
//
// So the body handed back for a 2xx event stream is a streamBody: as the
// caller reads, each byte it is given goes through streamScan, which works
// at line and event boundaries and keeps nothing of the stream but the
// current line when it straddles two reads (at most maxWatchLine bytes)
// and, for an event that looks like an error, its data (at most
// maxWatchData bytes). When the scan reaches a verdict, the event is
// classified like a tiny event stream (with the transport's classifier),
// and the call's outcome is corrected after the fact: the call's and the
// attempt's spans get the class and status Error, MetricStreamErrors
// counts it, and the circuit records it as a late outcome (see
// circuit.Ticket.Late). The bytes reach the caller exactly as they came.

// maxWatchLine is how much of one line the scan judges; the rest of a
// longer line is skipped, and a stream with such a line is not judged for
// a missing finish reason (the reason might have been in what was skipped).
const maxWatchLine = 4 << 10

// maxWatchData is how much of an error event's data is kept to classify it.
const maxWatchData = 4 << 10

// streamFormat is what the scan learned of a stream's format from its first
// data line.
type streamFormat uint8

const (
	formatUnknown   streamFormat = iota // no data line yet
	formatOther                         // a format whose end is not judged
	formatChat                          // OpenAI chat completion chunks: a finish_reason is expected
	formatChoices                       // chunks with choices but no "chat.completion.chunk" (Azure's first, gateways'): finish reasons read, none owed
	formatAnthropic                     // Anthropic Messages: a stop_reason is expected
)

// streamVerdict is what the scan found wrong with a stream.
type streamVerdict uint8

const (
	verdictNone        streamVerdict = iota // nothing (yet)
	verdictFiltered                         // a finish reason content_filter, a stop reason refusal
	verdictFinishError                      // a finish reason error
	verdictError                            // an error event
	verdictNoFinish                         // the stream ended without a finish reason
	verdictBroken                           // a read of the stream failed before its end
)

// eventKind is the event: field of the event being read, as far as the scan
// cares.
type eventKind uint8

const (
	eventPlain          eventKind = iota // none, or one the scan ignores
	eventError                           // event: error (Anthropic, OpenAI Responses)
	eventResponseFailed                  // event: response.failed (OpenAI Responses)
	eventMessageStart                    // event: message_start (Anthropic)
	eventMessageDelta                    // event: message_delta (Anthropic: carries the stop reason)
)

// streamScan is the incremental scanner of an event stream. Feed it the
// stream's bytes in any pieces, then call end at the stream's end: its
// verdict does not depend on how the stream was cut (FuzzStreamScan).
//
// Lines end as the event stream format says: at a CRLF, a LF or a CR
// alone (a CRLF split across reads is one line end). An event is suspect when its event: field is error or response.failed, or when a
// data line's first key says error ({"error":…}, {"type":"error"…},
// {"type":"response.failed"…}), or when it carries a finish reason
// content_filter or error (or an Anthropic stop reason refusal); a suspect
// event's data is kept and its verdict given at its end. A stream whose
// first data line is an OpenAI chat completion chunk or an Anthropic
// message_start must carry a finish (stop) reason before [DONE] or its end.
//
// A verdict stops the scan (done). When the event that gave it turns out to
// be no error (the classifier says success: {"error":null,…}), resume
// clears the verdict and the scan goes on: feed again the bytes feed
// returned.
type streamScan struct {
	carry   []byte // the start of a line that straddles reads, at most maxWatchLine bytes
	over    bool   // the line in carry is longer than maxWatchLine
	started bool   // the first line was seen (its BOM dropped)
	skipLF  bool   // the last line ended with a CR at the end of a read: a LF next is part of its end
	long    bool   // a line was longer than maxWatchLine: the end is not judged

	format   streamFormat
	finished bool // a finish (stop) reason was seen
	done     bool // [DONE] was seen, or a verdict given: the rest is not judged
	ending   bool // the stream's end or [DONE] was reached: finish once a verdict given there is cleared

	ev      eventKind     // the current event's event: field
	suspect streamVerdict // what the current event looks like, verdictNone when ordinary
	data    []byte        // the current suspect event's data, at most maxWatchData bytes
	ndata   int           // data lines of the current event

	verdict streamVerdict
	event   eventKind // the event: field of the event that gave the verdict
}

// feed scans b, the next bytes of the stream. When a verdict stops the
// scan, it returns the bytes of b not scanned yet, to feed after resume.
func (s *streamScan) feed(b []byte) []byte {
	for len(b) > 0 && !s.done {
		if s.skipLF {
			s.skipLF = false
			if b[0] == '\n' {
				b = b[1:]
				continue
			}
		}
		i := wire.LineEnd(b)
		if i < 0 {
			s.hold(b)
			return nil
		}
		seg := b[:i]
		if b[i] == '\r' {
			switch {
			case i+1 == len(b):
				s.skipLF = true
			case b[i+1] == '\n':
				i++
			}
		}
		b = b[i+1:]
		if len(s.carry) > 0 || s.over {
			s.hold(seg)
			s.line(s.carry, s.over)
			s.carry, s.over = s.carry[:0], false
			continue
		}
		s.line(seg[:min(len(seg), maxWatchLine)], len(seg) > maxWatchLine)
	}
	return b
}

// hold keeps b, part of a line not ended yet, up to maxWatchLine bytes of
// the line.
func (s *streamScan) hold(b []byte) {
	if room := maxWatchLine - len(s.carry); len(b) > room {
		b, s.over = b[:room], true
	}
	if len(b) == 0 {
		return
	}
	if s.carry == nil {
		s.carry = make([]byte, 0, max(len(b), 512))
	}
	s.carry = append(s.carry, b...)
}

// end scans the end of the stream: a last line without its end, the last
// event without its blank line, and whether a finish reason was due.
func (s *streamScan) end() {
	if s.done {
		return
	}
	s.ending = true
	if len(s.carry) > 0 || s.over {
		s.line(s.carry, s.over)
		s.carry, s.over = s.carry[:0], false
	}
	if !s.done {
		s.dispatch()
	}
	if !s.done {
		s.finish()
	}
}

// resume clears the verdict of an event found to be no error, and goes on
// scanning after it: at the stream's end or [DONE], with finish.
func (s *streamScan) resume() {
	s.verdict, s.event, s.done = verdictNone, eventPlain, false
	s.ev, s.suspect, s.ndata, s.data = eventPlain, verdictNone, 0, s.data[:0]
	if s.ending {
		s.finish()
	}
}

// finish ends the judging at the end of the stream or at [DONE]: a format
// that owes a finish reason and gave none gets verdictNoFinish.
func (s *streamScan) finish() {
	if s.done {
		return
	}
	s.done = true
	if (s.format == formatChat || s.format == formatAnthropic) && !s.finished && !s.long {
		s.verdict, s.event = verdictNoFinish, eventPlain
	}
}

// line scans one line, without its end; over says it was cut at
// maxWatchLine.
func (s *streamScan) line(l []byte, over bool) {
	if over {
		s.long = true
	}
	if !s.started {
		s.started = true
		l = bytes.TrimPrefix(l, []byte(wire.BOM))
	}
	switch {
	case len(l) == 0:
		s.dispatch()
		return
	case l[0] == ':':
		return // a comment
	}
	name, value := wire.Field(l)
	switch string(name) {
	case "data":
		s.dataLine(value)
	case "event":
		s.eventLine(value)
	}
}

// eventLine records the event: field of the current event.
func (s *streamScan) eventLine(v []byte) {
	switch string(v) {
	case "error":
		s.ev = eventError
		s.suspect = verdictError
	case "response.failed":
		s.ev = eventResponseFailed
		s.suspect = verdictError
	case "message_start":
		s.ev = eventMessageStart
	case "message_delta":
		s.ev = eventMessageDelta
	default:
		s.ev = eventPlain
	}
}

// The keys whose values the scan reads.
var (
	finishKey = []byte(`"finish_reason"`)
	stopKey   = []byte(`"stop_reason"`)
)

// dataLine scans one data line's value v.
func (s *streamScan) dataLine(v []byte) {
	s.ndata++
	typ := headType(v)
	if s.format == formatUnknown {
		switch {
		case s.ev == eventMessageStart || string(typ) == "message_start":
			s.format = formatAnthropic
		case bytes.Contains(v, []byte(`"chat.completion.chunk"`)):
			s.format = formatChat
		case bytes.Contains(v, []byte(`"choices"`)):
			// Chunks without "object", or Azure's first ("object":"",
			// prompt_filter_results): their finish reasons are read, but
			// a stream of them that ends without one is not judged.
			s.format = formatChoices
		default:
			s.format = formatOther
		}
	}
	if len(v) >= len("[DONE]") && v[0] == '[' && string(bytes.TrimSpace(v)) == "[DONE]" {
		// A suspect event cut short by [DONE] (no blank line between
		// them) gives its verdict first.
		s.ending = true
		s.dispatch()
		if !s.done {
			s.finish()
		}
		return
	}
	if string(typ) == "error" || string(typ) == "response.failed" || firstKey(v[:min(len(v), headLen)]) == headError {
		s.suspect = verdictError
	}
	switch {
	case s.format == formatChat || s.format == formatChoices:
		s.reasons(v, finishKey)
	case s.format == formatAnthropic && (s.ev == eventMessageDelta || string(typ) == "message_delta"):
		s.reasons(v, stopKey)
	}
	if s.suspect != verdictNone {
		s.keep(v)
	}
}

// reasons reads every value of key in v: a finish (or stop) reason.
func (s *streamScan) reasons(v, key []byte) {
	for {
		i := bytes.Index(v, key)
		if i < 0 {
			return
		}
		v = v[i+len(key):]
		r, ok := stringValue(v)
		if !ok {
			continue
		}
		switch string(r) {
		case "":
		case "content_filter", "refusal":
			s.suspect = max(s.suspect, verdictFiltered)
		case "error", "insufficient_system_resource": // DeepSeek: cut short for lack of capacity
			s.suspect = max(s.suspect, verdictFinishError)
		default:
			s.finished = true
		}
	}
}

// keep appends v, a data line of a suspect event, to its data, as an event
// stream client joins data lines, up to maxWatchData bytes.
func (s *streamScan) keep(v []byte) {
	if len(s.data) > 0 && len(s.data) < maxWatchData {
		s.data = append(s.data, '\n')
	}
	room := maxWatchData - len(s.data)
	s.data = append(s.data, v[:min(len(v), room)]...)
}

// dispatch ends the current event: a suspect one gives the verdict.
func (s *streamScan) dispatch() {
	if s.suspect != verdictNone {
		s.verdict, s.event = s.suspect, s.ev
		s.done = true
		return
	}
	s.ev, s.ndata, s.data = eventPlain, 0, s.data[:0]
}

// headType returns the value of the first key of the JSON object v when
// that key is "type" and its value a string in the first headLen bytes, else
// nil.
func headType(v []byte) []byte {
	v = v[:min(len(v), headLen)]
	i := wire.SkipSpace(v, 0)
	if i == len(v) || v[i] != '{' {
		return nil
	}
	i = wire.SkipSpace(v, i+1)
	if !bytes.HasPrefix(v[i:], []byte(`"type"`)) {
		return nil
	}
	r, _ := stringValue(v[i+len(`"type"`):])
	return r
}

// stringValue reads, from v which follows a key, `: "value"` and returns
// the value (without unescaping); ok is false when the value is not a
// string (null, a number…) or is cut off.
func stringValue(v []byte) (r []byte, ok bool) {
	i := wire.SkipSpace(v, 0)
	if i == len(v) || v[i] != ':' {
		return nil, false
	}
	i = wire.SkipSpace(v, i+1)
	if i == len(v) || v[i] != '"' {
		return nil, false
	}
	j := bytes.IndexByte(v[i+1:], '"')
	if j < 0 {
		return nil, false
	}
	return v[i+1 : i+1+j], true
}

// body returns the event that gave the verdict as a small event stream, to
// classify it.
func (s *streamScan) body() []byte {
	b := make([]byte, 0, len(s.data)+32)
	switch s.event {
	case eventError:
		b = append(b, "event: error\n"...)
	case eventResponseFailed:
		b = append(b, "event: response.failed\n"...)
	}
	b = append(b, "data: "...)
	b = append(b, s.data...)
	return append(b, "\n\n"...)
}

// streamBody is the body of a 2xx event stream handed back to the caller:
// the peeked first event, then the rest of the stream (see replayBody),
// watched by a streamScan as the caller reads it. When the call is traced,
// it also ends the attempt's span (and the call's) at the stream's end or
// Close, in place of the spanBody it took over, so that a verdict reached
// in the last read is on the spans before they end.
type streamBody struct {
	replayBody
	scan     streamScan
	watching bool
	span     *spanBody // the attempt's, taken over; nil when not traced

	t    *Transport
	ctx  context.Context
	key  circuitKey
	sec  secrets
	resp http.Response  // a shallow copy of the response, for the classifier: no Body, ContentLength -1
	circ circuit.Ticket // the call's standing with its circuit, once settled

	closed  atomic.Bool // the caller closed the body: a read that fails after is its doing
	readErr error       // the read error that gave verdictBroken
}

// watchStream hands resp, a 2xx event stream classified a success, back
// to the caller with its peeked bytes p in front of the rest, in a
// streamBody that watches what the caller reads. It is put in c.stream, for
// the call's circuit standing to be filled in once the call is settled.
func (c *call) watchStream(resp *http.Response, p *peek) {
	sb := &streamBody{watching: true, t: c.t, ctx: c.ctx, key: c.key, sec: c.sec, resp: *resp}
	sb.resp.Body, sb.resp.ContentLength = nil, -1
	if s, ok := resp.Body.(*spanBody); ok {
		sb.span = s
		resp.Body = s.rc
	}
	p.fill(&sb.replayBody, resp)
	resp.Body = sb
	c.stream = sb
}

// isWatchable reports whether resp, handed back with classification cl and
// peek p, is a stream to watch: a 2xx event stream that is a success so
// far, whose first event was peeked.
func isWatchable(resp *http.Response, p *peek, cl *Classification) bool {
	return cl.Class == ClassSuccess && p.buf != nil && resp.StatusCode >= 200 && resp.StatusCode < 300 && isEventStream(resp)
}

func (b *streamBody) Read(p []byte) (int, error) {
	n, err := b.replayBody.Read(p)
	if b.watching {
		var q []byte
		if n > 0 && n <= len(p) {
			q = p[:n]
		}
		b.watch(q, err == io.EOF)
		if err != nil && err != io.EOF && b.watching && b.ctx.Err() == nil && !b.closed.Load() {
			// The stream broke off before its end (a reset, an HTTP/2
			// stream error, a body cut short), and not by the caller's
			// cancellation or Close: the call failed.
			b.scan.verdict, b.readErr = verdictBroken, err
			b.report()
		}
		if err != nil {
			b.watching = false
		}
	}
	if err != nil && b.span != nil {
		readErr := err
		if err == io.EOF {
			readErr = nil
		}
		b.span.finish(readErr)
	}
	return n, err
}

func (b *streamBody) Close() error {
	b.closed.Store(true)
	err := b.replayBody.Close()
	if b.span != nil {
		b.span.finish(nil)
	}
	return err
}

// watch scans q, bytes handed to the caller, and the stream's end when eof.
// A verdict is reported; when the classifier finds the event no error, the
// scan resumes after it. Watching stops at a reported verdict, or once the
// scan is done.
func (b *streamBody) watch(q []byte, eof bool) {
	for {
		q = b.scan.feed(q)
		if eof && b.scan.verdict == verdictNone {
			b.scan.end()
		}
		if b.scan.verdict == verdictNone {
			b.watching = !b.scan.done
			return
		}
		if !b.report() {
			b.watching = false
			return
		}
		b.scan.resume()
	}
}

// report classifies the scan's verdict and records it: on the spans, in
// the metrics and as the call's late outcome in its circuit. It returns
// whether the classifier found the event no error (the scan goes on).
//
// The classifier runs in the caller's Read of a stream that, as far as the
// caller can tell, is healthy: a classifier that panics does not break that
// Read. Its panic is recovered, the verdict dropped (the call stays the
// success it was counted) and the stream no longer watched; the Read goes
// on, and the spans end at the stream's end or Close as they would.
func (b *streamBody) report() (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	cl := b.classify()
	if cl.Class == ClassSuccess {
		return true // the classifier says the event is no error
	}
	cl.Message = b.sec.mask(cl.Message)
	cl.Code = b.sec.maskValues(cl.Code)
	cl.Type = b.sec.maskValues(cl.Type)
	cl.RequestID = b.sec.maskValues(cl.RequestID)
	out := outcomeExcluded
	if cl.BreakerFailure {
		out = outcomeFailure
	}
	var cs *callSpan // the call's, when traced
	if b.span != nil {
		cs = b.span.call
	}
	if b.scan.verdict == verdictBroken || cl.Class == ClassTimeout {
		b.circ.SetCause("") // the read failed here: perhaps this process's alone
	} else {
		b.circ.SetCause(cl.Class.String()) // what the server's stream said
	}
	b.t.reportCircuit(b.ctx, cs, b.circ.Late(circuit.Outcome(out), cl.RetryAfter))
	b.t.tracer.m.streamError(b.ctx, b.key.host, b.key.model, cl.Class)
	if b.span != nil {
		b.span.flag(&cl)
	}
	return false
}

// errNoFinish is the message of a stream that ended without a finish reason.
const errNoFinish = "llmtransport: the event stream ended without a finish reason"

// errBroken starts the message of a stream whose read failed before its end.
const errBroken = "llmtransport: the event stream broke off"

// classify returns the classification of the scan's verdict: the event
// that gave it, classified by the transport's classifier as a small event
// stream with the stream's own response (its status, headers and Request;
// no Body, and ContentLength -1: the bytes are one event of the stream, not
// all of it), a stop reason refusal, which Classify does not read, being
// content_filtered; or, for a stream that ended without a finish reason,
// upstream_transient (the upstream broke off the answer), as is a stream
// whose read failed before its end.
func (b *streamBody) classify() Classification {
	switch b.scan.verdict {
	case verdictNoFinish:
		return Classification{Class: ClassUpstreamTransient, Status: b.resp.StatusCode, Message: errNoFinish, BreakerFailure: true}
	case verdictBroken:
		return Classification{Class: ClassUpstreamTransient, Status: b.resp.StatusCode, Message: errBroken + ": " + b.readErr.Error(), BreakerFailure: true}
	}
	resp := b.resp // a copy for each call: the classifier may change it
	cl := b.t.classify(&resp, b.scan.body())
	if cl.Class == ClassSuccess && b.scan.verdict == verdictFiltered {
		cl = Classification{Class: ClassContentFiltered, Status: b.resp.StatusCode}
	}
	return cl
}

// flag records on the attempt's span, and on the call's if the call has
// ended with this body's response, that the stream failed with cl: the
// class, error.type and status Error. It does nothing once the spans ended.
func (b *spanBody) flag(cl *Classification) {
	if b.done.Load() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 3)
	attrs = append(attrs, keyClass.String(cl.Class.String()), keyErrorType.String(cl.Class.String()))
	if cl.Code != "" {
		attrs = append(attrs, keyCode.String(cl.Code))
	}
	msg := describe(cl)
	b.span.SetAttributes(attrs...)
	b.span.SetStatus(codes.Error, msg)
	if b.endCall.Load() {
		b.call.SetAttributes(attrs...)
		b.call.SetStatus(codes.Error, msg)
	}
}
