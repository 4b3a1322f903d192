package llmtransport

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Fallback chains and outcomes at their edges: a slow first event, routes
// that change the API key, pacing's waits.

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
