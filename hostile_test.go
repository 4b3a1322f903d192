package llmtransport

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// Hostile gateways: each test sends calls through New(...) to a server (or
// base transport) that misbehaves, and checks that the call ends within the
// bound its context and the retry policy imply, that the caller gets a
// response or a typed error, and that nothing is left behind.

// fastRetries keeps loopback tests quick: retries wait about a millisecond.
func fastRetries() []Option {
	return []Option{WithBackoff(time.Millisecond, time.Millisecond), WithRetryBudget(0, 0)}
}

// allocated returns how many bytes the whole process allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// patternWriter checks that what is written to it repeats pattern, from the
// start, and counts it.
type patternWriter struct {
	pattern []byte
	n       int64
	bad     bool
}

func (w *patternWriter) Write(p []byte) (int, error) {
	for i := 0; i < len(p); {
		at := int((w.n + int64(i)) % int64(len(w.pattern)))
		k := min(len(p)-i, len(w.pattern)-at)
		if !bytes.Equal(p[i:i+k], w.pattern[at:at+k]) {
			w.bad = true
			return i, errors.New("byte differs from what the server sent")
		}
		i += k
	}
	w.n += int64(len(p))
	return len(p), nil
}

// TestHostileHugeErrorBody: a 500 with 100 MB of HTML. The transport reads
// at most its peek of each attempt, so memory stays bounded whatever the
// body's size, and the caller can still read all 100 MB, byte for byte.
func TestHostileHugeErrorBody(t *testing.T) {
	checkLeaks(t)
	const size = 100 << 20
	chunk := bytes.Repeat([]byte("<html><body><h1>502 Bad Gateway</h1></body></html>\n"), 800)
	srv, ct, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.WriteHeader(500)
		for sent := 0; sent < size; {
			n, err := w.Write(chunk[:min(len(chunk), size-sent)])
			if err != nil {
				return // the client went away
			}
			sent += n
		}
	})
	attempts := 0
	tr := New(base, append(fastRetries(), WithOnRetry(func(RetryEvent) { attempts++ }))...)
	var resp *http.Response
	var err error
	rtAlloc := allocated(func() {
		resp, err = tr.RoundTrip(newChatRequest(t, t.Context(), srv.URL))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 500 || attempts != DefaultMaxRetries {
		t.Fatalf("got %d after %d retries, want 500 after %d", resp.StatusCode, attempts, DefaultMaxRetries)
	}
	w := &patternWriter{pattern: chunk}
	readAlloc := allocated(func() {
		_, err = io.Copy(w, resp.Body)
	})
	if err != nil || w.n != size {
		t.Fatalf("caller read %d bytes (%v), want all %d bytes the server sent", w.n, err, size)
	}
	// Four attempts over four connections cost about 4 peeks (64 KiB each)
	// plus the connections' buffers; buffering the body would cost 100 MB.
	t.Logf("allocated %d KiB in RoundTrip (%d attempts), %d KiB reading 100 MiB", rtAlloc>>10, attempts+1, readAlloc>>10)
	if rtAlloc > 8<<20 || readAlloc > 8<<20 {
		t.Fatalf("allocated %d KiB in RoundTrip and %d KiB reading, want both under 8 MiB", rtAlloc>>10, readAlloc>>10)
	}
	resp.Body.Close()
	tr.CloseIdleConnections()
	ct.waitClosed(t)
}

// TestHostileGzipBombErrorBody: a 500 whose gzip body is 1 MiB on the wire
// and 1 GiB decompressed, decompressed by the default transport. The
// transport reads only its peek of the decompressed stream.
func TestHostileGzipBombErrorBody(t *testing.T) {
	checkLeaks(t)
	srv, ct, base, _ := gzipBombServer(t)
	tr := New(base, fastRetries()...)
	var resp *http.Response
	var err error
	alloc := allocated(func() {
		resp, err = tr.RoundTrip(newChatRequest(t, t.Context(), srv.URL))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if !resp.Uncompressed || resp.StatusCode != 500 {
		t.Fatalf("got %d, uncompressed %v; want a 500 the base transport decompressed", resp.StatusCode, resp.Uncompressed)
	}
	t.Logf("allocated %d KiB in RoundTrip", alloc>>10)
	if alloc > 8<<20 {
		t.Fatalf("allocated %d KiB in RoundTrip, want under 8 MiB", alloc>>10)
	}
	// The caller still gets the decompressed body from its start.
	w := &patternWriter{pattern: make([]byte, 4096)}
	if _, err := io.CopyN(w, resp.Body, 4<<20); err != nil {
		t.Fatalf("reading the handed-back body: %v after %d bytes", err, w.n)
	}
	resp.Body.Close()
	tr.CloseIdleConnections()
	ct.waitClosed(t)
}

// TestHostileWaitHints: absurd or broken wait hints. A deadline-less call
// must never wait an absurd time: a hint is either ignored (the transport
// falls back to its bounded backoff) or above the cap (the response goes
// back at once). A hint parsed into a wait within the cap, or a negative
// one, is a parsing bug. Where the classifier reads the kind of hint at all
// (its control value parses), a valid but huge hint must count as above
// the cap.
func TestHostileWaitHints(t *testing.T) {
	// Each case gives a header or body carrying the hostile hint, and the
	// same carrier with a 5 s hint as the control.
	// extra are more header pairs, such as the "remaining: 0" that makes a
	// reset header the hint.
	header := func(name, v string, extra ...string) func(time.Time) ([]string, string) {
		return func(time.Time) ([]string, string) {
			return append([]string{name, v}, extra...), `{"error":{"message":"rate limited","code":"rate_limit_exceeded"}}`
		}
	}
	date := func(name string, d time.Time, layout string, extra ...string) func(time.Time) ([]string, string) {
		return func(time.Time) ([]string, string) {
			return append([]string{name, d.Format(layout)}, extra...), `{"error":{"message":"rate limited"}}`
		}
	}
	in5s := func(name, layout string, extra ...string) func(time.Time) ([]string, string) {
		return func(now time.Time) ([]string, string) {
			return append([]string{name, now.Add(5 * time.Second).Format(layout)}, extra...), `{}`
		}
	}
	flat := func(v string) func(time.Time) ([]string, string) {
		return func(time.Time) ([]string, string) {
			return nil, `{"success":false,"message":"rate limited","data":{"retry_after":` + v + `}}`
		}
	}
	oaiReq := []string{"x-ratelimit-remaining-requests", "0"}
	oaiTok := []string{"x-ratelimit-remaining-tokens", "0"}
	anth := []string{"anthropic-ratelimit-requests-remaining", "0"}
	gemini := func(delay string) func(time.Time) ([]string, string) {
		return func(time.Time) ([]string, string) {
			return nil, `{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"` + delay + `"}]}}`
		}
	}
	message := func(in string) func(time.Time) ([]string, string) {
		return func(time.Time) ([]string, string) {
			return nil, `{"error":{"message":"Rate limit reached for gpt-4o. Please try again in ` + in + `.","code":"rate_limit_exceeded"}}`
		}
	}
	y1900 := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	y3000 := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		hint    func(now time.Time) ([]string, string)
		control func(now time.Time) ([]string, string)
		huge    bool // a valid hint far above the cap
	}{
		{"retry-after 99999999999", header("Retry-After", "99999999999"), header("Retry-After", "5"), true},
		{"retry-after 2^63 seconds", header("Retry-After", "9223372036854775808"), header("Retry-After", "5"), true},
		{"retry-after -1", header("Retry-After", "-1"), header("Retry-After", "5"), false},
		{"retry-after NaN", header("Retry-After", "NaN"), header("Retry-After", "5"), false},
		{"retry-after 1e309", header("Retry-After", "1e309"), header("Retry-After", "5"), false},
		{"retry-after Inf", header("Retry-After", "+Inf"), header("Retry-After", "5"), false},
		{"retry-after 0x10", header("Retry-After", "0x10"), header("Retry-After", "5"), false},
		{"retry-after date 1900", date("Retry-After", y1900, http.TimeFormat), in5s("Retry-After", http.TimeFormat), false},
		{"retry-after date 3000", date("Retry-After", y3000, http.TimeFormat), in5s("Retry-After", http.TimeFormat), true},
		{"retry-after-ms 99999999999999999999", header("retry-after-ms", "99999999999999999999"), header("retry-after-ms", "5000"), true},
		{"retry-after-ms 1e309", header("retry-after-ms", "1e309"), header("retry-after-ms", "5000"), false},
		{"retry-after-ms -5", header("retry-after-ms", "-5"), header("retry-after-ms", "5000"), false},
		{"retry-after-ms NaN", header("retry-after-ms", "NaN"), header("retry-after-ms", "5000"), false},
		{"x-ratelimit-reset-requests 99999999999h", header("x-ratelimit-reset-requests", "99999999999h", oaiReq...), header("x-ratelimit-reset-requests", "5s", oaiReq...), false},
		{"x-ratelimit-reset-requests 2562048h", header("x-ratelimit-reset-requests", "2562048h", oaiReq...), header("x-ratelimit-reset-requests", "5s", oaiReq...), false},
		{"x-ratelimit-reset-tokens -3s", header("x-ratelimit-reset-tokens", "-3s", oaiTok...), header("x-ratelimit-reset-tokens", "5s", oaiTok...), false},
		{"x-rate-limit-reset-tokens 99999999999", header("x-rate-limit-reset-tokens", "99999999999"), header("x-rate-limit-reset-tokens", "5"), true},
		{"anthropic reset in 3000", date("anthropic-ratelimit-requests-reset", y3000, time.RFC3339, anth...), in5s("anthropic-ratelimit-requests-reset", time.RFC3339, anth...), true},
		{"anthropic reset in 1900", date("anthropic-ratelimit-requests-reset", y1900, time.RFC3339, anth...), in5s("anthropic-ratelimit-requests-reset", time.RFC3339, anth...), false},
		{"body retry_after 1e309", flat("1e309"), flat("5"), false},
		{"body retry_after -1", flat("-1"), flat("5"), false},
		{"body retry_after 99999999999", flat("99999999999"), flat("5"), true},
		{"gemini retryDelay 99999999999s", gemini("99999999999s"), gemini("5s"), true},
		{"gemini retryDelay -5s", gemini("-5s"), gemini("5s"), false},
		{"gemini retryDelay NaNs", gemini("NaNs"), gemini("5s"), false},
		{"message try again in 1e309s", message("1e309s"), message("5s"), false},
		{"message try again in 99999999999s", message("99999999999s"), message("5s"), true},
	}
	// backoffBound is the longest the default backoff can wait over all
	// retries: 0.5 s + 1 s + 2 s.
	var backoffBound time.Duration
	for n := range DefaultMaxRetries {
		backoffBound += min(DefaultBackoffBase<<n, DefaultBackoffMax)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				now := time.Now()
				build := func(hint func(time.Time) ([]string, string)) (*http.Response, string) {
					kv, body := hint(now)
					kv = append(kv, "Date", now.Format(http.TimeFormat))
					return response(429, body, kv...), body
				}
				ctlResp, ctlBody := build(tt.control)
				ctl := Classify(ctlResp, []byte(ctlBody))
				resp, body := build(tt.hint)
				cl := Classify(resp, []byte(body))
				switch {
				case cl.RetryAfter < 0:
					t.Fatalf("Classify read a negative wait %v (source %q)", cl.RetryAfter, cl.RetryAfterSource)
				case cl.RetryAfter > 0 && cl.RetryAfter <= DefaultMaxRetryWait:
					t.Fatalf("Classify read a wait of %v (source %q) from a hostile hint, want none or one above the cap", cl.RetryAfter, cl.RetryAfterSource)
				case tt.huge && ctl.RetryAfter > 0 && cl.RetryAfter == 0:
					t.Fatalf("Classify reads the control hint (%v) but ignored a valid hint far above the cap", ctl.RetryAfter)
				}

				f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
					r, _ := build(tt.hint)
					return r, nil
				}}
				tr := New(f, WithoutCircuitBreaker())
				for call := range 2 { // the second call sees any cooldown the first set
					before := f.attempts()
					start := time.Now()
					resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
					if err != nil {
						t.Fatal(err)
					}
					got, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					elapsed, attempts := time.Since(start), f.attempts()-before
					if resp.StatusCode != 429 || string(got) != body {
						t.Fatalf("call %d: got %d %q, want the server's 429 intact", call, resp.StatusCode, got)
					}
					if cl.RetryAfter > DefaultMaxRetryWait {
						if attempts != 1 || elapsed != 0 {
							t.Fatalf("call %d: %d attempts over %v, want 1 at once (hint above the cap)", call, attempts, elapsed)
						}
					} else if attempts > 1+DefaultMaxRetries || elapsed > backoffBound {
						t.Fatalf("call %d: %d attempts over %v, want at most %d within the backoff bound %v", call, attempts, elapsed, 1+DefaultMaxRetries, backoffBound)
					}
				}
			})
		})
	}
}

// TestHostileClassifierHints: whatever wait a classifier reports (overflowed,
// negative, at or just above the cap), the retry loop neither hangs nor
// waits past the cap.
func TestHostileClassifierHints(t *testing.T) {
	tests := []struct {
		name           string
		hint           time.Duration
		attempts       int
		minWait        time.Duration
		maxWait        time.Duration // total, over all retries
		goesBackAtOnce bool
	}{
		{"max duration", math.MaxInt64, 1, 0, 0, true},
		{"cap + 1ns", DefaultMaxRetryWait + 1, 1, 0, 0, true},
		{"min duration", math.MinInt64, 4, 0, 3500 * time.Millisecond, false},
		{"-1ns", -1, 4, 0, 3500 * time.Millisecond, false},
		{"exactly the cap", DefaultMaxRetryWait, 4, 3 * DefaultMaxRetryWait, 3 * DefaultMaxRetryWait, false}, // jitter never goes past the cap
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
					return response(503, `{}`), nil
				}}
				classify := func(resp *http.Response, _ []byte) Classification {
					return Classification{Class: ClassOverloaded, Status: resp.StatusCode, RetryAfter: tt.hint, RetryAfterSource: "retry-after", Retryable: true, BreakerFailure: true}
				}
				tr := New(f, WithoutCircuitBreaker(), WithClassifier(classify))
				start := time.Now()
				resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				elapsed := time.Since(start)
				if f.attempts() != tt.attempts || elapsed < tt.minWait || elapsed > tt.maxWait {
					t.Fatalf("got %d attempts over %v, want %d within [%v, %v]", f.attempts(), elapsed, tt.attempts, tt.minWait, tt.maxWait)
				}
			})
		})
	}
}

// TestHostileManyHeaders: 10,000 response headers pass through intact;
// headers beyond the base transport's limit end the call with its error.
func TestHostileManyHeaders(t *testing.T) {
	checkLeaks(t)
	srv, ct, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for i := range 10000 {
			w.Header().Add(fmt.Sprintf("X-Junk-%d", i), strings.Repeat("v", i%50))
			w.Header().Add("Retry-After", strconv.Itoa(i-5000)) // and 10,000 conflicting hints
		}
		w.WriteHeader(503)
		io.WriteString(w, `{"error":{"message":"busy"}}`)
	})
	tr := New(base, fastRetries()...)
	resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(body) != `{"error":{"message":"busy"}}` {
		t.Fatalf("got %d %q, want the server's 503", resp.StatusCode, body)
	}
	if len(resp.Header) < 10000 || len(resp.Header.Values("Retry-After")) != 10000 {
		t.Fatalf("got %d header names and %d Retry-After values, want ≥ 10000 and 10000", len(resp.Header), len(resp.Header.Values("Retry-After")))
	}

	t.Run("over the base transport's limit", func(t *testing.T) {
		small := &http.Transport{MaxResponseHeaderBytes: 64 << 10}
		defer small.CloseIdleConnections()
		_, err := New(small, fastRetries()...).RoundTrip(newChatRequest(t, t.Context(), srv.URL))
		if err == nil || !strings.Contains(err.Error(), "header") {
			t.Fatalf("got error %v, want the base transport's header limit error", err)
		}
	})
	tr.CloseIdleConnections()
	ct.waitClosed(t)
}

// TestHostileHeadersNeverFinish: the server sends half a header block and
// stalls. With a header timeout (the base transport's ResponseHeaderTimeout
// or WithFirstByteTimeout) each attempt times out, is retried a bounded
// number of times, and the call ends with a timeout error.
func TestHostileHeadersNeverFinish(t *testing.T) {
	checkLeaks(t)
	stall := func(s *rawServer, c net.Conn, br *bufio.Reader) {
		if !s.readRequest(br) {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Partial: abc")
		io.Copy(io.Discard, c) // until the client hangs up
	}
	t.Run("ResponseHeaderTimeout", func(t *testing.T) {
		s := newRawServer(t, stall)
		base := &http.Transport{ResponseHeaderTimeout: 50 * time.Millisecond}
		defer base.CloseIdleConnections()
		_, err := New(base, fastRetries()...).RoundTrip(newChatRequest(t, t.Context(), s.url()))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("got error %v, want a timeout", err)
		}
		if n := s.requestCount(); n != 1+DefaultMaxRetries {
			t.Fatalf("server got %d attempts, want %d", n, 1+DefaultMaxRetries)
		}
	})
	t.Run("WithFirstByteTimeout", func(t *testing.T) {
		s := newRawServer(t, stall)
		base := &http.Transport{}
		defer base.CloseIdleConnections()
		_, err := New(base, append(fastRetries(), WithFirstByteTimeout(50*time.Millisecond))...).RoundTrip(newChatRequest(t, t.Context(), s.url()))
		if err == nil {
			t.Fatal("got no error, want the first-byte timeout")
		}
		if n := s.requestCount(); n != 1+DefaultMaxRetries {
			t.Fatalf("server got %d attempts, want %d", n, 1+DefaultMaxRetries)
		}
	})
}

// TestHostileEndlessStream: a stream that never ends. The caller reads
// some of it and then cancels (or closes the body): its read returns at
// once with the cancellation, and the server's handler is released.
func TestHostileEndlessStream(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      []Option
		stopClose bool // stop by closing the body instead of cancelling
	}{
		{"cancel", nil, false},
		{"cancel with first-byte timeout", []Option{WithFirstByteTimeout(time.Minute)}, false},
		{"close body", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			handlerDone := make(chan struct{})
			srv, ct, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
				defer close(handlerDone)
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "text/event-stream")
				for {
					if _, err := io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"tick\"}}]}\n\n"); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					if r.Context().Err() != nil {
						return
					}
				}
			})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			resp, err := New(base, tc.opts...).RoundTrip(newChatRequest(t, ctx, srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
				t.Fatalf("reading the stream: %v", err)
			}
			readErr := make(chan error, 1)
			if tc.stopClose {
				resp.Body.Close()
				_, err := resp.Body.Read(make([]byte, 10))
				readErr <- err
			} else {
				go func() {
					_, err := io.Copy(io.Discard, resp.Body)
					readErr <- err
				}()
				cancel()
			}
			select {
			case err := <-readErr:
				if err == nil {
					t.Fatal("the read ended without an error")
				}
				if !tc.stopClose && !errors.Is(err, context.Canceled) {
					t.Fatalf("got %v, want context.Canceled", err)
				}
			case <-time.After(hangGuard):
				t.Fatal("the read did not return after the stop")
			}
			resp.Body.Close()
			select {
			case <-handlerDone:
			case <-time.After(hangGuard):
				t.Fatal("the server's handler was never released")
			}
			base.CloseIdleConnections()
			ct.waitClosed(t)
		})
	}
}

// TestHostileMalformedChunked: chunked bodies that break. A 200 goes back
// after one attempt and its reader reports the break; an error status or an
// event stream that breaks before its first event is retried, and the last
// one goes back with its valid bytes followed by the error.
func TestHostileMalformedChunked(t *testing.T) {
	tests := []struct {
		name     string
		head     string // status line and headers, without the blank line
		chunks   string
		attempts int    // 0: 1 or 4, see below
		want     string // bytes the caller reads before the error
	}{
		{"200 json bad size", "HTTP/1.1 200 OK\r\nContent-Type: application/json", "5\r\n{\"a\":\r\nzz\r\n", 1, `{"a":`},
		{"200 json size overflow", "HTTP/1.1 200 OK\r\nContent-Type: application/json", "5\r\n{\"a\":\r\nffffffffffffffffffff\r\n", 1, `{"a":`},
		{"200 json short chunk", "HTTP/1.1 200 OK\r\nContent-Type: application/json", "1000\r\n{\"a\":", 1, `{"a":`},
		{"500 bad size", "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json", "9\r\n{\"error\":\r\n;;;\r\n", 4, `{"error":`},
		{"500 missing CRLF", "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html", "3\r\nabcXYZ\r\n0\r\n\r\n", 4, "abc"},
		{"sse broken before first event", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream", "8\r\ndata: {\"\r\nq\r\n", 4, `data: {"`},
		// When the first event and the break arrive in the same read, the
		// peek sees the break before the event reached the caller, so the
		// call is retried; when they arrive apart, it is not.
		{"sse broken after first event", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream", "a\r\ndata: {}\n\n\r\nq\r\n", 0, "data: {}\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(br) {
					io.WriteString(c, tt.head+"\r\nTransfer-Encoding: chunked\r\n\r\n"+tt.chunks)
				}
			})
			base := &http.Transport{}
			defer base.CloseIdleConnections()
			resp, err := New(base, fastRetries()...).RoundTrip(newChatRequest(t, t.Context(), s.url()))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil || string(got) != tt.want {
				t.Fatalf("read %q (error %v), want %q and an error", got, err, tt.want)
			}
			if n := s.requestCount(); n != tt.attempts && (tt.attempts != 0 || n != 1 && n != 4) {
				t.Fatalf("server got %d attempts, want %d", n, tt.attempts)
			}
		})
	}
}

// TestHostileConnectionReset: the server resets (or closes) the connection
// before the headers, in them, or after them in the middle of the body.
func TestHostileConnectionReset(t *testing.T) {
	const (
		callErr = "call error" // the call ends with a reset or EOF error
		someErr = "some error" // the call ends with the base transport's error
		readErr = "read error" // the body's read ends with an error, after any prefix of the bytes sent
	)
	tests := []struct {
		name     string
		reply    string // what is written before the reset
		fin      bool   // close politely instead of resetting
		attempts int
		want     string // body bytes read before the error, or one of the outcomes above
	}{
		{"reset before headers", "", false, 4, callErr},
		{"close before headers", "", true, 4, callErr},
		// net/http reports a header block cut short as a malformed header,
		// which the transport does not retry: it cannot tell it from a
		// server that sends garbage, and it matches no error strings.
		{"close in the headers", "HTTP/1.1 200 OK\r\nContent-Ty", true, 1, someErr},
		{"reset in the headers", "HTTP/1.1 200 OK\r\nContent-Ty", false, 1, someErr},
		{"200 truncated body", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":", true, 1, `{"id":`},
		{"200 reset in body", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":", false, 1, readErr},
		{"500 truncated body", "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"error\":", true, 4, `{"error":`},
		{"sse truncated before first event", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 100\r\n\r\ndata: {\"cho", true, 4, `data: {"cho`},
		{"sse truncated after first event", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 100\r\n\r\ndata: {}\n\ndata: {\"cho", true, 1, "data: {}\n\ndata: {\"cho"},
		{"sse reset after first event", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: {}\n\ndata: {\"cho", false, 1, readErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if !s.readRequest(br) {
					return
				}
				io.WriteString(c, tt.reply)
				if tt.fin {
					c.(*net.TCPConn).CloseWrite()
					io.Copy(io.Discard, c)
					return
				}
				reset(c)
			})
			base := &http.Transport{}
			defer base.CloseIdleConnections()
			resp, err := New(base, fastRetries()...).RoundTrip(newChatRequest(t, t.Context(), s.url()))
			if n := s.requestCount(); n != tt.attempts {
				t.Errorf("server got %d attempts, want %d", n, tt.attempts)
			}
			switch tt.want {
			case callErr, someErr:
				if err == nil {
					resp.Body.Close()
					t.Fatal("got a response, want an error")
				}
				if tt.want == callErr && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("got %v, want a connection reset or EOF", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				got, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if rerr == nil {
					t.Fatalf("read %q to EOF, want an error", got)
				}
				if tt.want == readErr {
					if _, body, _ := strings.Cut(tt.reply, "\r\n\r\n"); !strings.HasPrefix(body, string(got)) {
						t.Fatalf("read %q, want a prefix of %q", got, body)
					}
				} else if string(got) != tt.want {
					t.Fatalf("read %q (error %v), want %q and an error", got, rerr, tt.want)
				}
			}
		})
	}
}

// TestHostileRequestBodies: request bodies that cannot be read or
// replayed. The call ends with an error that wraps the body's (or, when an
// earlier attempt got a response, with that response), and the caller's
// body is closed.
func TestHostileRequestBodies(t *testing.T) {
	gone := errors.New("gone")
	t.Run("GetBody fails after a transport error", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
				return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
			}}
			req := newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions")
			req.GetBody = func() (io.ReadCloser, error) { return nil, gone }
			_, err := New(f, WithoutCircuitBreaker()).RoundTrip(req)
			if !errors.Is(err, gone) || f.attempts() != 1 {
				t.Fatalf("got %v after %d attempts, want the GetBody error after 1", err, f.attempts())
			}
		})
	})
	t.Run("GetBody returns nil", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
				return nil, io.EOF
			}}
			req := newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions")
			req.GetBody = func() (io.ReadCloser, error) { return nil, nil }
			_, err := New(f, WithoutCircuitBreaker()).RoundTrip(req)
			if err == nil || f.attempts() != 1 {
				t.Fatalf("got %v after %d attempts, want an error after 1", err, f.attempts())
			}
		})
	})
	t.Run("GetBody fails after a 503", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
				return response(503, `{"error":{"message":"busy"}}`), nil
			}}
			req := newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions")
			req.GetBody = func() (io.ReadCloser, error) { return nil, gone }
			resp, err := New(f, WithoutCircuitBreaker()).RoundTrip(req)
			if err != nil {
				t.Fatalf("got %v, want the 503", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 || string(b) != `{"error":{"message":"busy"}}` {
				t.Fatalf("got %d %q, want the 503 intact", resp.StatusCode, b)
			}
		})
	})
	t.Run("body read fails while buffering", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) { return response(200, `{}`), nil }}
			body := &trackBody{Reader: io.MultiReader(strings.NewReader(`{"model":`), iotestErrReader(gone))}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://gw.test/v1/chat/completions", body)
			_, err := New(f, WithoutCircuitBreaker()).RoundTrip(req)
			if !errors.Is(err, gone) || f.attempts() != 0 || !body.isClosed() {
				t.Fatalf("got %v after %d attempts, closed %v; want the read error, no attempt, body closed", err, f.attempts(), body.isClosed())
			}
		})
	})
	t.Run("GetBody body fails over loopback", func(t *testing.T) {
		checkLeaks(t)
		srv, _, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(503)
		})
		req := newChatRequest(t, t.Context(), srv.URL)
		req.GetBody = func() (io.ReadCloser, error) {
			return io.NopCloser(io.MultiReader(strings.NewReader(`{"mo`), iotestErrReader(gone))), nil
		}
		// Attempt 0 got a 503: that goes back, not the retry's body error.
		resp, err := New(base, fastRetries()...).RoundTrip(req)
		if err != nil {
			t.Fatalf("got %v, want the 503 of attempt 0", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("X-Should-Retry") != "false" {
			t.Fatalf("got %d, X-Should-Retry %q; want the 503, false", resp.StatusCode, resp.Header.Get("X-Should-Retry"))
		}
	})
}

// iotestErrReader returns a reader that fails with err.
func iotestErrReader(err error) io.Reader { return errReader{err} }

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// panicRT is a base transport that panics with value.
type panicRT struct{ value func() any }

func (p panicRT) RoundTrip(*http.Request) (*http.Response, error) { panic(p.value()) }

// nilRT is a base transport that returns neither a response nor an error.
type nilRT struct{}

func (nilRT) RoundTrip(*http.Request) (*http.Response, error) { return nil, nil }

// TestHostileBaseTransport: a base transport that panics or returns (nil,
// nil) does not crash the caller: the call ends with *PanicError or
// ErrNilResponse, through RoundTrip, Middleware and an http.Client, and
// the request body is closed.
func TestHostileBaseTransport(t *testing.T) {
	tests := []struct {
		name  string
		base  http.RoundTripper
		check func(error) bool
	}{
		{"panic string", panicRT{func() any { return "boom" }}, isPanicError},
		{"panic error", panicRT{func() any { return errors.New("boom") }}, isPanicError},
		{"panic nil", panicRT{func() any { return nil }}, isPanicError},
		{"panic runtime error", panicRT{func() any { var xs []int; return xs[len(xs)] }}, isPanicError},
		{"nil, nil", nilRT{}, func(err error) bool { return errors.Is(err, ErrNilResponse) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New(tt.base, WithBackoff(time.Millisecond, time.Millisecond))
			for _, via := range []string{"RoundTrip", "Middleware", "Client"} {
				body := &trackBody{Reader: strings.NewReader(chatBody)}
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://gw.test/v1/chat/completions", body)
				req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(chatBody)), nil }
				var err error
				switch via {
				case "RoundTrip":
					_, err = tr.RoundTrip(req)
				case "Middleware":
					_, err = tr.Middleware(req, tt.base.RoundTrip)
				case "Client":
					_, err = (&http.Client{Transport: tr}).Do(req)
				}
				if !tt.check(err) {
					t.Fatalf("%s: got error %v (%T), want the typed error", via, err, err)
				}
				if !body.isClosed() {
					t.Fatalf("%s: the request body was not closed", via)
				}
			}
		})
	}
}

func isPanicError(err error) bool {
	var pe *PanicError
	return errors.As(err, &pe)
}

// gzipBombServer starts a server that answers every request 500 with a
// gzip body of 1,024 concatenated members, 1 GiB of zeros decoded, sent
// as Content-Encoding: gzip. member is one of the members.
func gzipBombServer(t *testing.T) (srv *httptest.Server, ct *connTracker, base *http.Transport, member []byte) {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	member = buf.Bytes()
	const members = 1024
	srv, ct, base = trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(members*len(member)))
		w.WriteHeader(500)
		for range members {
			if _, err := w.Write(member); err != nil {
				return
			}
		}
	})
	return srv, ct, base, member
}
