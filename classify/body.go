package classify

import (
	"bytes"
	"strings"

	"github.com/llmtransport/llmtransport/internal/wire"
)

// bodyKind is what an error body turned out to be.
type bodyKind uint8

const (
	bodyEmpty      bodyKind = iota // nothing but whitespace
	bodyJSON                       // a JSON (or JSON-like) document
	bodyHTML                       // an HTML page
	bodyText                       // anything else
	bodySSEJSON                    // an event stream whose first event carries JSON
	bodySSEText                    // an event stream whose first event carries plain text
	bodySSEDone                    // an event stream whose first event is [DONE]
	bodySSENoEvent                 // an event stream with comments at most and no event
)

// errFields are the fields of one error object, whichever shape it came in.
// All strings are copies, never views of the body.
type errFields struct {
	present      bool   // an error object or string was found here
	message      string // message, msg, or the error string itself
	typ          string // type
	code         string // code, as written (numbers as their digits)
	codeNum      bool   // code was a JSON number
	status       string // Google status ("RESOURCE_EXHAUSTED")
	detailsCode  string // Anthropic details.error_code
	reason       string // Google details[].reason (ErrorInfo)
	errorsReason string // legacy Google errors[].reason ("rateLimitExceeded")
	retryDelay   string // Google RetryInfo.retryDelay
	quotaFailure bool   // a Google QuotaFailure detail was present
	perDay       bool   // a QuotaFailure quotaId names a per-day quota
	innerCode    string // Azure innererror.code
	errorType    string // OpenRouter metadata.error_type
	limitSource  string // OpenRouter metadata.limit_source
	flagged      bool   // OpenRouter metadata.flagged_input
	raw          string // OpenRouter metadata.raw
	resetHeader  string // OpenRouter metadata.headers.X-RateLimit-Reset
	requestID    string // request_id
}

// has reports whether e holds anything that describes an error.
func (e *errFields) has() bool {
	return e.present && (e.message != "" || e.typ != "" || e.code != "" || e.status != "" ||
		e.detailsCode != "" || e.reason != "" || e.errorsReason != "" || e.errorType != "")
}

// bodyInfo is what classification learned from a body.
type bodyInfo struct {
	kind bodyKind

	top    errFields // fields at the top level (flat shapes)
	err    errFields // "error": {…} or "error": "…"
	choice errFields // choices[0].error (OpenRouter)
	resp   errFields // response.error (OpenAI Responses)

	object       string // top-level "object" ("error" for vLLM/Mistral)
	description  string // Midjourney "description"
	detail       string // "detail" (string, or the first detail[].msg)
	retryAfter   string // data.retry_after
	finishReason string // choices[0].finish_reason
	blockReason  string // Gemini promptFeedback.blockReason
	respStatus   string // response.status (Responses)
	event        string // the SSE event name of the first event
	keepAlive    bool   // the stream had comment lines
	text         string // plain text, HTML title, or the raw data of an SSE event

	nested    errFields // the error found in JSON embedded in a string, one level down
	hasNested bool

	// whole: the body is all of the response's body (its Content-Length),
	// not a prefix; success: the status is 2xx, so that finish reasons and
	// the events after the first matter. Both set before parse.
	whole, success bool
	// facts is what the top-level document said about its stream, read in
	// the same scan as its fields (views of the body, for parse only).
	facts eventFacts
	// What the walk of a whole event stream found (parseSSE), or, for a
	// JSON body, its own finish reasons.
	streamEnded    bool   // the stream said it ended ([DONE], message_stop, response.completed…) or whole is set
	streamFinished bool   // some event carried a finish or stop reason
	streamContent  bool   // some event carried data other than [DONE]
	streamKnown    bool   // some event was of a format that ends with a finish reason (eventFacts.known)
	filterReason   string // the first finish, stop or block reason that means a content filter
}

// parse reads body tolerantly: a BOM and leading blank lines are skipped,
// event streams are walked to their first event, a top-level array stands
// for its first element, and JSON embedded in a message is read one level
// down.
func (bi *bodyInfo) parse(contentType string, body []byte) {
	body = bytes.TrimPrefix(body, []byte(wire.BOM))
	body = bytes.TrimLeft(body, " \t\r\n")
	sseType := wire.HasPrefixFold(contentType, "text/event-stream")
	if len(body) == 0 {
		bi.kind = bodyEmpty
		if sseType {
			bi.kind = bodySSENoEvent
		}
		return
	}
	switch {
	case body[0] == '{' || body[0] == '[':
		bi.kind = bodyJSON
		bi.parseJSON(body, true)
		if bi.success {
			bi.noteFacts(bi.facts)
		}
	case body[0] == ':' || wire.HasPrefixFold(string(body[:min(len(body), 6)]), "data:") ||
		wire.HasPrefixFold(string(body[:min(len(body), 6)]), "event:") ||
		(sseType && body[0] != '<'):
		bi.parseSSE(body)
	case body[0] == '<':
		bi.kind = bodyHTML
		bi.text = htmlTitle(body)
	default:
		bi.kind = bodyText
		bi.text = strings.TrimSpace(jsonText(body))
	}
}

// parseJSON extracts the error fields of every known shape from a JSON
// document. With nest, JSON found inside the error's message or
// metadata.raw is read too (one level only).
func (bi *bodyInfo) parseJSON(b []byte, nest bool) {
	bi.scanJSON(b, &bi.facts)
	if !nest {
		return
	}
	e := bi.container()
	for _, src := range [...]string{e.raw, e.message, bi.text} {
		i := strings.IndexAny(src, "{[")
		if i < 0 {
			continue
		}
		var inner bodyInfo
		inner.scanJSON([]byte(src[i:]), nil)
		if ie := inner.container(); ie.has() {
			bi.nested = *ie
			bi.hasNested = true
			if bi.nested.message == "" {
				bi.nested.message = inner.fallbackMessage()
			}
			return
		}
	}
}

// scanJSON records the fields of a JSON document, and, when f is not nil,
// what it says about its stream (eventFacts). A top-level array
// (Gemini/Vertex) stands for its first element.
func (bi *bodyInfo) scanJSON(b []byte, f *eventFacts) {
	if len(b) > 0 && b[0] == '[' {
		b = bytes.TrimLeft(b[1:], " \t\r\n")
	}
	s := newJSONScanner(b)
	for {
		k, raw, ok := s.next()
		if !ok {
			if f != nil {
				f.complete = s.done()
			}
			return
		}
		bi.field(s.path(), k, raw)
		if f != nil {
			f.note(s.path(), k, raw)
		}
	}
}

// field records one scanned value.
func (bi *bodyInfo) field(p []jsonSeg, k jsonKind, raw []byte) {
	if len(p) == 0 {
		return
	}
	switch {
	case p[0].is("error"):
		if len(p) == 1 {
			switch k {
			case jsonObject:
				bi.err.present = true
			case jsonString, jsonPartial:
				bi.err.present = true
				setText(&bi.err.message, raw)
			}
			return
		}
		bi.err.field(p[1:], k, raw)
	case p[0].is("choices"):
		if len(p) < 3 || !p[1].first() {
			return
		}
		switch {
		case len(p) == 3 && p[2].is("finish_reason") && k == jsonString:
			setText(&bi.finishReason, raw)
		case p[2].is("error"):
			if len(p) == 3 {
				switch k {
				case jsonObject:
					bi.choice.present = true
				case jsonString:
					bi.choice.present = true
					setText(&bi.choice.message, raw)
				}
				return
			}
			bi.choice.field(p[3:], k, raw)
		}
	case p[0].is("response") && len(p) >= 2:
		switch {
		case len(p) == 2 && p[1].is("status") && k == jsonString:
			setText(&bi.respStatus, raw)
		case p[1].is("error"):
			if len(p) == 2 {
				bi.resp.present = k == jsonObject || k == jsonString
				if k == jsonString {
					setText(&bi.resp.message, raw)
				}
				return
			}
			bi.resp.field(p[2:], k, raw)
		}
	case p[0].is("promptFeedback"):
		if len(p) == 2 && p[1].is("blockReason") && k == jsonString {
			setText(&bi.blockReason, raw)
		}
	case len(p) == 1 && p[0].is("object") && k == jsonString:
		setText(&bi.object, raw)
	case len(p) == 1 && p[0].is("description") && k == jsonString:
		setText(&bi.description, raw)
	case p[0].is("detail"):
		if (len(p) == 1 && k == jsonString) ||
			(len(p) == 3 && p[1].first() && p[2].is("msg") && k == jsonString) {
			setText(&bi.detail, raw)
		}
	case len(p) == 2 && p[0].is("data") && p[1].is("retry_after"):
		if k == jsonString || k == jsonNumber {
			setText(&bi.retryAfter, raw)
		}
	default:
		bi.top.field(p, k, raw)
	}
}

// field records one value found at path p inside an error object.
func (e *errFields) field(p []jsonSeg, k jsonKind, raw []byte) {
	str := k == jsonString
	switch len(p) {
	case 1:
		switch {
		case p[0].is("message"), p[0].is("msg"):
			if str || k == jsonPartial { // a cut-off message is still worth reading
				setText(&e.message, raw)
			}
		case p[0].is("type"):
			if str {
				setCode(&e.typ, raw)
			}
		case p[0].is("code"):
			if str && e.code == "" {
				setCode(&e.code, raw)
			} else if k == jsonNumber && e.code == "" {
				setText(&e.code, raw)
				e.codeNum = true
			}
		case p[0].is("status"):
			if str {
				setCode(&e.status, raw)
			}
		case p[0].is("request_id"):
			if str {
				setText(&e.requestID, raw)
			}
		}
	case 2:
		switch {
		case p[0].is("details") && p[1].is("error_code") && str:
			setCode(&e.detailsCode, raw)
		case p[0].is("innererror") && p[1].is("code") && str:
			setCode(&e.innerCode, raw)
		case p[0].is("metadata"):
			switch {
			case p[1].is("raw") && str:
				setText(&e.raw, raw)
			case p[1].is("error_type") && str:
				setCode(&e.errorType, raw)
			case p[1].is("limit_source") && str:
				setText(&e.limitSource, raw)
			case p[1].is("flagged_input"):
				e.flagged = e.flagged || !(k == jsonLiteral && (string(raw) == "null" || string(raw) == "false"))
			}
		}
	case 3:
		switch {
		case p[0].is("details") && p[1].key == nil:
			switch {
			case p[2].is("@type") && str:
				if bytes.Contains(raw, []byte("QuotaFailure")) {
					e.quotaFailure = true
				}
			case p[2].is("reason") && str:
				setCode(&e.reason, raw)
			case p[2].is("retryDelay") && str:
				setText(&e.retryDelay, raw)
			}
		case p[0].is("errors") && p[1].key == nil && p[2].is("reason") && str:
			setCode(&e.errorsReason, raw)
		case p[0].is("metadata") && p[1].is("headers") && p[2].key != nil &&
			strings.EqualFold(string(p[2].key), "X-RateLimit-Reset") && (str || k == jsonNumber):
			setText(&e.resetHeader, raw)
		}
	case 5:
		if p[0].is("details") && p[2].is("violations") && p[4].is("quotaId") && str {
			e.quotaFailure = true
			if bytes.Contains(raw, []byte("PerDay")) {
				e.perDay = true
			}
		}
	}
}

// setText stores the decoded string value raw in *dst unless dst already
// holds a value: the first occurrence wins.
func setText(dst *string, raw []byte) {
	if *dst == "" && len(raw) > 0 {
		*dst = jsonText(raw)
	}
}

// setCode is setText for a code, type or reason: a value that stands for
// none ("", "null", "<nil>", "None") is not stored, so that a later one, or
// none, takes its place.
func setCode(dst *string, raw []byte) {
	if !absentCode(raw) {
		setText(dst, raw)
	}
}

// absentCode reports whether raw, a code as written, stands for no code:
// empty or blank, or a null as a language printed it ("null", Go's "<nil>",
// Python's "None"; new-api writes a null code as "<nil>").
func absentCode(raw []byte) bool {
	s := bytes.TrimSpace(raw)
	switch len(s) {
	case 0:
		return true
	case 3, 4, 5:
		return bytes.EqualFold(s, []byte("nil")) || bytes.EqualFold(s, []byte("null")) ||
			bytes.EqualFold(s, []byte("none")) || bytes.EqualFold(s, []byte("<nil>"))
	}
	return false
}

// container returns the error object that describes the body: "error",
// then choices[0].error, then response.error, else the top level.
func (bi *bodyInfo) container() *errFields {
	switch {
	case bi.err.has():
		return &bi.err
	case bi.choice.has():
		return &bi.choice
	case bi.resp.has():
		return &bi.resp
	}
	return &bi.top
}

// inBandError reports whether a JSON body or event of a 2xx response
// carries an error.
func (bi *bodyInfo) inBandError() bool {
	switch bi.kind {
	case bodySSEText:
		return true
	case bodyJSON, bodySSEJSON:
	default:
		return false
	}
	return bi.err.has() || bi.choice.has() || errorFinish(bi.finishReason) ||
		bi.respStatus == "failed" || bi.top.typ == "response.failed" ||
		bi.top.typ == "error" || bi.object == "error" || bi.event == "error"
}

// errorFinish reports whether a finish reason says the generation failed:
// "error", or DeepSeek's "insufficient_system_resource" (the generation was
// cut short for lack of capacity).
func errorFinish(r string) bool { return r == "error" || r == "insufficient_system_resource" }

// sse reports whether the body was an event stream with events.
func (bi *bodyInfo) sse() bool {
	return bi.kind == bodySSEJSON || bi.kind == bodySSEText || bi.kind == bodySSEDone
}

// fallbackMessage is the message of bodies without an error object.
func (bi *bodyInfo) fallbackMessage() string {
	for _, m := range [...]string{bi.top.message, bi.detail, bi.description, bi.text} {
		if m != "" {
			return m
		}
	}
	return ""
}

// htmlTitle returns the text of an HTML page's <title>, or "".
func htmlTitle(b []byte) string {
	i := indexFold(b, "<title")
	if i < 0 {
		return ""
	}
	b = b[i:]
	j := bytes.IndexByte(b, '>')
	if j < 0 {
		return ""
	}
	b = b[j+1:]
	if k := indexFold(b, "</title"); k >= 0 {
		b = b[:k]
	} else if len(b) > 256 {
		b = b[:256]
	}
	return strings.Join(strings.Fields(jsonText(b)), " ")
}

// indexFold is bytes.Index ignoring ASCII case; sub must be lower case.
func indexFold(b []byte, sub string) int {
	for i := 0; i+len(sub) <= len(b); i++ {
		if wire.HasPrefixFold(string(b[i:i+len(sub)]), sub) {
			return i
		}
	}
	return -1
}
