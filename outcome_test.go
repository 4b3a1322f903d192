package llmtransport

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

const busy503 = `{"error":{"message":"busy","type":"server_error"}}`

// TestOutcomeRetriedThenOK: a call retried once carries its outcome on the
// response: attempts, waits, the request ID of each attempt.
func TestOutcomeRetriedThenOK(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			if i == 0 {
				return response(503, busy503, "X-Request-Id", "req_a"), nil
			}
			return response(200, `{"ok":true}`, "X-Request-Id", "req_b"), nil
		}}
		tr := New(f, WithoutCircuitBreaker())
		resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		o, ok := OutcomeOf(resp)
		if !ok {
			t.Fatal("OutcomeOf: no outcome")
		}
		if o.Class != ClassSuccess || o.Attempts != 2 || o.Waited <= 0 || o.Model != "gpt-4o" || o.Requested != "gpt-4o" || o.Host != "gw.test" {
			t.Errorf("outcome = %+v, want success in 2 attempts on gpt-4o after a wait", o)
		}
		if strings.Join(o.RequestIDs, ",") != "req_a,req_b" || o.RequestID != "req_b" {
			t.Errorf("request IDs = %q (last %q), want req_a,req_b", o.RequestIDs, o.RequestID)
		}
		if !o.Retried() || o.FellBack() || o.Path != nil {
			t.Errorf("Retried %v FellBack %v Path %q", o.Retried(), o.FellBack(), o.Path)
		}
	})
}

// TestOutcomeServerVerdict: the outcome of a response handed back after
// the retries keeps the server's verdict, which Classify run again on the
// response loses to our own X-Should-Retry: false.
func TestOutcomeServerVerdict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			return response(503, busy503), nil
		}}
		tr := New(f, WithoutCircuitBreaker(), WithMaxRetries(2))
		resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		body := readClose(t, resp)
		if again := Classify(resp, []byte(body)); again.Retryable {
			t.Fatalf("Classify again: Retryable = true, want false (X-Should-Retry: false)")
		}
		o, ok := OutcomeOf(resp)
		if !ok || o.Class != ClassUpstreamTransient || !o.Retryable || o.Attempts != 3 || o.Status != 503 || len(o.RequestIDs) != 3 {
			t.Errorf("outcome = %+v, %v; want upstream_transient, retryable, 3 attempts", o, ok)
		}
	})
}

// TestOutcomeFirstAttemptSuccess: a success at the first attempt carries
// nothing, and OutcomeOf reads what it can again from the response.
func TestOutcomeFirstAttemptSuccess(t *testing.T) {
	f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
		return response(200, `{"ok":true}`, "X-Request-Id", "req_1"), nil
	}}
	tr := New(f)
	req := newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Request != req {
		t.Errorf("the response's request was replaced on the success path")
	}
	o, ok := OutcomeOf(resp)
	if !ok || o.Class != ClassSuccess || o.Attempts != 1 || o.Model != "gpt-4o" || o.RequestID != "req_1" || o.Host != "gw.test" {
		t.Errorf("outcome = %+v, %v; want success in 1 attempt of gpt-4o, req_1", o, ok)
	}
	if _, ok := OutcomeOf(response(500, "")); ok {
		t.Error("OutcomeOf of a 500 that did not come through a Transport: ok")
	}
	if _, ok := OutcomeOf(nil); ok {
		t.Error("OutcomeOf(nil): ok")
	}
}

// TestOnOutcomeHook: the hook gets every call's outcome with the call's
// context, errors included; a call the circuit refused keeps
// ErrCircuitOpen in o.Err, and so does RequestOutcomeInto.
func TestOnOutcomeHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type ctxKey struct{}
		var got []Outcome
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			return response(503, busy503), nil
		}}
		tr := New(f, WithMaxRetries(0), WithBreakerThreshold(0.5, 2),
			WithOnOutcome(func(ctx context.Context, o Outcome) {
				if ctx.Value(ctxKey{}) != "mine" {
					t.Errorf("hook: the call's context lost the caller's value")
				}
				got = append(got, o)
			}))
		var into Outcome
		var err error
		for i := 0; i < 10 && !errors.Is(err, ErrCircuitOpen); i++ {
			ctx := WithRequestOptions(context.WithValue(t.Context(), ctxKey{}, "mine"), RequestOutcomeInto(&into))
			var resp *http.Response
			resp, err = tr.RoundTrip(newChatRequest(t, ctx, "http://gw.test/v1/chat/completions"))
			if resp != nil {
				resp.Body.Close()
			}
		}
		if !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("the circuit never opened: %v", err)
		}
		last := got[len(got)-1]
		if !errors.Is(last.Err, ErrCircuitOpen) || last.Attempts != 0 || last.Model != "gpt-4o" {
			t.Errorf("hook's last outcome = %+v, want the circuit's refusal", last)
		}
		if !errors.Is(into.Err, ErrCircuitOpen) {
			t.Errorf("RequestOutcomeInto: Err = %v, want ErrCircuitOpen", into.Err)
		}
		if first := got[0]; first.Class != ClassUpstreamTransient || first.Attempts != 1 || first.Err != nil {
			t.Errorf("hook's first outcome = %+v, want a 503 in 1 attempt", first)
		}
	})
}

// TestRetryEventContext: the retry hooks see the call's context and
// request.
func TestRetryEventContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type ctxKey struct{}
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			if i == 0 {
				return response(503, busy503), nil
			}
			return response(200, `{}`), nil
		}}
		var seen, policy int
		tr := New(f, WithoutCircuitBreaker(),
			WithOnRetry(func(ev RetryEvent) {
				if ev.Context == nil || ev.Context.Value(ctxKey{}) != 7 || ev.Request == nil || ev.Request.URL.Path != "/v1/chat/completions" {
					t.Errorf("OnRetry: event without the call's context or request: %+v", ev)
				}
				seen++
			}),
			WithRetryPolicy(func(ev RetryEvent) bool {
				policy++
				return ev.Context.Value(ctxKey{}) == 7
			}))
		ctx := context.WithValue(t.Context(), ctxKey{}, 7)
		resp, err := tr.RoundTrip(newChatRequest(t, ctx, "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if seen != 1 || policy != 1 || resp.StatusCode != 200 {
			t.Errorf("OnRetry %d, policy %d, status %d; want 1, 1, 200", seen, policy, resp.StatusCode)
		}
	})
}

// TestRequestOptions: no retries, a shorter cap on waits, no fallback, for
// one request only.
func TestRequestOptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			return response(503, busy503), nil
		}}
		tr := New(f, WithoutCircuitBreaker(), WithBackoff(time.Millisecond, time.Millisecond))
		ctx := WithRequestOptions(t.Context(), RequestMaxRetries(0))
		resp, err := tr.RoundTrip(newChatRequest(t, ctx, "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if f.attempts() != 1 || resp.Header.Get("X-Should-Retry") != "" {
			t.Errorf("RequestMaxRetries(0): %d attempts, X-Should-Retry %q; want 1 and none", f.attempts(), resp.Header.Get("X-Should-Retry"))
		}
		// The next request, without options, is retried as the transport says.
		resp, _ = tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		resp.Body.Close()
		if f.attempts() != 1+1+DefaultMaxRetries {
			t.Errorf("a request without options: %d attempts in all, want %d", f.attempts(), 2+DefaultMaxRetries)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			return response(429, `{"error":{"message":"slow down","type":"rate_limit_error"}}`, "Retry-After", "10"), nil
		}}
		tr := New(f, WithoutCircuitBreaker())
		ctx := WithRequestOptions(t.Context(), RequestMaxRetryWait(time.Second))
		start := time.Now()
		resp, err := tr.RoundTrip(newChatRequest(t, ctx, "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if f.attempts() != 1 || time.Since(start) != 0 {
			t.Errorf("RequestMaxRetryWait(1s) with Retry-After 10: %d attempts after %v, want 1 at once", f.attempts(), time.Since(start))
		}
	})
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(_ int, r *http.Request) (*http.Response, error) {
			rc, _ := r.GetBody()
			b, _ := io.ReadAll(rc)
			if strings.Contains(string(b), `"model":"b"`) {
				return response(200, `{"ok":true}`), nil
			}
			return response(503, busy503), nil
		}}
		tr := New(f, fbOptions(WithoutCircuitBreaker(), WithMaxRetries(0))...)
		send := func(ctx context.Context) *http.Response {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://gw.test/v1/chat/completions", strings.NewReader(`{"model":"a"}`))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		if resp := send(WithRequestOptions(t.Context(), RequestWithoutFallbacks())); resp.StatusCode != 503 {
			t.Errorf("RequestWithoutFallbacks: status %d, want the primary's 503", resp.StatusCode)
		}
		resp := send(t.Context())
		o, ok := OutcomeOf(resp)
		if resp.StatusCode != 200 || !ok || !o.FellBack() || strings.Join(o.Path, ",") != "a,b" || o.Model != "b" || o.Requested != "a" || o.FallbackReason != "upstream_transient" || o.Attempts != 2 {
			t.Errorf("with fallbacks: status %d, outcome %+v", resp.StatusCode, o)
		}
	})
}
