package llmtransport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// lateBody is a response body whose bytes come after delay, unless ctx
// (the attempt's) ends first, as a real transport's body would.
type lateBody struct {
	ctx    context.Context
	delay  time.Duration
	r      io.Reader
	waited bool
}

func (b *lateBody) Read(p []byte) (int, error) {
	if !b.waited {
		t := time.NewTimer(b.delay)
		defer t.Stop()
		select {
		case <-t.C:
			b.waited = true
		case <-b.ctx.Done():
			return 0, context.Cause(b.ctx)
		}
	}
	return b.r.Read(p)
}

func (b *lateBody) Close() error { return nil }

// TestRetryFirstByteTimeoutSparesErrorBodies: WithFirstByteTimeout bounds
// the headers (and a stream's first event), nothing else. An error whose
// headers come at once and whose body comes later is read whole and
// classified by its body: a 400 reaches the caller intact, and a 429
// "insufficient_quota" is not retried as the plain rate limit its status
// alone would say. A 200 stream whose first event is late still times out.
func TestRetryFirstByteTimeoutSparesErrorBodies(t *testing.T) {
	const (
		contextBody = `{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`
		quotaBody   = `{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","code":"insufficient_quota"}}`
		event       = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
	)
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		attempts    int
	}{
		{"400 context length", 400, "application/json", contextBody, 1},
		{"429 insufficient quota", 429, "application/json", quotaBody, 1},
		{"500 error stream", 500, "text/event-stream", "event: error\ndata: " + contextBody + "\n\n", 1},
		// The stream's first event is bounded: attempt 0 times out, the
		// retry (answered at once) is what the caller reads.
		{"200 stream, first event late", 200, "text/event-stream", event, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{respond: func(i int, req *http.Request) (*http.Response, error) {
					r := response(tt.status, "", "Content-Type", tt.contentType)
					r.ContentLength = -1
					delay := 5 * time.Second
					if i > 0 && tt.status == 200 {
						delay = 0
					}
					r.Body = &lateBody{ctx: req.Context(), delay: delay, r: strings.NewReader(tt.body)}
					return r, nil
				}}
				tr := New(f, WithoutCircuitBreaker(), WithFirstByteTimeout(time.Second))
				resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
				if err != nil {
					t.Fatal(err)
				}
				got, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if rerr != nil || string(got) != tt.body || resp.StatusCode != tt.status {
					t.Fatalf("got %d %q (read error %v), want %d %q intact", resp.StatusCode, got, rerr, tt.status, tt.body)
				}
				if f.attempts() != tt.attempts {
					t.Fatalf("got %d attempts, want %d", f.attempts(), tt.attempts)
				}
			})
		})
	}
}

// TestRetryLastResponseSurvivesTransportErrors: a 503, then retries whose
// connections are reset. The caller gets the 503 (the server's last word,
// body intact, X-Should-Retry: false), not the later transport error, which
// an SDK above would retry again, multiplying the attempts. A body larger
// than the peek keeps its first 64 KiB and then says it was cut; the
// caller's own cancellation still ends the call with its error. A stream
// whose first event was the error is read on during the wait before the
// retry: kept whole when it ends in time, cut where the wait ended when the
// server holds it open.
func TestRetryLastResponseSurvivesTransportErrors(t *testing.T) {
	const busy = `{"error":{"message":"busy","type":"server_error"}}`
	connReset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	big := strings.Repeat("x", maxPeek+1000)
	tests := []struct {
		name     string
		respond  func(i int) (*http.Response, error)
		attempts int
		status   int
		id       string
		body     string
		cut      bool // the body ends with errBodyCut after what was peeked
	}{
		{"503 then resets", func(i int) (*http.Response, error) {
			if i == 0 {
				return response(503, busy, "X-Request-Id", "req_0"), nil
			}
			return nil, connReset
		}, 4, 503, "req_0", busy, false},
		{"503, 502, then EOF", func(i int) (*http.Response, error) {
			switch i {
			case 0:
				return response(503, busy, "X-Request-Id", "req_0"), nil
			case 1:
				return response(502, `{"error":{"message":"bad gateway"}}`, "X-Request-Id", "req_1"), nil
			}
			return nil, io.EOF
		}, 4, 502, "req_1", `{"error":{"message":"bad gateway"}}`, false},
		{"error-first stream then resets", func(i int) (*http.Response, error) {
			if i == 0 {
				return response(200, "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\ndata: [DONE]\n\n", "Content-Type", "text/event-stream", "X-Request-Id", "req_0"), nil
			}
			return nil, connReset
		}, 4, 200, "req_0", "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\ndata: [DONE]\n\n", false},
		{"error-first stream held open, then resets", func(i int) (*http.Response, error) {
			if i == 0 {
				r := response(200, "", "Content-Type", "text/event-stream", "X-Request-Id", "req_0")
				r.Body = newStallBody("data: {\"error\":{\"message\":\"busy\",\"type\":\"server_error\"}}\n\n")
				return r, nil
			}
			return nil, connReset
		}, 4, 200, "req_0", "data: {\"error\":{\"message\":\"busy\",\"type\":\"server_error\"}}\n\n", true},
		{"503 larger than the peek, then resets", func(i int) (*http.Response, error) {
			if i == 0 {
				return response(503, big, "X-Request-Id", "req_0"), nil
			}
			return nil, connReset
		}, 4, 503, "req_0", big[:maxPeek], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) { return tt.respond(i) }}
				resp, err := New(f, WithoutCircuitBreaker()).RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
				if err != nil {
					t.Fatalf("got %v after %d attempts, want the last response", err, f.attempts())
				}
				got, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if f.attempts() != tt.attempts || resp.StatusCode != tt.status || resp.Header.Get("X-Request-Id") != tt.id {
					t.Fatalf("got %d %s after %d attempts, want %d %s after %d", resp.StatusCode, resp.Header.Get("X-Request-Id"), f.attempts(), tt.status, tt.id, tt.attempts)
				}
				if string(got) != tt.body || (rerr != nil) != tt.cut || (tt.cut && !errors.Is(rerr, errBodyCut)) {
					t.Fatalf("read %d bytes (error %v), want %d bytes (cut: %v)", len(got), rerr, len(tt.body), tt.cut)
				}
				if resp.Header.Get("X-Should-Retry") != "false" {
					t.Fatalf("X-Should-Retry %q, want false", resp.Header.Get("X-Should-Retry"))
				}
			})
		})
	}
	t.Run("caller cancels during a retry", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			f := &fakeRT{respond: func(i int, req *http.Request) (*http.Response, error) {
				if i == 0 {
					return response(503, busy), nil
				}
				cancel()
				return nil, req.Context().Err()
			}}
			_, err := New(f, WithoutCircuitBreaker()).RoundTrip(newChatRequest(t, ctx, "http://gw.test/v1/chat/completions"))
			if !errors.Is(err, context.Canceled) || f.attempts() != 2 {
				t.Fatalf("got %v after %d attempts, want context.Canceled after 2", err, f.attempts())
			}
		})
	})
	t.Run("over loopback", func(t *testing.T) {
		checkLeaks(t)
		s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
			if !s.readRequest(br) {
				return
			}
			if s.requestCount() == 1 {
				io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "+strconv.Itoa(len(busy))+"\r\n\r\n"+busy)
				return
			}
			reset(c)
		})
		base := &http.Transport{}
		defer base.CloseIdleConnections()
		resp, err := (&http.Client{Transport: New(base, fastRetries()...)}).Post(s.url(), "application/json", strings.NewReader(chatBody))
		if err != nil {
			t.Fatalf("got %v, want the 503", err)
		}
		got, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || string(got) != busy || rerr != nil || s.requestCount() != 4 {
			t.Fatalf("got %d %q (%v) after %d attempts, want the 503 intact after 4", resp.StatusCode, got, rerr, s.requestCount())
		}
	})
}
