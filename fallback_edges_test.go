package llmtransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// Fallback chains and outcomes at their edges, from an audit of the
// README's promises: a slow first event, routes that change the API key,
// pacing's waits, the rules of chains, budgets and request options.

func chainReq(t *testing.T, ctx context.Context, url, model string) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"model":"`+model+`","messages":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// TestFallbackSlowFirstEvent: "to fail over on a slow first token, set a
// first-byte timeout: the slow model is not retried, the next one is
// tried at once" — with the stream's headers at once and its first event
// slow (a slow first token), not only with headers that never come.
func TestFallbackSlowFirstEvent(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	hits := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"model":"slow"`) {
			mu.Lock()
			hits["slow"]++
			mu.Unlock()
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		mu.Lock()
		hits["fast"]++
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\n\ndata: [DONE]\n\n")
	}))
	defer srv.Close()
	defer close(release)
	var o Outcome
	tr := New(nil, WithFirstByteTimeout(200*time.Millisecond), WithBackoff(time.Millisecond, time.Millisecond),
		WithOnRetry(func(ev RetryEvent) {
			t.Logf("retry of %s: class %s, message %q", ev.Model, ev.Classification.Class, ev.Classification.Message)
		}),
		WithFallbacks(map[string][]string{"slow": {"fast"}}), WithOnOutcome(func(_ context.Context, x Outcome) { o = x }))
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "slow", true))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	fb, _ := FallbackOf(resp)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("fallback %+v, hits %v, outcome attempts %d path %v reason %q", fb, hits, o.Attempts, o.Path, o.FallbackReason)
	// (fast may be sent again if a loaded machine makes it miss the timer
	// too: what is checked is that slow was not retried.)
	if hits["slow"] != 1 || hits["fast"] < 1 || fb.Model != "fast" || fb.Reason != "timeout" {
		t.Errorf("slow first event: slow got %d requests (want 1: not retried), fast %d; fallback %+v", hits["slow"], hits["fast"], fb)
	}
}

// TestFallbackRouteKeysNeverLeak: a route to another host and key; the
// retry hooks see the primary's request, and neither key leaks into hooks
// or outcomes when the gateways echo them, in messages and request IDs,
// also with a classifier that leaves the request ID to the transport (the
// primary's response, handed back when the chain fails, was masked with
// the target's key only).
func TestFallbackRouteKeysNeverLeak(t *testing.T) {
	const keyA, keyB = "sk-audit-key-of-a-0123456789abcdef", "sk-audit-key-of-b-0123456789abcdef"
	for _, custom := range []bool{false, true} {
		t.Run(fmt.Sprintf("customClassifier=%v", custom), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{respond: func(i int, r *http.Request) (*http.Response, error) {
					key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
					return response(503, `{"error":{"message":"bad key `+key+`","type":"server_error"}}`, "X-Request-Id", "rid-"+key), nil
				}}
				var hookTexts []string
				var evs []RetryEvent
				opts := []Option{WithoutCircuitBreaker(), WithBackoff(time.Millisecond, time.Millisecond), WithMaxRetries(1),
					WithFallbacks(map[string][]string{"a": {"a at B"}}),
					WithFallbackRoute("a at B", "a-b", func(r *http.Request) {
						r.URL.Host, r.Host = "b.test", ""
						r.Header.Set("Authorization", "Bearer "+keyB)
					}),
					WithOnRetry(func(ev RetryEvent) { evs = append(evs, ev) }),
					WithOnFallback(func(ev FallbackEvent) { hookTexts = append(hookTexts, fmt.Sprintf("%+v", ev)) }),
					WithOnOutcome(func(_ context.Context, o Outcome) { hookTexts = append(hookTexts, fmt.Sprintf("%+v", o)) }),
				}
				if custom {
					opts = append(opts, WithClassifier(func(resp *http.Response, body []byte) Classification {
						cl := Classify(resp, body)
						cl.RequestID = ""
						return cl
					}))
				}
				tr := New(f, opts...)
				req := chainReq(t, t.Context(), gw, "a")
				req.Header.Set("Authorization", "Bearer "+keyA)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				o, _ := OutcomeOf(resp)
				hookTexts = append(hookTexts, fmt.Sprintf("%+v", o))
				for _, ev := range evs {
					hookTexts = append(hookTexts, fmt.Sprintf("%+v %v", ev.Classification, ev.Err))
				}
				for i, s := range hookTexts {
					for _, k := range []string{keyA, keyB} {
						if strings.Contains(s, k) {
							t.Errorf("text %d holds %s: %s", i, k[:16], s)
						}
					}
				}
				if len(evs) != 1 || evs[0].Host != "gw.test" {
					t.Fatalf("retry events %d", len(evs))
				}
			})
		})
	}
}

// TestOutcomePacingWait: a pacing wait is in the Outcome's Waited, and
// makes the call's Outcome told.
func TestOutcomePacingWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			return response(200, `{"id":"x"}`, limitHeaders("10", "0", "10s")...), nil
		}}
		tr := New(f, WithPacing(), WithoutCircuitBreaker(), WithMaxRetryWait(time.Minute))
		resp, err := tr.RoundTrip(chainReq(t, t.Context(), gw, "m"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var o Outcome
		start := time.Now()
		resp, err = tr.RoundTrip(chainReq(t, WithRequestOptions(t.Context(), RequestOutcomeInto(&o)), gw, "m"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		took := time.Since(start)
		o2, _ := OutcomeOf(resp)
		t.Logf("paced call took %v; RequestOutcomeInto Waited %v; OutcomeOf Waited %v", took, o.Waited, o2.Waited)
		if took != 10*time.Second || o.Waited != took || o2.Waited != took {
			t.Errorf("a call paced for %v reports Waited %v (RequestOutcomeInto), %v (OutcomeOf); want 10s", took, o.Waited, o2.Waited)
		}
	})
}

const overloaded529 = `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`

// chainModelOf returns the "model" of a fake request's body.
func chainModelOf(r *http.Request) string {
	if r.GetBody == nil {
		return ""
	}
	rc, _ := r.GetBody()
	b, _ := io.ReadAll(rc)
	s := string(b)
	i := strings.Index(s, `"model":"`)
	if i < 0 {
		return ""
	}
	s = s[i+len(`"model":"`):]
	return s[:strings.IndexByte(s, '"')]
}

// WithFallbackRetries: "The default is DefaultFallbackRetries (1); 0 gives
// each target one attempt."
func TestFallbackDefaultRetriesPerTarget(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []Option
		b, c    int
		attempt int
	}{
		{"default", nil, 2, 2, 5},
		{"zero", []Option{WithFallbackRetries(0)}, 1, 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				per := map[string]int{}
				f := &fakeRT{respond: func(_ int, r *http.Request) (*http.Response, error) {
					m := chainModelOf(r)
					mu.Lock()
					per[m]++
					mu.Unlock()
					if m == "a" {
						return response(404, `{"error":{"message":"no a","type":"invalid_request_error","code":"model_not_found"}}`), nil
					}
					return response(529, overloaded529), nil
				}}
				tr := New(f, append([]Option{WithoutCircuitBreaker(), WithBackoff(time.Millisecond, time.Millisecond),
					WithFallbacks(map[string][]string{"a": {"b", "c"}})}, tc.opts...)...)
				resp, err := tr.RoundTrip(chainReq(t, t.Context(), gw, "a"))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if per["a"] != 1 || per["b"] != tc.b || per["c"] != tc.c {
					t.Errorf("requests %v, want a 1, b %d, c %d", per, tc.b, tc.c)
				}
			})
		})
	}
}

// WithFallbacks: "Retries also take tokens from each host's retry budget as
// usual."
func TestFallbackRetryBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		per := map[string]int{}
		f := &fakeRT{respond: func(_ int, r *http.Request) (*http.Response, error) {
			mu.Lock()
			per[r.URL.Host+"/"+chainModelOf(r)]++
			mu.Unlock()
			return response(503, busy503), nil
		}}
		tr := New(f, WithoutCircuitBreaker(), WithBackoff(time.Millisecond, time.Millisecond), WithRetryBudget(0.2, 1),
			WithFallbacks(map[string][]string{"a": {"b", "c at B"}}),
			WithFallbackRoute("c at B", "c", func(r *http.Request) { r.URL.Host, r.Host = "b.test", "" }))
		resp, err := tr.RoundTrip(chainReq(t, t.Context(), gw, "a"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		t.Logf("requests %v", per)
		if per["gw.test/a"] != 2 || per["gw.test/b"] != 1 || per["b.test/c"] != 2 {
			t.Errorf("requests %v: want a 2 (the host's one token), b 1 (none left), c at B 2 (its own host's token)", per)
		}
		if errors.Is(err, ErrCircuitOpen) {
			t.Fatal()
		}
	})
}

// "A body over WithMaxBufferedBody without GetBody is sent once and never
// falls back."
func TestFallbackLargeBodyNoFallback(t *testing.T) {
	for _, known := range []bool{false, true} {
		t.Run(fmt.Sprintf("contentLengthKnown=%v", known), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) { return response(529, overloaded529), nil }}
				var n int
				tr := New(f, WithoutCircuitBreaker(), WithMaxBufferedBody(64), WithFallbacks(map[string][]string{"a": {"b"}}),
					WithOnFallback(func(FallbackEvent) { n++ }))
				body := `{"model":"a","messages":[{"role":"user","content":"` + strings.Repeat("x", 200) + `"}]}`
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, gw, io.NopCloser(strings.NewReader(body)))
				req.ContentLength = -1
				if known {
					req.ContentLength = int64(len(body))
				}
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if f.attempts() != 1 || n != 0 || resp.StatusCode != 529 {
					t.Errorf("attempts %d, fallbacks %d, status %d", f.attempts(), n, resp.StatusCode)
				}
			})
		})
	}
}

// "The chains are not followed recursively"; WithFallbackRoute: "A nil
// redirect only renames ... An empty model is name"; "a body with GetBody
// is read once more for the first fallback".
func TestFallbackChainRules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var seen []string
		f := &fakeRT{respond: func(_ int, r *http.Request) (*http.Response, error) {
			m := chainModelOf(r)
			mu.Lock()
			seen = append(seen, r.URL.Host+"/"+m)
			mu.Unlock()
			if m == "ok" || m == "renamed" {
				return response(200, `{}`), nil
			}
			return response(503, busy503), nil
		}}
		tr := New(f, WithoutCircuitBreaker(), WithMaxRetries(0),
			WithFallbacks(map[string][]string{"a": {"b"}, "b": {"ok"}, "x": {"alias", "same"}}),
			WithFallbackRoute("alias", "renamed", nil),
			WithFallbackRoute("same", "", nil))
		resp, _ := tr.RoundTrip(chainReq(t, t.Context(), gw, "a"))
		resp.Body.Close()
		if strings.Join(seen, ",") != "gw.test/a,gw.test/b" {
			t.Errorf("recursive? %v", seen)
		}
		seen = nil
		resp, _ = tr.RoundTrip(chainReq(t, t.Context(), gw, "x"))
		resp.Body.Close()
		if fb, _ := FallbackOf(resp); strings.Join(seen, ",") != "gw.test/x,gw.test/renamed" || fb.Model != "renamed" {
			t.Errorf("nil redirect: %v %+v", seen, fb)
		}
		// GetBody calls: one chain of one target vs two targets.
		count := func(chain []string) int {
			n := 0
			tr := New(f, WithoutCircuitBreaker(), WithMaxRetries(0), WithFallbacks(map[string][]string{"a": chain}))
			req := chainReq(t, t.Context(), gw, "a")
			gb := req.GetBody
			req.GetBody = func() (io.ReadCloser, error) { n++; return gb() }
			resp, _ := tr.RoundTrip(req)
			resp.Body.Close()
			return n
		}
		one, two := count([]string{"b"}), count([]string{"b", "c"})
		t.Logf("GetBody calls: %d with one target, %d with two", one, two)
		if one != two {
			t.Errorf("GetBody read again for a later target")
		}
	})
}

// The target's RetryEvent and the Outcome of a routed target.
func TestFallbackRouteTargetEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bHits := 0
		f := &fakeRT{respond: func(i int, r *http.Request) (*http.Response, error) {
			if r.URL.Host == "b.test" {
				bHits++
				if bHits > 1 {
					return response(200, `{"ok":true}`), nil
				}
			}
			if r.URL.Host == "gw.test" {
				return response(404, `{"error":{"message":"no a","type":"invalid_request_error","code":"model_not_found"}}`), nil
			}
			return response(503, busy503), nil
		}}
		var evs []RetryEvent
		tr := New(f, WithoutCircuitBreaker(), WithBackoff(time.Millisecond, time.Millisecond), WithMaxRetries(2),
			WithFallbacks(map[string][]string{"a": {"a at B"}}),
			WithFallbackRoute("a at B", "a-b", func(r *http.Request) {
				r.URL.Host, r.Host = "b.test", ""
				r.Header.Set("Authorization", "Bearer sk-b")
			}),
			WithOnRetry(func(ev RetryEvent) { evs = append(evs, ev) }),
			WithRetryPolicy(func(ev RetryEvent) bool { return ev.Context != nil && ev.Classification.Retryable }))
		resp, err := tr.RoundTrip(chainReq(t, t.Context(), gw, "a"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		o, _ := OutcomeOf(resp)
		last := evs[len(evs)-1]
		t.Logf("events %d; last: host %s model %s req host %s auth %q; outcome host %s model %s requested %s path %v attempts %d",
			len(evs), last.Host, last.Model, last.Request.URL.Host, last.Request.Header.Get("Authorization"), o.Host, o.Model, o.Requested, o.Path, o.Attempts)
		if last.Host != "b.test" || last.Model != "a-b" || last.Request.URL.Host != "b.test" || last.Request.Header.Get("Authorization") != "Bearer sk-b" {
			t.Errorf("the target's retry event does not carry the target's request")
		}
		if o.Host != "b.test" || o.Model != "a-b" || o.Requested != "a" || !o.FellBack() {
			t.Errorf("outcome %+v", o)
		}
	})
}

// WithRequestOptions: "options already in ctx are kept unless opts change
// them"; RequestMaxRetries "Negative values are ignored"; RequestMaxRetryWait
// "Values ≤ 0 are ignored", and "in place of WithMaxRetryWait" (longer too).
func TestRequestOptionsRules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) { return response(503, busy503), nil }}
		tr := New(f, WithoutCircuitBreaker(), WithBackoff(time.Millisecond, time.Millisecond))
		ctx := WithRequestOptions(WithRequestOptions(t.Context(), RequestMaxRetries(0)), RequestMaxRetryWait(time.Second))
		resp, _ := tr.RoundTrip(newChatRequest(t, ctx, gw))
		resp.Body.Close()
		if f.attempts() != 1 {
			t.Errorf("nested options: %d attempts, want 1", f.attempts())
		}
		ctx = WithRequestOptions(WithRequestOptions(t.Context(), RequestMaxRetries(1)), RequestMaxRetries(-1))
		resp, _ = tr.RoundTrip(newChatRequest(t, ctx, gw))
		resp.Body.Close()
		if f.attempts() != 1+2 {
			t.Errorf("RequestMaxRetries(-1) over 1: %d attempts, want 2", f.attempts()-1)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			if i == 0 {
				return response(429, `{"error":{"message":"slow down","type":"rate_limit_error"}}`, "Retry-After", "10"), nil
			}
			return response(200, `{}`), nil
		}}
		tr := New(f, WithoutCircuitBreaker(), WithMaxRetryWait(time.Second))
		start := time.Now()
		resp, _ := tr.RoundTrip(newChatRequest(t, WithRequestOptions(t.Context(), RequestMaxRetryWait(time.Minute)), gw))
		resp.Body.Close()
		if f.attempts() != 2 || time.Since(start) < 10*time.Second {
			t.Errorf("RequestMaxRetryWait(1m) over WithMaxRetryWait(1s), Retry-After 10: %d attempts after %v", f.attempts(), time.Since(start))
		}
	})
}

// WithOnOutcome: "For a streamed response it runs when the headers and first
// event came back: a stream that breaks later is not in it."
func TestOnOutcomeStream(t *testing.T) {
	var got []Outcome
	f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
		return response(200, "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"error\":{\"message\":\"died\",\"type\":\"server_error\"}}\n\n", "Content-Type", "text/event-stream"), nil
	}}
	tr := New(f, WithoutCircuitBreaker(), WithOnOutcome(func(_ context.Context, o Outcome) { got = append(got, o) }))
	resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), gw))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Class != ClassSuccess {
		t.Fatalf("hook before the read: %+v", got)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(got) != 1 {
		t.Errorf("hook ran %d times", len(got))
	}
}

// TestFallbackDeferredPrimaryNoResponse: the primary, skipped for its
// cooldown, is tried last; when it gets no response at all (a reset), the
// target's response goes back with err == nil (it was dropped first, and
// the caller got only the error).
func TestFallbackDeferredPrimaryNoResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		call := 1
		f := &fakeRT{respond: func(i int, r *http.Request) (*http.Response, error) {
			body := ""
			if r.GetBody != nil {
				rc, _ := r.GetBody()
				bb, _ := io.ReadAll(rc)
				body = string(bb)
			}
			isA := strings.Contains(body, `"model":"a"`)
			switch {
			case call == 1 && isA:
				return response(429, `{"error":{"message":"slow down","type":"rate_limit_error"}}`, "Retry-After", "2"), nil
			case call == 1:
				return response(200, `{"id":"ok","choices":[]}`), nil
			case isA:
				return nil, syscall.ECONNRESET
			default:
				return response(503, `{"error":{"message":"b busy"}}`), nil
			}
		}}
		tr := New(f, WithMaxRetries(0), WithoutCircuitBreaker(), WithFallbacks(map[string][]string{"a": {"b"}}))
		resp, err := tr.RoundTrip(chainReq(t, t.Context(), gw, "a"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if fb, _ := FallbackOf(resp); fb.Model != "b" {
			t.Fatalf("call 1: fallback %+v, want b", fb)
		}
		call = 2
		var o Outcome
		ctx := WithRequestOptions(t.Context(), RequestOutcomeInto(&o))
		resp, err = tr.RoundTrip(chainReq(t, ctx, gw, "a"))
		if resp != nil {
			resp.Body.Close()
		}
		t.Logf("call 2: resp %v, err %v, attempts %d, path %v", resp != nil, err, o.Attempts, o.Path)
		if err != nil || resp == nil || resp.StatusCode != 503 {
			t.Errorf("call 2: got err %v (response %v) after b answered 503; want b's 503 and err == nil", err, resp != nil)
		}
	})
}
