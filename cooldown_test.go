package llmtransport

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"testing/synctest"
	"time"
)

// TestCooldownBelongsToTheKey: a rate limit with a hint on API key A holds
// back A's next requests for the same model, not key B's, nor A's for
// another model.
func TestCooldownBelongsToTheKey(t *testing.T) {
	for _, loc := range []string{"Authorization", "Api-Key", "X-Api-Key", "X-Goog-Api-Key", "?key="} {
		t.Run(loc, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				limited := true
				f := &fakeRT{respond: func(_ int, r *http.Request) (*http.Response, error) {
					if limited && credential(r, loc) == "key-A" {
						limited = false
						return response(429, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`, "Retry-After", "3"), nil
					}
					return response(200, `{"choices":[]}`), nil
				}}
				tr := New(f, WithMaxRetries(0))
				call := func(key, model string) time.Duration {
					start := time.Now()
					req := modelRequest(t, t.Context(), gw, model)
					setCredential(req, loc, key)
					resp, err := tr.RoundTrip(req)
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					return time.Since(start)
				}
				call("key-A", "gpt-4o") // the 429, 3 s
				if d := call("key-B", "gpt-4o"); d != 0 {
					t.Errorf("key B waited %v for key A's rate limit", d)
				}
				if d := call("key-A", "gpt-4o-mini"); d != 0 {
					t.Errorf("key A waited %v for another model", d)
				}
				if d := call("key-A", "gpt-4o"); d != 3*time.Second {
					t.Errorf("key A waited %v for its own rate limit, want 3s", d)
				}
			})
		})
	}
}

func credential(r *http.Request, loc string) string {
	if loc == "?key=" {
		return r.URL.Query().Get("key")
	}
	v := r.Header.Get(loc)
	if loc == "Authorization" && len(v) > 7 {
		v = v[7:]
	}
	return v
}

func setCredential(r *http.Request, loc, key string) {
	switch loc {
	case "?key=":
		q := r.URL.Query()
		q.Set("key", key)
		r.URL.RawQuery = q.Encode()
	case "Authorization":
		r.Header.Set(loc, "Bearer "+key)
	default:
		r.Header.Set(loc, key)
	}
}

// TestCooldownKeyedByTheAPIKeyAlone: headers that are masked as secrets but
// do not name the caller (an idempotency key, a session cookie, both new
// on every request) do not split a key's cooldown: the same API key waits
// out its own rate limit whatever they say.
func TestCooldownKeyedByTheAPIKeyAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, r *http.Request) (*http.Response, error) {
			if i == 0 {
				return response(429, `{"error":{"message":"Rate limit reached","code":"rate_limit_exceeded"}}`, "Retry-After", "3"), nil
			}
			return response(200, `{"choices":[]}`), nil
		}}
		tr := New(f, WithMaxRetries(0))
		for i := range 2 {
			req := modelRequest(t, t.Context(), gw, "gpt-4o")
			req.Header.Set("Authorization", "Bearer key-A")
			req.Header.Set("Idempotency-Key", fmt.Sprint("idem-0123456789-", i))
			req.Header.Set("Cookie", fmt.Sprint("session=s3cret-session-", i))
			start := time.Now()
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if d, want := time.Since(start), time.Duration(i)*3*time.Second; d != want {
				t.Errorf("call %d waited %v, want %v", i, d, want)
			}
		}
	})
}

// TestWithoutCooldowns: with cooldowns off, a rate limit on one request
// never holds back the next.
func TestWithoutCooldowns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, r *http.Request) (*http.Response, error) {
			if i == 0 {
				return response(429, `{"error":{"message":"Rate limit reached","code":"rate_limit_exceeded"}}`, "Retry-After", "3"), nil
			}
			return response(200, `{"choices":[]}`), nil
		}}
		tr := New(f, WithMaxRetries(0), WithoutCooldowns())
		for i := range 2 {
			start := time.Now()
			resp, err := tr.RoundTrip(modelRequest(t, t.Context(), gw, "gpt-4o"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if d := time.Since(start); d != 0 {
				t.Errorf("call %d waited %v", i, d)
			}
		}
	})
}

// TestCooldownsBounded: a table full of live cooldowns records no more,
// and the rate limits it could not record cost no sweep each.
func TestCooldownsBounded(t *testing.T) {
	c := newCooldowns(false)
	c.max = 100
	req, _ := http.NewRequest(http.MethodPost, gw, nil)
	for i := range 1000 {
		c.set(circuitKey{"h", fmt.Sprint("m", i)}, req, time.Minute)
	}
	if n := c.n.Load(); n != 100 {
		t.Errorf("%d cooldowns kept, want the cap, 100", n)
	}
	if c.remaining(circuitKey{"h", "m0"}, req) == 0 || c.remaining(circuitKey{"h", "m999"}, req) != 0 {
		t.Error("want the first cooldowns kept and the last not recorded")
	}
}

// BenchmarkCooldownSet: the cost of a 429 is flat in the number of models
// already throttled.
func BenchmarkCooldownSet(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		b.Run(fmt.Sprint("throttled=", n), func(b *testing.B) {
			c := newCooldowns(false)
			c.max = 1 << 30
			req, _ := http.NewRequest(http.MethodPost, gw, nil)
			req.Header.Set("Authorization", "Bearer sk-test")
			keys := make([]circuitKey, n)
			for i := range keys {
				keys[i] = circuitKey{"h", fmt.Sprint("model-", i)}
				c.set(keys[i], req, time.Minute)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				c.set(keys[i%n], req, time.Minute+time.Duration(i))
			}
		})
	}
}

// BenchmarkCooldownRemaining: the cost of the cooldown check on every
// request, with no cooldown anywhere and with many.
func BenchmarkCooldownRemaining(b *testing.B) {
	for _, n := range []int{0, 100000} {
		b.Run(fmt.Sprint("throttled=", n), func(b *testing.B) {
			c := newCooldowns(false)
			c.max = 1 << 30
			req, _ := http.NewRequest(http.MethodPost, gw, nil)
			req.Header.Set("Authorization", "Bearer sk-test")
			for i := range n {
				c.set(circuitKey{"h", fmt.Sprint("model-", i)}, req, time.Minute)
			}
			key := circuitKey{"h", "other"}
			b.ReportAllocs()
			for b.Loop() {
				c.remaining(key, req)
			}
		})
	}
}

func TestCooldownsDropExpiredAndIgnoreHintsAboveCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCooldowns(false)
		req := newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions")
		a, b := circuitKey{"h", "a"}, circuitKey{"h", "b"}
		c.set(a, req, time.Second)
		if d := c.remaining(a, req); d != time.Second {
			t.Fatalf("remaining(a) = %v, want 1s", d)
		}
		c.set(a, req, time.Millisecond)
		if d := c.remaining(a, req); d != time.Second {
			t.Fatalf("after a shorter hint, remaining(a) = %v, want 1s", d)
		}
		time.Sleep(2 * time.Second)
		if d := c.remaining(a, req); d != 0 {
			t.Fatalf("remaining(a) = %v after it passed", d)
		}
		c.set(b, req, time.Second)
		c.sweep(c.now())
		if n := c.n.Load(); n != 1 {
			t.Fatalf("got %d cooldowns after a sweep, want only b's", n)
		}

		// A hint the transport will not wait for is not recorded.
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			return response(429, `{}`, "Retry-After", "300"), nil
		}}
		tr := New(f, WithoutCircuitBreaker())
		req = newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if tr.cooldowns.n.Load() != 0 {
			t.Fatal("a 300 s hint above the 120 s cap was recorded as a cooldown")
		}
	})
}
