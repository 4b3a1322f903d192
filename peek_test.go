package llmtransport

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of what the transport reads from the front of a response body
// before it classifies it (peek.go), over loopback.

// gatedServer is a loopback server that answers every request with status,
// content type ct and the body head+tail, writing tail only once the client
// has read something of the body: the client's first read can hold nothing
// of tail. It returns the server's request count and a base transport that
// does the gating.
func gatedServer(t *testing.T, status int, ct, head, tail string) (*atomic.Int32, string, http.RoundTripper) {
	t.Helper()
	var requests atomic.Int32
	releases := make(chan chan struct{}, 16)
	srv, _, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		requests.Add(1)
		release := make(chan struct{})
		releases <- release
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(status)
		io.WriteString(w, head)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, tail)
	})
	gated := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(r)
		if err == nil {
			resp.Body = &gateBody{ReadCloser: resp.Body, release: <-releases}
		}
		return resp, err
	})
	return &requests, srv.URL, gated
}

// gateBody closes release once something has been read from it.
type gateBody struct {
	io.ReadCloser
	release chan struct{}
	once    sync.Once
}

func (b *gateBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.once.Do(func() { close(b.release) })
	}
	return n, err
}

// circuitCounts returns the successes and failures tr's only circuit has
// counted.
func circuitCounts(t *testing.T, tr *Transport) (successes, failures uint32) {
	t.Helper()
	cs := tr.Circuits()
	if len(cs) != 1 {
		t.Fatalf("got %d circuits, want 1", len(cs))
	}
	return cs[0].Successes, cs[0].Failures
}

// TestPeekSkipsEventsWithoutData: a healthy stream that starts with events
// carrying only retry: or id: fields, comments or an event name, and sends
// its first data a little later, is one attempt, counted as a success,
// handed back unmarked and byte for byte. (It was taken for a stream that
// ended without an event: retried, each time a billed generation.)
func TestPeekSkipsEventsWithoutData(t *testing.T) {
	const tail = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
	for _, head := range []string{
		"retry: 3000\n\n",
		"id: 1\n\n",
		": hello\n\nretry: 10\nid: 7\n\n",
		"event: ping\n\n",
		"data:\n\ndata:  \n\n", // data fields with nothing in them
		"\ufeffretry: 3000\n\n",
		"retry: 3000\r\rid: 1\r\n\r\n",
	} {
		t.Run(strings.TrimSpace(head), func(t *testing.T) {
			checkLeaks(t)
			requests, url, base := gatedServer(t, 200, "text/event-stream", head, tail)
			tr := New(base, fastRetries()...)
			resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), url))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(got) != head+tail {
				t.Fatalf("read %q (%v), want %q", got, err, head+tail)
			}
			if n := requests.Load(); n != 1 || resp.Header.Get("X-Should-Retry") != "" {
				t.Fatalf("server got %d requests, X-Should-Retry %q; want 1 and none", n, resp.Header.Get("X-Should-Retry"))
			}
			if s, f := circuitCounts(t, tr); s != 1 || f != 0 {
				t.Fatalf("circuit counted %d successes and %d failures, want 1 and 0", s, f)
			}
		})
	}
}

// TestPeekNoBody: a response with no body to read (to a HEAD, a 204 or
// 304, a Content-Length of 0) is never peeked: a 200 event stream answering
// a HEAD is a success, not a stream that ended without an event. An error
// status with no body is still classified by its status and retried.
func TestPeekNoBody(t *testing.T) {
	for _, tt := range []struct {
		method   string
		status   int
		length   bool // send Content-Length: 0
		attempts int32
	}{
		{http.MethodHead, 200, false, 1},
		{http.MethodHead, 200, true, 1},
		{http.MethodPost, 200, true, 1},
		{http.MethodPost, 204, false, 1},
		{http.MethodGet, 304, false, 1},
		{http.MethodHead, 503, false, 1 + DefaultMaxRetries},
	} {
		t.Run(fmt200(tt.method, tt.status, tt.length), func(t *testing.T) {
			checkLeaks(t)
			var requests atomic.Int32
			srv, _, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				requests.Add(1)
				w.Header().Set("Content-Type", "text/event-stream")
				if tt.length {
					w.Header().Set("Content-Length", "0")
				}
				w.WriteHeader(tt.status)
			})
			tr := New(base, fastRetries()...)
			req := newChatRequest(t, t.Context(), srv.URL)
			req.Method = tt.method
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || len(got) != 0 || resp.StatusCode != tt.status {
				t.Fatalf("got %d %q (%v), want %d and no body", resp.StatusCode, got, err, tt.status)
			}
			if n := requests.Load(); n != tt.attempts {
				t.Fatalf("server got %d requests, want %d", n, tt.attempts)
			}
			if s, f := circuitCounts(t, tr); tt.status < 400 && (s != 1 || f != 0) {
				t.Fatalf("circuit counted %d successes and %d failures, want 1 and 0", s, f)
			}
		})
	}
}

// fmt200 names a case of TestPeekNoBody.
func fmt200(method string, status int, length bool) string {
	s := method + " " + http.StatusText(status)
	if length {
		s += " Content-Length 0"
	}
	return s
}

// TestPeekLoneCR: an event stream whose lines end with a CR alone, which
// the event stream format allows, goes back as soon as its first event is
// in, not when the server ends the stream; an error first event so written
// is retried like any other.
func TestPeekLoneCR(t *testing.T) {
	t.Run("healthy", func(t *testing.T) {
		for _, head := range []string{
			"data: {\"choices\":[]}\r\r",
			": ping\r\rretry: 1\r\rdata: {\"choices\":[]}\r\r",
			"data: {\"choices\":\r\rdata: []}\r\n\r",
		} {
			checkLeaks(t)
			release := make(chan struct{})
			srv, _, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, head)
				w.(http.Flusher).Flush()
				select { // the rest only once the caller has the response
				case <-release:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, "data: [DONE]\r\r")
			})
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan *http.Response, 1)
			go func() {
				resp, err := New(base, fastRetries()...).RoundTrip(newChatRequest(t, ctx, srv.URL))
				if err != nil {
					t.Error(err)
				}
				done <- resp
			}()
			var resp *http.Response
			select {
			case resp = <-done:
			case <-time.After(hangGuard):
				cancel()
				<-done
				t.Fatalf("%q: the response was held back until the stream's end", head)
			}
			close(release)
			if resp == nil {
				t.FailNow()
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			if want := head + "data: [DONE]\r\r"; err != nil || string(got) != want {
				t.Fatalf("read %q (%v), want %q", got, err, want)
			}
		}
	})
	t.Run("error first", func(t *testing.T) {
		checkLeaks(t)
		first := ": ping\revent: error\rdata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\r\r"
		if cl := Classify(response(200, first, "Content-Type", "text/event-stream"), []byte(first)); cl.Class != ClassOverloaded {
			t.Fatalf("Classify says %v, want overloaded", cl.Class)
		}
		var requests atomic.Int32
		srv, _, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/event-stream")
			if requests.Add(1) == 1 {
				io.WriteString(w, first)
				return
			}
			io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\rdata: [DONE]\r\r")
		})
		resp, err := New(base, fastRetries()...).RoundTrip(newChatRequest(t, t.Context(), srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if n := requests.Load(); n != 2 || string(got) != "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\rdata: [DONE]\r\r" {
			t.Fatalf("server got %d requests, caller read %q; want 2 and the second stream", n, got)
		}
	})
}

// TestEventScanLineEnds: the peek's scan for the end of the first event
// sees the same lines however the bytes are split between reads: a CRLF
// split after its CR is one line end, not a CR and then a blank line.
func TestEventScanLineEnds(t *testing.T) {
	for _, tt := range []struct {
		chunks []string
		want   int // chunks after which the event is complete; 0: never
	}{
		{[]string{"data: a\r", "\n", "\r\n"}, 3},
		{[]string{"data: a\r", "\ndata: b\r\n", "\r"}, 3},
		{[]string{"data: a\r", "\r"}, 2},
		{[]string{"data: a\n", "\r"}, 2},
		{[]string{": c\r", "\n", "data: a\r\n"}, 0},
		{[]string{"retry: 1\r", "\n\r", "\ndata: a\r", "\n"}, 0},
		{[]string{"\xef", "\xbb\xbfdata: a\n", "\n"}, 3},
		{[]string{"\xef\xbb", "data: a\n\n"}, 0}, // not a BOM: a field named "\xef\xbbdata"
	} {
		var sc eventScan
		var b []byte
		got := 0
		for i, c := range tt.chunks {
			b = append(b, c...)
			if sc.complete(b) {
				got = i + 1
				break
			}
		}
		if got != tt.want {
			t.Errorf("%q: complete after %d chunks, want %d", tt.chunks, got, tt.want)
		}
	}
}

// TestPeekErrorInside200: a 2xx JSON body whose first key is an error (as
// new-api passes an upstream's error through, and bills it) is classified
// like the error it carries: retried, counted as a failure; a completion
// goes back at once, byte for byte, whatever its first key.
func TestPeekErrorInside200(t *testing.T) {
	const completion = `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`
	for _, tt := range []struct {
		name       string
		head, tail string // the first attempt's body, written in two parts
		attempts   int32
	}{
		{"error object", `{"error":{"message":"upstream error: do request failed","type":"new_api_error","code":"do_request_failed"}}`, "", 2},
		{"error split across reads", `{"err`, `or":{"message":"The server had an error while processing your request.","type":"server_error"}}`, 2},
		{"error indented", "\ufeff{\n  \"error\": {\n    \"message\": \"Internal error\",\n    \"code\": 500\n  }\n}", "", 2},
		{"anthropic error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, "", 2},
		{"completion", completion[:20], completion[20:], 1},
		{"error null", `{"error":null,"id":"x","choices":[]}`, "", 1},
		{"completion typed", `{"type":"message","id":"msg_1","content":[]}`, "", 1},
		{"array", `[{"candidates":[]}]`, "", 1},
		{"keep-alive whitespace", "\n", completion, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			var requests atomic.Int32
			releases := make(chan chan struct{}, 16)
			srv, _, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				if requests.Add(1) > 1 {
					io.WriteString(w, completion)
					return
				}
				release := make(chan struct{})
				releases <- release
				io.WriteString(w, tt.head)
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, tt.tail)
			})
			gated := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				resp, err := base.RoundTrip(r)
				if err == nil && requests.Load() == 1 {
					resp.Body = &gateBody{ReadCloser: resp.Body, release: <-releases}
				}
				return resp, err
			})
			tr := New(gated, fastRetries()...)
			resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := tt.head + tt.tail
			if tt.attempts > 1 {
				want = completion
			}
			if err != nil || string(got) != want || resp.Header.Get("X-Should-Retry") != "" {
				t.Fatalf("read %q (%v), X-Should-Retry %q; want %q unmarked", got, err, resp.Header.Get("X-Should-Retry"), want)
			}
			if n := requests.Load(); n != tt.attempts {
				t.Fatalf("server got %d requests, want %d", n, tt.attempts)
			}
			// The circuit judges the call, which the retry rescued.
			if s, f := circuitCounts(t, tr); s != 1 || f != 0 {
				t.Fatalf("circuit counted %d successes and %d failures, want 1 and 0", s, f)
			}
		})
	}
}

// scriptedBody returns its reads one by one, then err (a panic when err is
// errPanicRead).
type scriptedBody struct {
	reads []string
	err   error
}

var errPanicRead = errors.New("panic")

func (b *scriptedBody) Read(p []byte) (int, error) {
	if len(b.reads) == 0 {
		if b.err == errPanicRead {
			panic("broken body")
		}
		return 0, b.err
	}
	n := copy(p, b.reads[0])
	if b.reads[0] = b.reads[0][n:]; b.reads[0] == "" {
		b.reads = b.reads[1:]
	}
	return n, nil
}

func (b *scriptedBody) Close() error { return nil }

// TestPeekHead: the head of a 2xx JSON body is read straight into the body
// that puts it back; a head that says error is read on as an error body.
// Whatever happens to the read, the caller gets the bytes the server sent,
// then the read's error.
func TestPeekHead(t *testing.T) {
	long := `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"content":"hi"}}]}`
	readErr := errors.New("connection reset")
	for _, tt := range []struct {
		name   string
		body   scriptedBody
		peeked bool   // the head said error: the peek holds the body
		want   string // what the caller (or the peek) reads
		err    error  // and then
	}{
		{"completion", scriptedBody{reads: []string{long}, err: io.EOF}, false, long, nil},
		{"completion a byte at a time", scriptedBody{reads: strings.Split(long, ""), err: io.EOF}, false, long, nil},
		{"head broken", scriptedBody{reads: []string{`{"i`}, err: readErr}, false, `{"i`, readErr},
		{"head filled with blanks", scriptedBody{reads: []string{strings.Repeat(" ", headLen) + `{"error":{}}`}, err: io.EOF}, false, strings.Repeat(" ", headLen) + `{"error":{}}`, nil},
		{"error", scriptedBody{reads: []string{`{"error":{"message":"busy"}}`}, err: io.EOF}, true, `{"error":{"message":"busy"}}`, nil},
		{"error longer than the head", scriptedBody{reads: []string{`{"error":{"message":"` + strings.Repeat("x", 100) + `"}}`}, err: io.EOF}, true, `{"error":{"message":"` + strings.Repeat("x", 100) + `"}}`, nil},
		{"error broken", scriptedBody{reads: []string{`{"error":{"mess`}, err: readErr}, true, `{"error":{"mess`, readErr},
		{"body panics", scriptedBody{reads: []string{`{"i`}, err: errPanicRead}, false, `{"i`, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := response(200, "")
			resp.Body = &tt.body
			req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
			var p peek
			p.take(req, resp)
			defer p.release()
			if (p.buf != nil) != tt.peeked {
				t.Fatalf("peeked %v, want %v", p.buf != nil, tt.peeked)
			}
			var got []byte
			var err error
			if tt.peeked {
				got, err = p.bytes(), p.err
			} else {
				got, err = io.ReadAll(resp.Body)
			}
			if string(got) != tt.want {
				t.Errorf("read %q, want %q", got, tt.want)
			}
			switch {
			case tt.body.err == errPanicRead:
				if err == nil || !strings.Contains(err.Error(), "panicked") {
					t.Errorf("error %v, want the panic as a read error", err)
				}
			case !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil):
				t.Errorf("error %v, want %v", err, tt.err)
			}
		})
	}
}
