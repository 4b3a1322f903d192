package llmtransport

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// fakeRT is an in-memory RoundTripper for tests inside synctest bubbles. It
// answers attempt i with respond(i, req) and records when each attempt came.
type fakeRT struct {
	respond func(i int, req *http.Request) (*http.Response, error)

	mu     sync.Mutex
	times  []time.Time
	bodies []string
}

func (f *fakeRT) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	i := len(f.times)
	f.times = append(f.times, time.Now())
	var body string
	if req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		req.Body.Close()
		body = string(b)
	}
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
	resp, err := f.respond(i, req)
	if resp != nil {
		resp.Request = req
	}
	return resp, err
}

func (f *fakeRT) attempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.times)
}

func (f *fakeRT) gap(i int) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.times[i].Sub(f.times[i-1])
}

// response builds a response with the given status, headers (name, value
// pairs) and body.
func response(status int, body string, kv ...string) *http.Response {
	h := make(http.Header)
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	return &http.Response{
		StatusCode:    status,
		Status:        http.StatusText(status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
	}
}

// stallBody is a response body that sends its bytes, then holds the stream
// open until it is closed, as a server that stops writing does.
type stallBody struct {
	r      *strings.Reader
	closed chan struct{}
	once   sync.Once
}

func newStallBody(s string) *stallBody {
	return &stallBody{r: strings.NewReader(s), closed: make(chan struct{})}
}

func (b *stallBody) Read(p []byte) (int, error) {
	if b.r.Len() > 0 {
		return b.r.Read(p)
	}
	<-b.closed
	return 0, errors.New("read on closed body")
}

func (b *stallBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// trackBody is a request body that records whether it was closed.
type trackBody struct {
	io.Reader
	mu     sync.Mutex
	closed bool
	done   chan struct{} // closed by Close; made on first use
}

func (b *trackBody) Close() error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		if b.done != nil {
			close(b.done)
		}
	}
	b.mu.Unlock()
	return nil
}

// closedSoon reports whether b is closed now or within hangGuard. net/http
// may close a request body on its own goroutine after RoundTrip returned
// (the RoundTripper contract allows it): a body it was sending when the
// answer came, as with an Expect: 100-continue refused.
func (b *trackBody) closedSoon() bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return true
	}
	if b.done == nil {
		b.done = make(chan struct{})
	}
	done := b.done
	b.mu.Unlock()
	select {
	case <-done:
		return true
	case <-time.After(hangGuard):
		return false
	}
}

func (b *trackBody) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}
