package llmtransport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// checkLeaks makes t fail if goroutines started during the test are still
// running once all of its cleanups have run. Call it first in the test, so
// that its cleanup runs last (after servers and transports are closed).
// Goroutines already running when it is called are ignored, so tests of
// other files that leave idle connections behind do not make it flaky. It
// must not be used in parallel tests.
func checkLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// hangGuard is how long a test waits for something that must happen
// promptly before it declares a hang. It is a failure detector, not a
// timing assertion: a passing test never waits for it.
const hangGuard = 10 * time.Second

// connTracker counts a server's open connections through its ConnState hook.
type connTracker struct {
	mu     sync.Mutex
	total  int
	open   int
	change chan struct{} // closed and replaced on every change
}

func newConnTracker() *connTracker { return &connTracker{change: make(chan struct{})} }

func (c *connTracker) hook(_ net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case http.StateNew:
		c.total++
		c.open++
	case http.StateClosed, http.StateHijacked:
		c.open--
	default:
		return
	}
	close(c.change)
	c.change = make(chan struct{})
}

func (c *connTracker) counts() (open, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open, c.total
}

// waitClosed fails t unless every connection the server accepted gets
// closed, as a client's CloseIdleConnections does for connections whose
// responses were read and closed. A connection still open means a response
// body that nobody closed.
func (c *connTracker) waitClosed(t *testing.T) {
	t.Helper()
	deadline := time.NewTimer(hangGuard)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		open, ch := c.open, c.change
		c.mu.Unlock()
		if open == 0 {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%d connections still open: a response body was not closed", open)
		}
	}
}

// trackedServer starts an httptest server running h whose connections are
// counted, and a fresh client transport for it (so that idle connections
// of other tests do not interfere). Both are closed when t ends.
func trackedServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *connTracker, *http.Transport) {
	t.Helper()
	ct := newConnTracker()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = ct.hook
	srv.Start()
	base := &http.Transport{}
	t.Cleanup(srv.Close)
	t.Cleanup(base.CloseIdleConnections)
	return srv, ct, base
}

// rawServer is a loopback TCP server that speaks broken HTTP: each
// connection is handed to handle, which writes whatever bytes it likes.
type rawServer struct {
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool
	requests int
}

// newRawServer starts a rawServer. handle gets each accepted connection
// with a reader over it; it returns when it is done with the connection,
// which is then closed. Everything is closed and waited for when t ends.
func newRawServer(t *testing.T, handle func(s *rawServer, c net.Conn, br *bufio.Reader)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			s.wg.Go(func() {
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
				}()
				handle(s, c, bufio.NewReader(c))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() + "/v1/chat/completions" }

// readRequest reads one request and its body from br, and counts it. It
// reports false when the connection ended first.
func (s *rawServer) readRequest(br *bufio.Reader) bool {
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, req.Body)
	req.Body.Close()
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	return true
}

func (s *rawServer) requestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// reset closes c with an RST instead of a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// TestNoLeaksOverLoopback runs calls of every common shape against a real
// server and checks that afterwards no goroutine is left and every
// connection can be closed: discarded attempts, handed-back errors, streams
// read to the end and streams closed early all free what they hold.
func TestNoLeaksOverLoopback(t *testing.T) {
	checkLeaks(t)
	var mu sync.Mutex
	hits := map[string]int{}
	srv, ct, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		hits[r.URL.Path]++
		n := hits[r.URL.Path]
		mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			io.WriteString(w, `{"ok":true}`)
		case "/flaky": // a big error body, then success
			if n%2 == 1 {
				w.WriteHeader(503)
				io.WriteString(w, strings.Repeat("<html>busy</html>", 10000))
				return
			}
			io.WriteString(w, `{"ok":true}`)
		case "/dead":
			w.WriteHeader(502)
			io.WriteString(w, `{"error":{"message":"bad gateway"}}`)
		case "/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 50 {
				io.WriteString(w, "data: {\"i\":"+strings.Repeat("1", i)+"}\n\n")
				w.(http.Flusher).Flush()
			}
			io.WriteString(w, "data: [DONE]\n\n")
		case "/sse-error-first":
			w.Header().Set("Content-Type", "text/event-stream")
			if n%2 == 1 {
				io.WriteString(w, "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n")
				return
			}
			io.WriteString(w, "data: {\"ok\":1}\n\ndata: [DONE]\n\n")
		}
	})
	tr := New(base, WithBackoff(time.Millisecond, time.Millisecond), WithRetryBudget(0, 0), WithFirstByteTimeout(time.Minute), WithoutCircuitBreaker())
	do := func(path string, readAll bool) {
		t.Helper()
		resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), srv.URL+path))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if readAll {
			io.Copy(io.Discard, resp.Body)
		} else {
			io.CopyN(io.Discard, resp.Body, 10)
		}
		resp.Body.Close()
	}
	for range 3 {
		for _, p := range []string{"/ok", "/flaky", "/dead", "/sse", "/sse-error-first"} {
			do(p, true)
			do(p, false)
		}
	}
	tr.CloseIdleConnections()
	ct.waitClosed(t)
	if _, total := ct.counts(); total == 0 {
		t.Fatal("the server saw no connection")
	}
}

// TestNoLeaksWhenCallerCancels cancels calls at every stage: before the
// headers, during a retry wait, and in the middle of a streamed body.
func TestNoLeaksWhenCallerCancels(t *testing.T) {
	checkLeaks(t)
	release := make(chan struct{})
	ready := make(chan struct{}, 1) // the call reached the stage to cancel at
	signal := func() {
		select {
		case ready <- struct{}{}:
		default:
		}
	}
	srv, ct, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/slow-headers":
			signal()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		case "/retry-later":
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(503)
		case "/endless":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"first\":true}\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	})
	defer close(release)
	tr := New(base, WithBackoff(time.Hour, time.Hour), WithRetryBudget(0, 0),
		WithOnRetry(func(RetryEvent) { signal() }))
	for _, path := range []string{"/slow-headers", "/retry-later", "/endless"} {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			resp, err := tr.RoundTrip(newChatRequest(t, ctx, srv.URL+path))
			if err != nil {
				done <- err
				return
			}
			defer resp.Body.Close()
			buf := make([]byte, 64)
			if _, err := resp.Body.Read(buf); err != nil {
				done <- err
				return
			}
			signal() // the first event arrived; the next read blocks
			_, err = io.Copy(io.Discard, resp.Body)
			done <- err
		}()
		select {
		case <-ready:
		case <-time.After(hangGuard):
			t.Fatalf("%s: the call never reached the point to cancel at", path)
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: got %v after cancel, want context.Canceled", path, err)
			}
		case <-time.After(hangGuard):
			t.Fatalf("%s: call did not end after cancel", path)
		}
	}
	tr.CloseIdleConnections()
	ct.waitClosed(t)
}
