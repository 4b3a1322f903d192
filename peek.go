package llmtransport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/llmtransport/llmtransport/internal/redact"
	"github.com/llmtransport/llmtransport/internal/wire"
)

// peekPool holds the buffers that error bodies and first stream events are
// read into (wire.Pool, which a gzip- or deflate-encoded body is decoded
// into too). A buffer goes back to the pool once the response is discarded
// or its bytes are copied out to be handed back.
var peekPool = wire.Pool

// errBadRead is the peek's error for a body whose Read returned an
// impossible count.
var errBadRead = errors.New("llmtransport: response body returned an invalid count from Read")

// peek holds what the transport read from the front of a response body to
// classify it.
type peek struct {
	buf   *[]byte // from peekPool; nil when nothing was read
	n     int     // bytes of *buf in use
	whole bool    // the body was read to its end: (*buf)[:n] is all of it
	clean bool    // a 2xx stream whose first event is longer than the peek: put back at once
	err   error   // read error other than io.EOF, if any
	first int     // for a 2xx stream, the end of its first event with data in *buf; 0 if none
}

// verdict returns the bytes that decide the attempt: for a 2xx event
// stream, its first event with data and what came before it, whatever else
// the same read brought. What follows is judged as it reaches the caller
// (see streamwatch.go), so that a retry never depends on how the server's
// writes were cut into reads.
func (p *peek) verdict() []byte {
	if p.first > 0 {
		return (*p.buf)[:p.first]
	}
	return p.bytes()
}

func (p *peek) bytes() []byte {
	if p.buf == nil {
		return nil
	}
	return (*p.buf)[:p.n]
}

// release returns the buffer to the pool.
func (p *peek) release() {
	if p.buf != nil {
		peekPool.Put(p.buf)
		p.buf = nil
	}
}

// isEventStream reports whether resp is a server-sent event stream.
func isEventStream(resp *http.Response) bool {
	return wire.HasPrefixFold(contentType(resp), "text/event-stream")
}

// contentType returns resp's Content-Type header, or "".
func contentType(resp *http.Response) string {
	if v := resp.Header["Content-Type"]; len(v) > 0 { // canonical already: no Get
		return v[0]
	}
	return ""
}

// peekMode is how much of a response's body the transport reads before
// classifying it.
type peekMode uint8

const (
	peekNone   peekMode = iota // nothing: the status says it all, or there is no body to read
	peekBody                   // an error body: up to maxPeek bytes
	peekStream                 // a 2xx event stream: up to the end of its first event with data
	peekHead                   // a 2xx body typed JSON: its first key, and on (up to maxPeek) only when that is an error
)

// peekModeOf returns how much of resp's body, the answer to req, must be
// read to classify resp. A response with no body to read (to a HEAD, a 1xx,
// 204 or 304, or http.NoBody, which a Content-Length of 0 gives) is never
// read: its status says it all.
func peekModeOf(req *http.Request, resp *http.Response) peekMode {
	s := resp.StatusCode
	switch {
	case resp.Body == http.NoBody || req.Method == http.MethodHead ||
		s < 200 || s == http.StatusNoContent || s == http.StatusNotModified:
		return peekNone
	case s >= 400:
		return peekBody
	case s >= 300:
		return peekNone
	}
	ct := contentType(resp)
	switch {
	case wire.HasPrefixFold(ct, "text/event-stream"):
		if wire.Encoded(resp.Header) {
			// Left encoded by the base (the caller asked for it with
			// its own Accept-Encoding): its events cannot be seen in
			// the bytes, so it passes through at once, unwatched.
			return peekNone
		}
		return peekStream
	case wire.HasPrefixFold(ct, "application/json") || redact.ContainsFold(ct, "json"):
		return peekHead
	}
	return peekNone
}

// headLen is how many bytes of a 2xx JSON body are read to find its first
// key: enough for the key and the start of its value, whatever the
// indentation; a key not found there is not an error.
const headLen = 64

// take reads from the front of resp's body, the answer to req, what
// classifying resp needs (see peekModeOf). A 2xx JSON body whose first key
// says it is no error, and a 2xx stream whose first event does not fit the
// peek, are put back at once: resp.Body re-delivers the bytes read, and p
// stays empty, so that the response goes back as a success.
func (p *peek) take(req *http.Request, resp *http.Response) {
	mode := peekModeOf(req, resp)
	switch mode {
	case peekNone:
		return
	case peekHead:
		p.takeHead(resp)
		return
	}
	p.read(resp.Body, mode)
	if p.clean {
		p.restore(resp)
	}
}

// takeHead looks at the first key of resp's body, a 2xx JSON body, reading
// it straight into the replayBody that puts it back (no pooled buffer, no
// copy: this is every JSON completion's path). A head that says error is
// moved into a pooled buffer and read on as an error body.
func (p *peek) takeHead(resp *http.Response) {
	rb := &replayBody{}
	n, v, err := readHead(resp.Body, &rb.small)
	if v == headError {
		p.buf = peekPool.Get().(*[]byte)
		p.n = copy(*p.buf, rb.small[:n])
		switch {
		case err == io.EOF:
			p.whole = true
		case err != nil:
			p.err = err
		default:
			p.read(resp.Body, peekBody)
		}
		return
	}
	// The bytes, and the error that broke the body if one did, go back to
	// the caller as they came: not peeked, not judged, as when the
	// transport does not look at a success at all.
	rb.prefix = rb.small[:n]
	switch {
	case err == nil:
		rb.rest = resp.Body
	case err != io.EOF:
		rb.err = err
		fallthrough
	default:
		resp.Body.Close()
	}
	resp.Body = rb
}

// readHead reads the start of body into b until its first key says
// whether it is an error (see firstKey), b is full, or the read fails.
func readHead(body io.Reader, b *[headLen]byte) (n int, v headVerdict, err error) {
	defer func() {
		// A body that panics breaks the io.Reader contract: a read error.
		if r := recover(); r != nil {
			v, err = headClean, fmt.Errorf("llmtransport: response body panicked: %v", r)
		}
	}()
	for n < len(b) {
		var m int
		m, err = body.Read(b[n:])
		if m < 0 || m > len(b)-n {
			return n, headClean, errBadRead
		}
		n += m
		if v = firstKey(b[:n]); v != headMore || err != nil {
			if v == headMore {
				v = headClean
			}
			return n, v, err
		}
	}
	return n, headClean, nil // a head that filled up before its first key: no error
}

// read fills the peek from body, on from the p.n bytes already in it: for
// an event stream, up to the end of the first event that carries data (or
// up to its end, or maxPeek bytes); otherwise up to maxPeek bytes.
func (p *peek) read(body io.Reader, mode peekMode) {
	if p.buf == nil {
		p.buf = peekPool.Get().(*[]byte)
	}
	b := *p.buf
	defer func() {
		// A body that panics, or claims to have read more than it was
		// given, breaks the io.Reader contract: treat it as a read error.
		if v := recover(); v != nil {
			p.err = fmt.Errorf("llmtransport: response body panicked: %v", v)
		}
	}()
	var sc eventScan
	for p.n < len(b) {
		m, err := body.Read(b[p.n:])
		if m < 0 || m > len(b)-p.n {
			p.err = errBadRead
			return
		}
		p.n += m
		if err != nil {
			p.whole, p.err = err == io.EOF, err
			if p.whole {
				p.err = nil
			}
			if mode == peekStream && sc.complete(b[:p.n]) {
				p.first = sc.line
			}
			return
		}
		if mode == peekStream && sc.complete(b[:p.n]) {
			p.first = sc.line
			return
		}
	}
	// A stream whose first event with data is longer than the peek is no
	// error: its cut-off start says nothing.
	p.clean = mode == peekStream && sc.inData(b)
}

// headVerdict is what the start of a 2xx JSON body says about it.
type headVerdict uint8

const (
	headMore  headVerdict = iota // too little to say: read on
	headClean                    // not an error (or not JSON): hand it back
	headError                    // its first key is an error: read it as an error body
)

// firstKey judges a 2xx JSON body by its start b: an object whose first key
// is "error" with an object or string value, or "type" or "object" with the
// value "error", is an error. Anything else (another first key, an array,
// not JSON, only whitespace so far) is not: a body is not held back to wait
// for more than its first key. b never needs to be longer than headLen.
func firstKey(b []byte) headVerdict {
	if n := min(len(b), len(wire.BOM)); string(b[:n]) == wire.BOM[:n] {
		if n < len(wire.BOM) {
			return headMore
		}
		b = b[n:]
	}
	i := wire.SkipSpace(b, 0)
	switch {
	case i == len(b) && len(b) == 0:
		return headMore
	case i == len(b):
		return headClean // only whitespace so far: a keep-alive, not an error
	case b[i] != '{':
		return headClean
	}
	i = wire.SkipSpace(b, i+1)
	if i == len(b) {
		return headMore
	}
	if b[i] != '"' {
		return headClean
	}
	j := bytes.IndexByte(b[i+1:], '"')
	if j < 0 {
		return headMore
	}
	key := b[i+1 : i+1+j]
	if string(key) != "error" && string(key) != "type" && string(key) != "object" {
		return headClean
	}
	i = wire.SkipSpace(b, i+2+j)
	if i == len(b) {
		return headMore
	}
	if b[i] != ':' {
		return headClean
	}
	i = wire.SkipSpace(b, i+1)
	v := b[i:]
	switch {
	case len(v) == 0:
		return headMore
	case string(key) == "error" && (v[0] == '{' || v[0] == '"'):
		return headError
	case string(key) == "error":
		return headClean // null, or a value no error is written as
	case len(v) < len(`"error"`) && string(v) == `"error"`[:len(v)]:
		return headMore
	case len(v) >= len(`"error"`) && string(v[:len(`"error"`)]) == `"error"`:
		return headError
	}
	return headClean
}

// eventScan looks for the end of the first SSE event that carries output
// or an error (the stream's commit point: see lifecycle) in a buffer that grows between calls, looking at each byte once however the
// buffer grows: a stream that arrives a byte at a time costs linear time,
// not quadratic. Lines end as the event stream format says: at a CRLF, a
// LF or a CR alone; a BOM at the start of the stream is dropped. Comments
// and events without data (only retry:, id: or event: fields) are skipped,
// as an event stream client skips them, and so are lifecycle events, which
// carry no output: none of them is the first event.
type eventScan struct {
	line    int  // start of the line not yet ended
	seen    int  // bytes already searched for a line end
	started bool // the BOM check at the start of the stream is done
	skipLF  bool // the last line ended with a CR at the end of the buffer: a LF next is part of its end
	data    bool // the event being read has a data field that is not blank
	life    bool // the event being read is a lifecycle event (see lifecycle)
}

// complete reports whether b, which extends the b of the previous call,
// holds the end of an event that carries data.
func (s *eventScan) complete(b []byte) bool {
	if !s.started {
		if n := min(len(b), len(wire.BOM)); string(b[:n]) == wire.BOM[:n] {
			if n < len(wire.BOM) {
				return false // maybe a BOM: wait for the rest of it
			}
			s.line, s.seen = n, n
		}
		s.started = true
	}
	for {
		if s.skipLF && s.seen < len(b) {
			s.skipLF = false
			if b[s.seen] == '\n' {
				s.seen++
				s.line = s.seen
			}
		}
		i := wire.LineEnd(b[s.seen:])
		if i < 0 {
			s.seen = len(b)
			return false
		}
		end := s.seen + i
		next := end + 1
		if b[end] == '\r' {
			switch {
			case next == len(b):
				s.skipLF = true // a CRLF may be split across reads
			case b[next] == '\n':
				next++
			}
		}
		line := b[s.line:end]
		s.line, s.seen = next, next
		if s.take(line) {
			return true
		}
	}
}

// take records one line of an event, and reports whether it ended an event
// that carries data.
func (s *eventScan) take(line []byte) bool {
	if len(line) == 0 {
		done := s.data && !s.life
		s.data, s.life = false, false
		return done
	}
	switch name, value := wire.Field(line); string(name) {
	case "data":
		if !blank(value) {
			s.data = true
			s.life = s.life || lifecycle(headType(value))
		}
	case "event":
		s.life = s.life || lifecycle(value)
	}
	return false
}

// lifecycle reports whether an event named (or typed) name is one that
// carries no output: the stream's start, its keep-alives, the opening of an
// output item before any of its content. Such events go to the caller
// behind the first event that carries output or an error, so that a stream
// that fails after them (an error after OpenAI Responses'
// response.created) is still retried, or falls back, before any of its
// bytes reach the caller: the stream's commit point is its first event of
// output.
func lifecycle(name []byte) bool {
	switch string(name) {
	case "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added", // OpenAI Responses
		"message_start", "ping", "content_block_start": // Anthropic Messages
		return true
	}
	return false
}

// inData reports whether the scan of b, which it did not find complete,
// stopped inside an event that carries data or in a data line.
func (s *eventScan) inData(b []byte) bool {
	name, value := wire.Field(b[s.line:])
	return s.data || (string(name) == "data" && !blank(value))
}

// blank reports whether b is empty or only white space.
func blank(b []byte) bool { return len(bytes.TrimSpace(b)) == 0 }

// restore puts the peeked bytes back in front of the rest of resp's body, so
// that the caller reads exactly what the server sent. A body that was read
// whole is closed now, which frees its connection; the bytes are copied out
// of the pooled buffer.
func (p *peek) restore(resp *http.Response) {
	if p.buf == nil {
		return
	}
	rb := &replayBody{}
	p.fill(rb, resp)
	resp.Body = rb
}

// fill makes rb replay the peeked bytes, then the rest of resp's body, as
// restore does; it leaves resp.Body to the caller to set.
func (p *peek) fill(rb *replayBody, resp *http.Response) {
	if p.n <= len(rb.small) {
		rb.prefix = rb.small[:copy(rb.small[:], p.bytes())] // one allocation for a JSON head
	} else {
		rb.prefix = bytes.Clone(p.bytes())
	}
	switch {
	case p.whole:
		resp.Body.Close()
	case p.err != nil:
		rb.err = p.err
		resp.Body.Close()
	default:
		rb.rest = resp.Body
	}
	p.release()
}

// replayBody reads prefix, then rest (or err).
type replayBody struct {
	prefix []byte
	rest   io.ReadCloser // nil when prefix is the whole body
	err    error         // returned after prefix when rest is nil
	small  [headLen]byte // holds prefix when it is short
}

func (b *replayBody) Read(p []byte) (int, error) {
	if len(b.prefix) > 0 {
		n := copy(p, b.prefix)
		b.prefix = b.prefix[n:]
		return n, nil
	}
	if b.rest != nil {
		return b.rest.Read(p)
	}
	if b.err != nil {
		return 0, b.err
	}
	return 0, io.EOF
}

// Close drops what is left of the prefix: a read after Close fails, as
// that of the body it stands for would.
func (b *replayBody) Close() error {
	b.prefix = nil
	if b.err == nil {
		b.err = http.ErrBodyReadAfterClose
	}
	if b.rest != nil {
		return b.rest.Close()
	}
	return nil
}
