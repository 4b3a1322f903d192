package llmtransport

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

const chatBody = `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`

func newChatRequest(t *testing.T, ctx context.Context, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

func TestRetry503Twice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			if i < 2 {
				return response(503, `{"error":{"message":"busy","type":"server_error"}}`), nil
			}
			return response(200, `{"ok":true}`), nil
		}}
		tr := New(f, WithoutCircuitBreaker())
		resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || f.attempts() != 3 {
			t.Fatalf("got status %d after %d attempts, want 200 after 3", resp.StatusCode, f.attempts())
		}
		for i, b := range f.bodies {
			if b != chatBody {
				t.Errorf("attempt %d sent body %q, want %q", i, b, chatBody)
			}
		}
	})
}

func TestRetryBackoffIsBoundedAndJittered(t *testing.T) {
	base, max := 500*time.Millisecond, 8*time.Second
	for n := range 8 {
		limit := min(base<<n, max)
		for range 200 {
			if d := backoff(n, 0, base, max, DefaultMaxRetryWait); d < 0 || d > limit {
				t.Fatalf("backoff(%d) = %v, want within [0, %v]", n, d, limit)
			}
		}
	}
	// A hint is a minimum, lengthened by at most 20 %.
	for range 200 {
		if d := backoff(0, time.Second, base, max, DefaultMaxRetryWait); d < time.Second || d > 1200*time.Millisecond {
			t.Fatalf("backoff with 1s hint = %v, want within [1s, 1.2s]", d)
		}
	}
	// Full jitter spreads retries: 100 draws are not all equal.
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[backoff(3, 0, base, max, DefaultMaxRetryWait)] = true
	}
	if len(seen) < 50 {
		t.Fatalf("got %d distinct waits in 100 draws, want jitter", len(seen))
	}
}

// TestRetryWaitNeverPastTheCap: the jitter added to a hint, and the
// backoff without one, never take a wait past WithMaxRetryWait; the backoff
// never past WithBackoff's max either. A hint at the cap is waited exactly.
func TestRetryWaitNeverPastTheCap(t *testing.T) {
	const limit = 200 * time.Millisecond
	for range 1000 {
		for _, hint := range []time.Duration{limit, limit - 1, 190 * time.Millisecond, 170 * time.Millisecond, 1} {
			if d := backoff(0, hint, time.Second, time.Second, limit); d < hint || d > min(hint*6/5, limit) {
				t.Fatalf("backoff with hint %v under cap %v = %v, want within [%v, %v]", hint, limit, d, hint, min(hint*6/5, limit))
			}
		}
		for n := range 40 {
			if d := backoff(n, 0, 50*time.Millisecond, time.Second, limit); d < 0 || d > limit {
				t.Fatalf("backoff(%d) without hint under cap %v = %v", n, limit, d)
			}
			if d := backoff(n, 0, time.Millisecond, 30*time.Millisecond, limit); d < 0 || d > 30*time.Millisecond {
				t.Fatalf("backoff(%d) with max 30ms = %v", n, d)
			}
			if d := backoff(n, 0, 1, math.MaxInt64, math.MaxInt64); d < 0 {
				t.Fatalf("backoff(%d) with the largest max = %v", n, d)
			}
		}
	}
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			return response(429, `{"error":{"message":"slow down","code":"rate_limit_exceeded"}}`, "retry-after-ms", "200"), nil
		}}
		tr := New(f, WithoutCircuitBreaker(), WithRetryBudget(0, 0), WithMaxRetryWait(limit))
		for range 20 {
			before := f.attempts()
			resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for i := before + 1; i < f.attempts(); i++ {
				if g := f.gap(i); g != limit {
					t.Fatalf("retry came after %v, want exactly the %v hint (= the cap)", g, limit)
				}
			}
		}
	})
}

func TestRetryQuotaExhaustedIsNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			return response(429, `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`), nil
		}}
		tr := New(f, WithoutCircuitBreaker())
		resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if f.attempts() != 1 {
			t.Fatalf("got %d attempts, want 1", f.attempts())
		}
	})
}

func TestRetryHonoursWaitHints(t *testing.T) {
	date := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		headers []string
		body    string
		min     time.Duration
	}{
		{"retry-after seconds", []string{"Retry-After", "1"}, `{}`, time.Second},
		{"retry-after-ms beats retry-after", []string{"Retry-After", "1", "retry-after-ms", "2500"}, `{}`, 2500 * time.Millisecond},
		{"retry-after http-date", []string{"Date", date.Format(http.TimeFormat), "Retry-After", date.Add(3 * time.Second).Format(http.TimeFormat)}, `{}`, 3 * time.Second},
		{"gemini retryDelay", nil, `{"error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"4s"}]}}`, 4 * time.Second},
		{"message text", nil, `{"error":{"message":"Rate limit reached for gpt-4o. Please try again in 1.5s.","type":"requests","code":"rate_limit_exceeded"}}`, 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
					if i == 0 {
						return response(429, tt.body, tt.headers...), nil
					}
					return response(200, `{}`), nil
				}}
				tr := New(f, WithoutCircuitBreaker())
				resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if f.attempts() != 2 {
					t.Fatalf("got %d attempts, want 2", f.attempts())
				}
				if g := f.gap(1); g < tt.min || g > tt.min*6/5+time.Millisecond {
					t.Fatalf("retry came after %v, want within [%v, %v]", g, tt.min, tt.min*6/5)
				}
			})
		})
	}
}

func TestRetryHintAboveCapGoesBackAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			return response(429, `{"error":{"message":"slow down","code":"rate_limit_exceeded"}}`, "Retry-After", "300", "X-Request-Id", "req_cap"), nil
		}}
		tr := New(f, WithoutCircuitBreaker())
		start := time.Now()
		resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if f.attempts() != 1 || time.Since(start) != 0 {
			t.Fatalf("got %d attempts after %v, want 1 at once", f.attempts(), time.Since(start))
		}
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "300" || resp.Header.Get("X-Request-Id") != "req_cap" {
			t.Fatalf("got %d with headers %v, want the server's 429", resp.StatusCode, resp.Header)
		}
	})
}

func TestRetryNeverWaitsPastDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			return response(503, `{"error":{"message":"overloaded"}}`, "Retry-After", "5"), nil
		}}
		tr := New(f, WithoutCircuitBreaker())
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		start := time.Now()
		resp, err := tr.RoundTrip(newChatRequest(t, ctx, "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatalf("got error %v, want the last response", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 503 || f.attempts() != 1 || time.Since(start) != 0 {
			t.Fatalf("got %d after %d attempts and %v, want 503 after 1 attempt at once", resp.StatusCode, f.attempts(), time.Since(start))
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != `{"error":{"message":"overloaded"}}` {
			t.Fatalf("got body %q, want the server's", body)
		}
	})
}

func TestRetryCancelDuringWaitReturnsPromptly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			return response(503, `{}`, "Retry-After", "60"), nil
		}}
		tr := New(f, WithoutCircuitBreaker())
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		start := time.Now()
		_, err := tr.RoundTrip(newChatRequest(t, ctx, "http://gw.test/v1/chat/completions"))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got error %v, want context.Canceled", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("returned after %v, want 1s (at the cancellation)", d)
		}
	})
}

func TestRetryLastResponseIntact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		body := `{"error":{"message":"upstream failed","type":"server_error","code":"bad_response"}}`
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			return response(502, body, "X-Request-Id", fmt.Sprintf("req_%d", i)), nil
		}}
		tr := New(f, WithoutCircuitBreaker(), WithMaxRetries(2))
		resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil || string(got) != body {
			t.Fatalf("got body %q (%v), want %q", got, err, body)
		}
		if f.attempts() != 3 || resp.Header.Get("X-Request-Id") != "req_2" {
			t.Fatalf("got %d attempts, request ID %q; want 3 and req_2 (the last)", f.attempts(), resp.Header.Get("X-Request-Id"))
		}
		if resp.Header.Get("X-Should-Retry") != "false" {
			t.Fatalf("got X-Should-Retry %q, want false", resp.Header.Get("X-Should-Retry"))
		}
	})
}

func TestRetryShouldRetryHeaderOverrides(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header string
		want   int
	}{
		{"false vetoes a 503", 503, "false", 1},
		{"true retries a 400", 400, "true", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
					return response(tt.status, `{}`, "X-Should-Retry", tt.header), nil
				}}
				tr := New(f, WithoutCircuitBreaker())
				resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if f.attempts() != tt.want {
					t.Fatalf("got %d attempts, want %d", f.attempts(), tt.want)
				}
			})
		})
	}
}

func TestRetryTransportErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, 4},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, 4},
		{"EOF before response", io.EOF, 4},
		{"unknown error", errors.New("weird"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) { return nil, tt.err }}
				tr := New(f, WithoutCircuitBreaker())
				_, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
				if !errors.Is(err, tt.err) {
					t.Fatalf("got error %v, want %v", err, tt.err)
				}
				if f.attempts() != tt.want {
					t.Fatalf("got %d attempts, want %d", f.attempts(), tt.want)
				}
			})
		})
	}
}

func TestRetryCallerCancellationIsNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			cancel()
			return nil, context.Canceled
		}}
		tr := New(f, WithoutCircuitBreaker())
		_, err := tr.RoundTrip(newChatRequest(t, ctx, "http://gw.test/v1/chat/completions"))
		if !errors.Is(err, context.Canceled) || f.attempts() != 1 {
			t.Fatalf("got %v after %d attempts, want context.Canceled after 1", err, f.attempts())
		}
	})
}

func TestRetryMaxRetriesZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) { return response(503, `{}`), nil }}
		tr := New(f, WithoutCircuitBreaker(), WithMaxRetries(0))
		resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if f.attempts() != 1 || resp.Header.Get("X-Should-Retry") != "" {
			t.Fatalf("got %d attempts, X-Should-Retry %q; want 1 and none", f.attempts(), resp.Header.Get("X-Should-Retry"))
		}
	})
}

func TestRetryBodyWithoutGetBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			if i == 0 {
				return response(503, `{}`), nil
			}
			return response(200, `{}`), nil
		}}
		body := &trackBody{Reader: strings.NewReader(chatBody)}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://gw.test/v1/chat/completions", body)
		if req.GetBody != nil {
			t.Fatal("test needs a body without GetBody")
		}
		resp, err := New(f, WithoutCircuitBreaker()).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if f.attempts() != 2 || f.bodies[0] != chatBody || f.bodies[1] != chatBody {
			t.Fatalf("got %d attempts with bodies %q, want 2 with the same body", f.attempts(), f.bodies)
		}
		if !body.isClosed() {
			t.Fatal("the caller's body was not closed")
		}
	})
}

func TestRetryBodyTooLargeToBufferIsSentOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) { return response(503, `{}`), nil }}
		big := strings.Repeat("x", 100)
		body := &trackBody{Reader: strings.NewReader(big)}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://gw.test/v1/chat/completions", body)
		resp, err := New(f, WithoutCircuitBreaker(), WithMaxBufferedBody(10)).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if f.attempts() != 1 || f.bodies[0] != big {
			t.Fatalf("got %d attempts, first body %d bytes; want 1 attempt with all %d bytes", f.attempts(), len(f.bodies[0]), len(big))
		}
		if !body.isClosed() {
			t.Fatal("the caller's body was not closed")
		}
	})
}

func TestRetryGetBodyFailureHandsBackLastResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) { return response(503, `{"e":1}`), nil }}
		req := newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions")
		req.GetBody = func() (io.ReadCloser, error) { return nil, errors.New("gone") }
		resp, err := New(f, WithoutCircuitBreaker()).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if f.attempts() != 1 || resp.StatusCode != 503 || string(b) != `{"e":1}` {
			t.Fatalf("got %d attempts, %d %q; want 1 attempt and the 503 intact", f.attempts(), resp.StatusCode, b)
		}
	})
}

func TestRetryDoesNotMutateRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			if i == 0 {
				return response(503, `{}`), nil
			}
			return response(200, `{}`), nil
		}}
		req := newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions?x=1")
		req.Header.Set("Authorization", "Bearer sk-test")
		before := req.Header.Clone()
		url := req.URL.String()
		ctx := req.Context()
		resp, err := New(f, WithoutCircuitBreaker()).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if req.URL.String() != url || req.Context() != ctx || len(req.Header) != len(before) || req.Header.Get("Authorization") != "Bearer sk-test" {
			t.Fatalf("the caller's request changed: %v %v", req.URL, req.Header)
		}
	})
}

func TestRetryBudgetUnderBurst(t *testing.T) {
	// A dead upstream under a burst of 200 concurrent calls: the budget keeps
	// the attempts near 1.2× the calls, not 4×.
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(503)
	}))
	defer srv.Close()
	tr := New(srv.Client().Transport, WithoutCircuitBreaker(), WithBackoff(time.Millisecond, 2*time.Millisecond))
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), srv.URL))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	if n := hits.Load(); n > 240 {
		t.Fatalf("got %d upstream attempts for 200 calls, want at most 240", n)
	}
}

func TestRetryLoneRequestGetsAllRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) { return response(503, `{}`), nil }}
		tr := New(f, WithoutCircuitBreaker())
		for range 3 {
			before := f.attempts()
			resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := f.attempts() - before; got != 4 {
				t.Fatalf("got %d attempts, want 4", got)
			}
			time.Sleep(time.Minute) // fake time: calls spaced out
		}
	})
}

func TestRetryCooldownShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The server throttles the model for 2 s after its first request:
		// every request before then gets a 429 asking to wait out the rest.
		start := time.Now()
		until := start.Add(2 * time.Second)
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			if left := time.Until(until); left > 0 {
				return response(429, `{"error":{"message":"rate limited","code":"rate_limit_exceeded"}}`, "Retry-After-Ms", strconv.FormatInt(left.Milliseconds(), 10)), nil
			}
			return response(200, `{}`), nil
		}}
		tr := New(f, WithoutCircuitBreaker())
		call := func() {
			resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("got %d, want 200", resp.StatusCode)
			}
		}
		var wg sync.WaitGroup
		wg.Go(call)
		synctest.Wait() // the first call got its 429 and waits
		// Requests for the same model started during the cooldown wait it
		// out instead of collecting their own 429.
		for range 5 {
			wg.Go(call)
		}
		wg.Wait()
		if f.attempts() != 7 {
			t.Fatalf("got %d attempts, want 7 (one 429, its retry, and 5 calls that waited)", f.attempts())
		}
	})
}

func TestRetryCooldownIsPerModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(_ int, req *http.Request) (*http.Response, error) {
			if req.URL.Path == "/a" {
				return response(429, `{}`, "Retry-After", "10"), nil
			}
			return response(200, `{}`), nil
		}}
		tr := New(f, WithoutCircuitBreaker(), WithMaxRetries(0))
		send := func(path, model string) time.Duration {
			start := time.Now()
			req, _ := http.NewRequestWithContext(ContextWithModel(t.Context(), model), http.MethodPost, "http://gw.test"+path, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return time.Since(start)
		}
		send("/a", "m1")
		if d := send("/b", "m2"); d != 0 {
			t.Fatalf("a call for another model waited %v, want 0", d)
		}
		if d := send("/b", "m1"); d < 10*time.Second {
			t.Fatalf("a call for the throttled model waited %v, want the 10 s cooldown", d)
		}
	})
}

func TestRetryErrorFirstStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			if i == 0 {
				return response(200, "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n", "Content-Type", "text/event-stream"), nil
			}
			return response(200, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n", "Content-Type", "text/event-stream"), nil
		}}
		tr := New(f, WithoutCircuitBreaker())
		resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
		if f.attempts() != 2 || string(b) != want {
			t.Fatalf("got %d attempts and %q, want 2 and %q", f.attempts(), b, want)
		}
	})
}

func TestRetryStreamAfterFirstByteIsNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr, pw := io.Pipe()
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			r := response(200, "", "Content-Type", "text/event-stream")
			r.Body = pr
			r.ContentLength = -1
			return r, nil
		}}
		go func() {
			pw.Write([]byte(": PING\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"))
			pw.CloseWithError(io.ErrUnexpectedEOF)
		}()
		tr := New(f, WithoutCircuitBreaker())
		resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) || f.attempts() != 1 {
			t.Fatalf("got %v after %d attempts, want the mid-stream error after 1", err, f.attempts())
		}
		if want := ": PING\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"; string(b) != want {
			t.Fatalf("got %q, want the peeked bytes re-delivered exactly: %q", b, want)
		}
	})
}

func TestRetryFirstByteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, req *http.Request) (*http.Response, error) {
			if i == 0 {
				<-req.Context().Done()
				return nil, req.Context().Err()
			}
			return response(200, `{}`), nil
		}}
		tr := New(f, WithoutCircuitBreaker(), WithFirstByteTimeout(2*time.Second))
		resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if f.attempts() != 2 {
			t.Fatalf("got %d attempts, want 2", f.attempts())
		}
	})
}

// TestRetryOverLoopback checks, against a real server, that every attempt
// carries the same body bytes and that discarded responses give their
// connections back: the server sees one connection for sequential calls.
func TestRetryOverLoopback(t *testing.T) {
	var (
		mu     sync.Mutex
		hashes = map[[32]byte]int{}
		conns  atomic.Int64
		hits   atomic.Int64
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hashes[sha256.Sum256(b)]++
		mu.Unlock()
		if hits.Add(1)%3 != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(503)
			io.WriteString(w, `{"error":{"message":"`+strings.Repeat("busy ", 2000)+`"}}`)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	tr := New(srv.Client().Transport, WithoutCircuitBreaker(), WithRetryBudget(0, 0), WithBackoff(time.Microsecond, time.Microsecond))
	body := strings.Repeat(`{"model":"m","pad":"`+strings.Repeat("z", 1000)+`"}`, 1)
	for range 10 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, strings.NewReader(body))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("got %d, want 200", resp.StatusCode)
		}
	}
	if len(hashes) != 1 || hits.Load() != 30 {
		t.Fatalf("got %d distinct bodies over %d attempts, want 1 over 30", len(hashes), hits.Load())
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1 (discarded responses must free theirs)", n)
	}
}

func TestRetryCustomClassifier(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			if i == 0 {
				return response(418, `{"teapot":true}`), nil
			}
			return response(200, `{}`), nil
		}}
		classify := func(resp *http.Response, body []byte) Classification {
			if resp.StatusCode == 418 {
				return Classification{Class: ClassOverloaded, Retryable: true, BreakerFailure: true, Status: 418}
			}
			return Classify(resp, body)
		}
		resp, err := New(f, WithClassifier(classify)).RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if f.attempts() != 2 || resp.StatusCode != 200 {
			t.Fatalf("got %d after %d attempts, want 200 after 2", resp.StatusCode, f.attempts())
		}
	})
}

type panicBody struct{}

func (panicBody) Read([]byte) (int, error) { panic("boom") }
func (panicBody) Close() error             { return nil }

func TestRetryPanickingErrorBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			r := response(500, "")
			r.Body = panicBody{}
			return r, nil
		}}
		resp, err := New(f, WithMaxRetries(1)).RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || !strings.Contains(err.Error(), "panicked") {
			t.Fatalf("got read error %v, want the panic as an error", err)
		}
	})
}

// TestRetryNeverRepeatsTLSOrURLErrors checks that errors repeating cannot
// fix are not retried: a certificate the client does not trust, a URL with
// a scheme the base transport does not speak.
func TestRetryNeverRepeatsTLSOrURLErrors(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	var attempts atomic.Int64
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		attempts.Add(1)
		return http.DefaultTransport.RoundTrip(r) // does not trust the test certificate
	})
	tr := New(base, WithoutCircuitBreaker(), WithBackoff(time.Millisecond, time.Millisecond))
	for _, url := range []string{srv.URL, "ftp://gw.test/v1/chat/completions"} {
		attempts.Store(0)
		_, err := tr.RoundTrip(newChatRequest(t, t.Context(), url))
		if err == nil {
			t.Fatalf("%s: got no error", url)
		}
		if n := attempts.Load(); n != 1 {
			t.Errorf("%s: got %d attempts for %v, want 1", url, n, err)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("the untrusted server answered %d requests", hits.Load())
	}
}
