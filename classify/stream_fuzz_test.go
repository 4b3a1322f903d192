package classify

import (
	"strings"
	"testing"
)

// streamOp is one event (or comment) a fuzzed stream is built from, with
// what it means to the model of whole-stream classification.
type streamOp struct {
	text     string // the event, without the blank line that ends it
	err      bool   // an error event
	terminal bool   // an error event after which nothing follows
	end      bool   // it ends the stream
	finish   bool   // it carries a finish reason
	filter   bool   // the finish reason is a content filter
	comment  bool   // a comment, not an event
	known    bool   // of a format that owes a finish reason (chat chunks, Anthropic, Responses)
	done     bool   // [DONE]: no content
}

var streamOps = [...]streamOp{
	{text: `data: {"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}`, known: true},
	{text: `data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`, finish: true, known: true},
	{text: `data: {"choices":[{"index":0,"delta":{},"finish_reason":"content_filter"}]}`, finish: true, filter: true, known: true},
	{text: `data: {"error":{"message":"%s","type":"server_error","code":null}}`, err: true},
	{text: "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"%s\"}}", err: true, terminal: true},
	{text: ": keep-alive", comment: true},
	{text: "data: [DONE]", end: true, done: true},
	{text: `data: {"choices":[],"usage":{"total_tokens":3}}`},
	{text: `data: {"choices":[{"index":0,"delta":{},"finish_reason":"error"}]}`, err: true, known: true},
	{text: "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"%s\"}}}", err: true, terminal: true, known: true},
	{text: "data: oops %s", err: true},
	{text: "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}", finish: true, known: true},
	{text: "event: message_stop\ndata: {\"type\":\"message_stop\"}", end: true, known: true},
	{text: "data: {\"choices\":[{\"index\":0,\ndata: \"delta\":{\"content\":\"%s\"},\"finish_reason\":null}]}", known: true},
	{text: "event: ping\ndata: {\"type\": \"ping\"}"},
	{text: "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"%s\"}", known: true},
	{text: "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\"}}",
		end: true, finish: true, known: true},
	{text: "event: thread.message.delta\ndata: {\"object\":\"thread.message.delta\",\"delta\":{\"content\":[{\"type\":\"text\",\"text\":{\"value\":\"%s\"}}]}}"},
}

// fuzzStream builds an event stream from ops (one op a byte), with the
// given line end and word, and returns it with the model's expectations.
type streamWant struct {
	events  bool // the stream has an event
	success bool // it must be a success
	fail    bool // it must not be a success
	filter  bool // it must be content_filtered
}

func fuzzStream(ops []byte, eol, word string, whole bool) (string, streamWant) {
	var b strings.Builder
	var (
		w                          streamWant
		first                      = true
		firstErr, firstFilter      bool
		complete, pending          bool
		finished, filtered, cutoff bool
		known, content             bool
	)
	for _, o := range ops {
		op := streamOps[int(o)%len(streamOps)]
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(op.text, "%s", word), "\n", eol))
		b.WriteString(eol + eol)
		if cutoff || op.comment {
			continue
		}
		w.events = true
		known = known || op.known
		if first {
			first = false
			content = !op.done
			firstErr = op.err
			firstFilter = op.filter
			finished = op.finish
			if op.err || op.end {
				complete = true
				cutoff = true
			}
			continue
		}
		switch {
		case op.err && op.terminal:
			pending, complete, cutoff = true, true, true
		case op.err:
			// The walk goes on to learn whether the stream ended.
			pending = true
		case op.end:
			complete, cutoff = true, true
			finished = finished || op.finish // response.completed is a finish
		default:
			finished = finished || op.finish
			filtered = filtered || op.filter
		}
	}
	if whole {
		complete = true
	}
	// A pending non-terminal error counts only once the stream is known to
	// have ended; a stream that stops there (and is not whole) may yet go on.
	switch {
	case !w.events:
		w.fail = true
	case firstErr:
		w.fail = true
	case complete && pending:
		w.fail = true
	case firstFilter:
		w.filter = true
	case complete && filtered:
		w.filter = true
	case complete && !finished && (known || !content):
		// Only a format that owes a finish reason is faulted for missing
		// one; a stream with nothing but [DONE] never started.
		w.fail = true
	case complete && !finished:
		// No finish reason in a format that has none (Assistants).
		w.success = true
	case !complete:
		w.success = true
	}
	return b.String(), w
}

// FuzzClassifyStream builds event streams from random sequences of events
// (content, finish reasons, OpenAI, Anthropic and Responses errors, text
// errors, keep-alives, [DONE], message_stop, multi-line data), with any
// line end, whole or as a prefix, and checks that Classify does not panic,
// stays sane and bounded, and agrees with a model of the rules: an error
// event anywhere in a stream known to have ended is no success; a stream
// known to have ended without a finish reason, when an event was of a
// format that owes one (chat chunks, Anthropic, Responses) or there was no
// content at all, is no success, and otherwise (an Assistants stream) a
// success; a content filter finish reason makes it content_filtered; a
// prefix whose first event is content is a success.
func FuzzClassifyStream(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 1, 7, 6}, {0, 0, 3, 7, 6}, {0, 4}, {0, 2, 6}, {6}, {5, 5, 6}, {0, 0, 7, 6},
		{0, 10, 6}, {0, 11, 12}, {0, 12}, {0, 9}, {13, 3}, {14, 0, 1, 6}, {0, 8, 6}, {0, 3},
		{15, 15, 16}, {15, 16}, {16}, {15, 15}, {17, 17, 6}, {7, 6}, {17, 3, 6}, {14, 7, 6},
	} {
		f.Add(seed, uint8(0), "hello", false)
		f.Add(seed, uint8(1), "a b", true)
		f.Add(seed, uint8(2), "x", false)
	}
	f.Fuzz(func(t *testing.T, ops []byte, eolSel uint8, word string, whole bool) {
		if len(ops) > 256 {
			ops = ops[:256]
		}
		word = sanitizeWord(word)
		eol := [...]string{"\n", "\r\n", "\r"}[int(eolSel)%3]
		body, want := fuzzStream(ops, eol, word, whole)
		r := resp(200, "Content-Type", sseCT)
		if whole {
			r.ContentLength = int64(len(body))
		}
		c := Classify(r, []byte(body))
		checkSane(t, c)
		if len(body) > MaxPeek {
			return // the model does not cut at 64 KiB
		}
		switch {
		case want.fail && c.Class == ClassSuccess:
			t.Fatalf("%q: success, want a failure", body)
		case want.filter && c.Class != ClassContentFiltered:
			t.Fatalf("%q: %v, want content_filtered", body, c.Class)
		case want.success && c.Class != ClassSuccess:
			t.Fatalf("%q: %v (%q), want success", body, c.Class, c.Message)
		}
		// Bounded: nothing past 64 KiB counts.
		pad := strings.Repeat(": pad"+eol, (MaxPeek-len(body))/len(": pad"+eol)+1)
		padded := body + pad
		a := Classify(resp(200, "Content-Type", sseCT), []byte(padded))
		b := Classify(resp(200, "Content-Type", sseCT), []byte(padded+"data: {\"error\":{\"message\":\"late\"}}"+eol+eol+"data: [DONE]"+eol+eol))
		if a.Class != b.Class || a.Code != b.Code {
			t.Fatalf("bytes past 64 KiB changed the class: %v/%q, then %v/%q", a.Class, a.Code, b.Class, b.Code)
		}
	})
}

// sanitizeWord keeps the letters, digits and spaces of s, at most 40 of
// them, so that it can be put in JSON and in a text event as it is.
func sanitizeWord(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 40 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ' ' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "x"
	}
	return b.String()
}
