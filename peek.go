package llmtransport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// peekPool holds the buffers that error bodies and first stream events are
// read into. A buffer goes back to the pool once the response is discarded
// or its bytes are copied out to be handed back.
var peekPool = sync.Pool{New: func() any { b := make([]byte, maxPeek); return &b }}

// errBadRead is the peek's error for a body whose Read returned an
// impossible count.
var errBadRead = errors.New("llmtransport: response body returned an invalid count from Read")

// peek holds what the transport read from the front of a response body to
// classify it.
type peek struct {
	buf   *[]byte // from peekPool; nil when nothing was read
	n     int     // bytes of *buf in use
	whole bool    // the body was read to its end: (*buf)[:n] is all of it
	err   error   // read error other than io.EOF, if any
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
	var ct string
	if v := resp.Header["Content-Type"]; len(v) > 0 { // canonical already: no Get
		ct = v[0]
	}
	return len(ct) >= 17 && strings.EqualFold(ct[:17], "text/event-stream")
}

// needsPeek reports whether resp's body must be looked at to classify it:
// an error status, or a successful event stream whose first event may be an
// error. Other successful bodies flow through unread.
func needsPeek(resp *http.Response) bool {
	return resp.StatusCode >= 400 || (resp.StatusCode < 300 && isEventStream(resp))
}

// read fills the peek from body: for an event stream, up to the end of the
// first event that is not a comment (or up to its end, or maxPeek bytes);
// otherwise up to maxPeek bytes.
func (p *peek) read(body io.Reader, stream bool) {
	p.buf = peekPool.Get().(*[]byte)
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
		if err == io.EOF {
			p.whole = true
			return
		}
		if err != nil {
			p.err = err
			return
		}
		if stream && sc.complete(b[:p.n]) {
			return
		}
	}
}

// eventScan looks for the end of the first SSE event in a buffer that grows
// between calls, looking at each byte once however the buffer grows: a
// stream that arrives a byte at a time costs linear time, not quadratic.
type eventScan struct {
	line  int  // start of the line not yet ended
	seen  int  // bytes already searched for a line end
	field bool // a line with a field was seen
}

// complete reports whether b, which extends the b of the previous call,
// holds a whole event that is not only comments.
func (s *eventScan) complete(b []byte) bool {
	for {
		i := bytes.IndexByte(b[s.seen:], '\n')
		if i < 0 {
			s.seen = len(b)
			return false
		}
		end := s.seen + i
		line := b[s.line:end]
		s.line, s.seen = end+1, end+1
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		switch {
		case len(line) == 0:
			if s.field {
				return true
			}
		case line[0] == ':':
		default:
			s.field = true
		}
	}
}

// restore puts the peeked bytes back in front of the rest of resp's body, so
// that the caller reads exactly what the server sent. A body that was read
// whole is closed now, which frees its connection; the bytes are copied out
// of the pooled buffer.
func (p *peek) restore(resp *http.Response) {
	if p.buf == nil {
		return
	}
	rb := &replayBody{prefix: bytes.Clone(p.bytes())}
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
	resp.Body = rb
}

// replayBody reads prefix, then rest (or err).
type replayBody struct {
	prefix []byte
	rest   io.ReadCloser // nil when prefix is the whole body
	err    error         // returned after prefix when rest is nil
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

func (b *replayBody) Close() error {
	if b.rest != nil {
		return b.rest.Close()
	}
	return nil
}
