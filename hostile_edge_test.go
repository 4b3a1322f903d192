package llmtransport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// More hostile cases, at the edges of net/http: redirects that carry the
// body, Expect: 100-continue, streams read while idle connections are
// closed.

// TestHostileRedirectsWithBodies: an http.Client over the transport follows
// 307 and 308 with the request's body; the transport retries a 503 on
// either side of the redirect, and every attempt carries the body whole.
func TestHostileRedirectsWithBodies(t *testing.T) {
	for _, code := range []int{307, 308} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			checkLeaks(t)
			var (
				mu     sync.Mutex
				bodies []string
				hits   = map[string]int{}
			)
			srv, ct, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				bodies = append(bodies, string(b))
				hits[r.URL.Path]++
				n := hits[r.URL.Path]
				mu.Unlock()
				switch {
				case n == 1:
					w.WriteHeader(503)
				case r.URL.Path == "/a":
					w.Header().Set("Location", "/b")
					w.WriteHeader(code)
				default:
					io.WriteString(w, `{"ok":true}`)
				}
			})
			client := &http.Client{Transport: New(base, fastRetries()...)}
			resp, err := client.Post(srv.URL+"/a", "application/json", strings.NewReader(chatBody))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(got) != `{"ok":true}` {
				t.Fatalf("got %d %q, want the 200 at /b", resp.StatusCode, got)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(bodies) != 4 {
				t.Fatalf("server got %d requests (%v), want 4: 503 and %d at /a, 503 and 200 at /b", len(bodies), hits, code)
			}
			for i, b := range bodies {
				if b != chatBody {
					t.Fatalf("request %d carried %q, want %q", i, b, chatBody)
				}
			}
			client.CloseIdleConnections()
			ct.waitClosed(t)
		})
	}
}

// TestHostileExpectContinue: a request with Expect: 100-continue whose
// first attempt is answered 503 before the server reads its body. The
// retry sends the body whole, and the caller's body is closed.
func TestHostileExpectContinue(t *testing.T) {
	checkLeaks(t)
	var hits atomic.Int64
	var got atomic.Value
	srv, ct, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.WriteHeader(503) // before reading the body: no 100 Continue
			return
		}
		b, _ := io.ReadAll(r.Body)
		got.Store(string(b))
		io.WriteString(w, `{"ok":true}`)
	})
	base.ExpectContinueTimeout = hangGuard
	body := &trackBody{Reader: strings.NewReader(chatBody)}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, body)
	req.Header.Set("Expect", "100-continue")
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(chatBody)), nil }
	resp, err := New(base, fastRetries()...).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The first attempt's body is the caller's own, which net/http closes
	// on its write goroutine when the 503 stops it: maybe after RoundTrip
	// returned.
	closed := body.closedSoon()
	if resp.StatusCode != 200 || hits.Load() != 2 || got.Load() != chatBody || !closed {
		t.Fatalf("got %d after %d attempts, server read %q, body closed %v; want 200 after 2, the body whole, closed", resp.StatusCode, hits.Load(), got.Load(), closed)
	}
	base.CloseIdleConnections()
	ct.waitClosed(t)
}

// TestHostileStreamWhileIdleClosed: a stream half read, then read on while
// the transport's CloseIdleConnections runs again and again, over HTTP/1.1
// and HTTP/2: a connection in use is not idle, so the stream goes on to its
// end, intact.
func TestHostileStreamWhileIdleClosed(t *testing.T) {
	const events = 200
	event := []byte("data: {\"choices\":[{\"delta\":{\"content\":\"tick\"}}]}\n\n")
	for _, useH2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[useH2], func(t *testing.T) {
			release := make(chan struct{})
			h := func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "text/event-stream")
				for i := range events {
					w.Write(event)
					w.(http.Flusher).Flush()
					if i == 0 {
						<-release
					}
				}
			}
			var base http.RoundTripper
			var url string
			if useH2 {
				srv := startH2(t, true, h)
				base, url = srv.Client().Transport, srv.URL
			} else {
				srv, _, b := trackedServer(t, h)
				base, url = b, srv.URL
			}
			tr := New(base, fastRetries()...)
			resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), url))
			if err != nil {
				close(release)
				t.Fatal(err)
			}
			defer resp.Body.Close()
			first := make([]byte, len(event))
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				close(release)
				t.Fatal(err)
			}
			// The rest is read on another goroutine while idle connections
			// are closed, again and again, until the stream ends.
			type result struct {
				rest []byte
				err  error
			}
			read := make(chan result, 1)
			go func() {
				rest, err := io.ReadAll(resp.Body)
				read <- result{rest, err}
			}()
			close(release)
			var r result
		closing:
			for {
				select {
				case r = <-read:
					break closing
				default:
					tr.CloseIdleConnections()
				}
			}
			if r.err != nil || !bytes.Equal(r.rest, bytes.Repeat(event, events-1)) {
				t.Fatalf("read %d more bytes (%v), want %d", len(r.rest), r.err, (events-1)*len(event))
			}
			resp.Body.Close()
			tr.CloseIdleConnections()
		})
	}
}

// TestHostileRequestBodyFailureIsNotTheModels: the caller's request body
// fails while an attempt sends it (a proxy's client went away, a file
// read failed). net/http returns that read error as the round trip's:
// it is the caller's, so it is not retried and does not count against
// the model's circuit, even when it is a connection reset of the caller's
// own.
func TestHostileRequestBodyFailureIsNotTheModels(t *testing.T) {
	clientGone := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET} // the caller's upstream, not ours
	t.Run("GetBody's body on a retry", func(t *testing.T) {
		checkLeaks(t)
		srv, _, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(503)
		})
		req := newChatRequest(t, t.Context(), srv.URL)
		req.GetBody = func() (io.ReadCloser, error) {
			return io.NopCloser(io.MultiReader(strings.NewReader(`{"mo`), iotestErrReader(clientGone))), nil
		}
		tr := New(base, fastRetries()...)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("got %v, want the 503 of attempt 0", err)
		}
		resp.Body.Close()
		// The call ended on the caller's body failing: it says nothing
		// about the model, whatever attempt 0 got.
		if failures, excluded := failureCounts(tr); failures != 0 || excluded != 1 {
			t.Fatalf("circuit counted %d failures, %d excluded; want 0 and 1 (a call that ended on the caller's body)", failures, excluded)
		}
	})
	t.Run("a body too large to buffer", func(t *testing.T) {
		checkLeaks(t)
		var hits atomic.Int64
		srv, _, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			io.Copy(io.Discard, r.Body)
		})
		body := &trackBody{Reader: io.MultiReader(strings.NewReader(chatBody), iotestErrReader(clientGone))}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, body)
		tr := New(base, append(fastRetries(), WithMaxBufferedBody(16))...)
		_, err := tr.RoundTrip(req)
		if closed := body.closedSoon(); !errors.Is(err, syscall.ECONNRESET) || !closed {
			t.Fatalf("got %v, body closed %v; want the body's error, closed", err, closed)
		}
		if failures, excluded := failureCounts(tr); failures != 0 || excluded != 1 {
			t.Fatalf("circuit counted %d failures, %d excluded; want 0 and 1", failures, excluded)
		}
	})
}
