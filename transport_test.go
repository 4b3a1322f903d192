package llmtransport_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/llmtransport/llmtransport"
)

// The RoundTripper contract, as net/http states it and as the README
// promises it, checked on every path a call can take through the public
// API: the caller's request is never modified; its body is closed whatever
// happens; err is nil whenever a response came back, and the response is
// the real last one with its body intact; CloseIdleConnections reaches the
// base; success and stream bodies flow through as the server sends them.

const chatBody = `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`

// closeTracker is a request body that says when it was closed.
type closeTracker struct {
	io.Reader
	once   sync.Once
	closed chan struct{}
}

func newCloseTracker(s string) *closeTracker {
	return &closeTracker{Reader: strings.NewReader(s), closed: make(chan struct{})}
}

func (b *closeTracker) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// requestSnapshot is every field of a request a RoundTripper could change.
type requestSnapshot struct {
	method, url, host string
	header            http.Header
	body              io.ReadCloser
	getBody           uintptr
	contentLength     int64
	ctx               context.Context
	close             bool
	trailer           http.Header
}

func snapshot(r *http.Request) requestSnapshot {
	return requestSnapshot{
		method: r.Method, url: r.URL.String(), host: r.Host,
		header: r.Header.Clone(), body: r.Body,
		getBody:       reflect.ValueOf(r.GetBody).Pointer(),
		contentLength: r.ContentLength, ctx: r.Context(), close: r.Close,
		trailer: r.Trailer.Clone(),
	}
}

func (s requestSnapshot) diff(r *http.Request) string {
	now := snapshot(r)
	switch {
	case now.method != s.method || now.url != s.url || now.host != s.host:
		return "method, URL or Host"
	case !reflect.DeepEqual(now.header, s.header):
		return "Header"
	case now.body != s.body:
		return "Body"
	case now.getBody != s.getBody:
		return "GetBody"
	case now.contentLength != s.contentLength:
		return "ContentLength"
	case now.ctx != s.ctx:
		return "the context"
	case now.close != s.close || !reflect.DeepEqual(now.trailer, s.trailer):
		return "Close or Trailer"
	}
	return ""
}

// errPanic stands for "a *PanicError" in the table below.
var errPanic = errors.New("a *PanicError")

// panicRT is a base transport that panics.
type panicRT struct{}

func (panicRT) RoundTrip(*http.Request) (*http.Response, error) { panic("base transport bug") }

// TestRoundTripperContract follows one call down each path: a success, a
// stream, a retry that succeeds, an error handed back after the last
// retry, an error not retried, a transport error, a refusal by an open
// circuit, a caller who cancelled, and a base that panics.
func TestRoundTripperContract(t *testing.T) {
	const busy = `{"error":{"message":"busy","type":"server_error"}}`
	const ok = `{"id":"chatcmpl-1","object":"chat.completion","choices":[]}`
	const stream = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connections to it are refused

	tests := []struct {
		name    string
		handler func(call int, w http.ResponseWriter) // nil: the request goes to deadURL
		base    http.RoundTripper                     // overrides the server's
		opts    []llmtransport.Option
		prepare func(t *testing.T, tr *llmtransport.Transport, url string) // runs first
		cancel  bool                                                       // the caller's context is cancelled
		status  int                                                        // 0: an error is expected
		body    string
		errIs   error
	}{
		{name: "success", handler: func(_ int, w http.ResponseWriter) { writeBody(w, 200, "application/json", ok) },
			status: 200, body: ok},
		{name: "stream", handler: func(_ int, w http.ResponseWriter) { writeBody(w, 200, "text/event-stream", stream) },
			status: 200, body: stream},
		{name: "retried then success", handler: func(call int, w http.ResponseWriter) {
			if call == 0 {
				writeBody(w, 503, "application/json", busy)
				return
			}
			writeBody(w, 200, "application/json", ok)
		}, opts: []llmtransport.Option{llmtransport.WithBackoff(1, 1)}, status: 200, body: ok},
		{name: "error after the last retry", handler: func(_ int, w http.ResponseWriter) { writeBody(w, 503, "application/json", busy) },
			opts: []llmtransport.Option{llmtransport.WithBackoff(1, 1)}, status: 503, body: busy},
		{name: "error not retried", handler: func(_ int, w http.ResponseWriter) {
			writeBody(w, 400, "application/json", `{"error":{"message":"bad","type":"invalid_request_error"}}`)
		}, status: 400, body: `{"error":{"message":"bad","type":"invalid_request_error"}}`},
		{name: "transport error", opts: []llmtransport.Option{llmtransport.WithBackoff(1, 1), llmtransport.WithoutCircuitBreaker()},
			errIs: syscall.ECONNREFUSED},
		{name: "circuit open", handler: func(_ int, w http.ResponseWriter) { writeBody(w, 503, "application/json", busy) },
			opts: []llmtransport.Option{llmtransport.WithMaxRetries(0), llmtransport.WithBreakerThreshold(0.5, 1)},
			prepare: func(t *testing.T, tr *llmtransport.Transport, url string) {
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(chatBody))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			},
			errIs: llmtransport.ErrCircuitOpen},
		{name: "caller cancelled", handler: func(_ int, w http.ResponseWriter) { writeBody(w, 200, "application/json", ok) },
			cancel: true, errIs: context.Canceled},
		{name: "base panics", base: panicRT{}, errIs: errPanic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := deadURL
			var base http.RoundTripper = http.DefaultTransport.(*http.Transport).Clone()
			if tt.handler != nil {
				var calls atomic.Int32
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.Copy(io.Discard, r.Body)
					tt.handler(int(calls.Add(1)-1), w)
				}))
				defer srv.Close()
				url = srv.URL + "/v1/chat/completions"
			}
			if tt.base != nil {
				base = tt.base
			}
			tr := llmtransport.New(base, tt.opts...)
			defer tr.CloseIdleConnections()
			if tt.prepare != nil {
				tt.prepare(t, tr, url)
			}

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(chatBody))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer sk-contract")
			body := newCloseTracker(chatBody)
			req.Body = body
			before := snapshot(req)

			resp, err := tr.RoundTrip(req)

			if what := before.diff(req); what != "" {
				t.Errorf("RoundTrip changed the caller's request: %s", what)
			}
			switch {
			case tt.status != 0 && err != nil:
				t.Fatalf("got error %v, want the %d response", err, tt.status)
			case tt.status != 0:
				got, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.status || rerr != nil || string(got) != tt.body {
					t.Errorf("got %d %q (read error %v), want %d %q", resp.StatusCode, got, rerr, tt.status, tt.body)
				}
				// An error handed back is the transport's last word: an SDK
				// above must not retry it again.
				if want := map[bool]string{true: "false"}[tt.status >= 400]; resp.Header.Get("X-Should-Retry") != want {
					t.Errorf("got X-Should-Retry %q, want %q", resp.Header.Get("X-Should-Retry"), want)
				}
			case resp != nil:
				resp.Body.Close()
				t.Fatalf("got a %d response and error %v, want an error and no response", resp.StatusCode, err)
			case err == nil:
				t.Fatal("got neither a response nor an error")
			case tt.errIs == errPanic:
				var pe *llmtransport.PanicError
				if !errors.As(err, &pe) {
					t.Errorf("got error %v, want a *PanicError", err)
				}
			case tt.errIs != nil && !errors.Is(err, tt.errIs):
				t.Errorf("got error %v, want one that is %v", err, tt.errIs)
			}
			// net/http may close a body it sent after RoundTrip returns:
			// wait for the close, or for the test's deadline.
			select {
			case <-body.closed:
			case <-t.Context().Done():
				t.Fatal("the request body was never closed")
			}
		})
	}
}

func writeBody(w http.ResponseWriter, status int, contentType, body string) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// idleCounter is a base transport that counts CloseIdleConnections calls.
type idleCounter struct {
	http.RoundTripper
	n atomic.Int32
}

func (c *idleCounter) CloseIdleConnections() { c.n.Add(1) }

// TestRoundTripperCloseIdleConnections: the Transport forwards
// CloseIdleConnections to its base, directly and through WrapClient.
func TestRoundTripperCloseIdleConnections(t *testing.T) {
	base := &idleCounter{RoundTripper: http.DefaultTransport}
	llmtransport.New(base).CloseIdleConnections()
	if got := base.n.Load(); got != 1 {
		t.Fatalf("Transport.CloseIdleConnections reached the base %d times, want 1", got)
	}
	c := &http.Client{Transport: base}
	llmtransport.WrapClient(c).CloseIdleConnections()
	if got := base.n.Load(); got != 2 {
		t.Fatalf("the wrapped client's CloseIdleConnections reached the base %d times in all, want 2", got)
	}
}

// TestRoundTripperBodiesFlowThrough: the body of a success, a JSON
// completion or an event stream, reaches the caller as the server sends
// it: the server sends a first part and holds the rest until the caller
// has read that part, which a transport that buffered the body would never
// hand over.
func TestRoundTripperBodiesFlowThrough(t *testing.T) {
	first := map[string]string{
		"application/json":  `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"message":{"content":"` + strings.Repeat("a", 70<<10),
		"text/event-stream": "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
	}
	rest := map[string]string{
		"application/json":  `"}}]}`,
		"text/event-stream": "data: [DONE]\n\n",
	}
	for _, ct := range []string{"application/json", "text/event-stream"} {
		t.Run(ct, func(t *testing.T) {
			readFirst := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ct)
				io.WriteString(w, first[ct])
				w.(http.Flusher).Flush()
				select {
				case <-readFirst:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, rest[ct])
			}))
			defer srv.Close()
			tr := llmtransport.New(http.DefaultTransport.(*http.Transport).Clone())
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(chatBody))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got := make([]byte, len(first[ct]))
			if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != first[ct] {
				t.Fatalf("read %d bytes (error %v) of the first part", len(got), err)
			}
			close(readFirst)
			tail, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(tail, []byte(rest[ct])) {
				t.Fatalf("read %q (error %v) after the first part, want %q", tail, err, rest[ct])
			}
		})
	}
}
