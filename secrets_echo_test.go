package llmtransport

// Secrets a gateway echoes where the audit of the README's promises found
// them unmasked (a body's read error, a Type, a success's request ID, a
// /bot<token>/ path), and promises of spans and hooks that had no test.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// azureKey is a credential no pattern finds (32 lower-case hex digits):
// only masking by the request's own values catches it.
const azureKey = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"

func azureReq(t *testing.T, ctx context.Context, model string) *http.Request {
	t.Helper()
	req := chainReq(t, ctx, gw, model)
	req.Header.Set("api-key", azureKey)
	return req
}

// sendAzure sends a chat request carrying azureKey through tr, reads its
// response's body to the end and closes it, and returns the response.
func sendAzure(t *testing.T, tr http.RoundTripper) *http.Response {
	t.Helper()
	resp, err := tr.RoundTrip(azureReq(t, t.Context(), "gpt-4o"))
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp
}

// chunkThenErr is a body that yields first, then fails with err.
func chunkThenErr(first string, err error) io.ReadCloser {
	return io.NopCloser(io.MultiReader(strings.NewReader(first), errReader{err}))
}

// TestSecretsBodyReadError: a body that breaks with an
// error whose text holds the request's api-key (as an HTTP/2 GOAWAY's
// debug data would): span statuses must not name it.
func TestSecretsBodyReadError(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			tel := newTelemetry(t)
			broken := errors.New("connection lost, upstream said: " + azureKey)
			tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if stream {
					resp := response(200, "", "Content-Type", "text/event-stream")
					resp.Body = chunkThenErr("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n", broken)
					return resp, nil
				}
				resp := response(200, "")
				resp.Body = chunkThenErr(`{"id":"chatcmpl-1","choices":[]}`, broken)
				return resp, nil
			}), tel.options()...)
			sendAzure(t, tr)
			if s := recorded(tel); strings.Contains(s, azureKey) {
				t.Errorf("spans record the api-key:\n%s", s)
			}
		})
	}
}

// TestSecretsTypeEchoed: a gateway echoing the key in error.type: the hooks
// and the Outcome get Classification.Type as written.
func TestSecretsTypeEchoed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			return response(500, `{"error":{"type":"bad_key_`+azureKey+`","message":"upstream failed"}}`), nil
		}}
		var texts []string
		tr := New(f, WithBackoff(time.Millisecond, time.Millisecond), WithMaxRetries(1),
			WithOnRetry(func(ev RetryEvent) { texts = append(texts, fmt.Sprintf("retry %+v", ev.Classification)) }),
			WithOnOutcome(func(_ context.Context, o Outcome) {
				texts = append(texts, fmt.Sprintf("outcome %+v", o.Classification))
			}))
		sendAzure(t, tr)
		if len(texts) != 2 {
			t.Fatalf("hook texts %d, want 2", len(texts))
		}
		for _, s := range texts {
			if strings.Contains(s, azureKey) {
				t.Errorf("hook sees the api-key: %s", s)
			}
		}
	})
}

// TestSecretsSuccessRequestID: a gateway whose request ID echoes the
// key on a success (after a retry, so that the Outcome is told): spans
// and Outcome.
func TestSecretsSuccessRequestID(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			tel := newTelemetry(t)
			n := 0
			tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.Body != nil {
					io.Copy(io.Discard, r.Body)
					r.Body.Close()
				}
				n++
				if n == 1 {
					return response(503, `{"error":{"message":"busy"}}`, "X-Request-Id", "rid-"+r.Header.Get("api-key")), nil
				}
				if stream {
					return response(200, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
						"Content-Type", "text/event-stream", "X-Request-Id", "rid-"+r.Header.Get("api-key")), nil
				}
				return response(200, `{"id":"chatcmpl-1","choices":[]}`, "X-Request-Id", "rid-"+r.Header.Get("api-key")), nil
			}), tel.options()...)
			resp := sendAzure(t, tr)
			if s := recorded(tel); strings.Contains(s, azureKey) {
				t.Errorf("spans record the api-key:\n%s", s)
			}
			o, _ := OutcomeOf(resp)
			if s := fmt.Sprintf("%+v", o); strings.Contains(s, azureKey) {
				t.Errorf("Outcome holds the api-key: %s", s)
			}
		})
	}
}

// TestSecretsURLFullBotToken: "the URL's userinfo and a /bot<token>/ segment"
// are masked "in span statuses and attributes": url.full included.
func TestSecretsURLFullBotToken(t *testing.T) {
	const tok = "123456:S3CRETtelegramTok"
	tel := newTelemetry(t)
	tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return response(200, `{"id":"x","choices":[]}`), nil
	}), tel.options()...)
	req := chainReq(t, t.Context(), "http://gw.test/bot"+tok+"/chat/completions", "gpt-4o")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if s := recorded(tel); strings.Contains(s, "S3CRETtelegramTok") {
		t.Errorf("spans record the bot token:\n%s", s)
	}
}

// TestOperationDurationErrorTypes: gen_ai.client.operation.duration's
// error.type is circuit_open for a refused call and canceled for the
// caller's cancellation; http.client.request.duration's is the class of a
// transport error.
func TestOperationDurationErrorTypes(t *testing.T) {
	tel := newTelemetry(t)
	n := 0
	tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		n++
		if n == 1 {
			return response(503, `{"error":{"message":"busy"}}`), nil
		}
		return nil, syscall.ECONNRESET
	}), tel.options(WithMaxRetries(0), WithBreakerThreshold(0.5, 1))...)
	resp, err := tr.RoundTrip(chainReq(t, t.Context(), gw, "m"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := tr.RoundTrip(chainReq(t, t.Context(), gw, "m")); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("want an open circuit, got %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tr.RoundTrip(chainReq(t, ctx, "http://other.test/v1/chat/completions", "m"))
	tr.RoundTrip(chainReq(t, t.Context(), "http://third.test/v1/chat/completions", "m"))
	rm := tel.collect(t)
	for _, w := range []map[string]string{{"error.type": "circuit_open"}, {"error.type": "canceled"}, {"error.type": "upstream_transient", "server.address": "third.test"}} {
		if c, _ := sum(rm, MetricOperationDuration, w); c != 1 {
			t.Errorf("%s%v = %v, want 1", MetricOperationDuration, w, c)
		}
	}
	if c, _ := sum(rm, MetricRequestDuration, map[string]string{"error.type": "upstream_transient", "server.address": "third.test"}); c != 1 {
		t.Errorf("%s{error.type=upstream_transient} = %v, want 1", MetricRequestDuration, c)
	}
}

// TestHookContextsCarryCallSpan: RetryEvent.Context and WithOnOutcome's
// ctx carry the call's span when tracing.
func TestHookContextsCarryCallSpan(t *testing.T) {
	tel := newTelemetry(t)
	n := 0
	var retryID, outcomeID string
	tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		n++
		if n == 1 {
			return response(503, `{"error":{"message":"busy"}}`), nil
		}
		return response(200, `{"id":"x","choices":[]}`), nil
	}), tel.options(
		WithOnRetry(func(ev RetryEvent) { retryID = traceSpanID(ev.Context) }),
		WithOnOutcome(func(ctx context.Context, _ Outcome) { outcomeID = traceSpanID(ctx) }))...)
	resp, err := tr.RoundTrip(chainReq(t, t.Context(), gw, "gpt-4o"))
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	calls := tel.spans("chat gpt-4o")
	if len(calls) != 1 {
		t.Fatalf("%d call spans", len(calls))
	}
	want := calls[0].SpanContext().SpanID().String()
	if retryID != want || outcomeID != want {
		t.Errorf("hook span IDs: retry %q, outcome %q; want the call span's %q", retryID, outcomeID, want)
	}
}

func traceSpanID(ctx context.Context) string {
	return trace.SpanContextFromContext(ctx).SpanID().String()
}

// TestSecretsMidStreamErrorEcho: an error event after the first token that
// echoes the api-key in its message and code: spans name no key.
func TestSecretsMidStreamErrorEcho(t *testing.T) {
	tel := newTelemetry(t)
	tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return response(200, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"+
			"data: {\"error\":{\"message\":\"key "+azureKey+" revoked\",\"code\":\"k_"+azureKey+"\",\"type\":\"auth_error\"}}\n\ndata: [DONE]\n\n",
			"Content-Type", "text/event-stream"), nil
	}), tel.options()...)
	sendAzure(t, tr)
	s := recorded(tel)
	if !strings.Contains(s, "Error") {
		t.Fatalf("stream error not recorded:\n%s", s)
	}
	if strings.Contains(s, azureKey) {
		t.Errorf("spans record the api-key:\n%s", s)
	}
}

// TestWrapClientLeavesClient: WrapClient(existing) leaves existing
// untouched.
func TestWrapClientLeavesClient(t *testing.T) {
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return response(200, `{}`), nil })
	existing := &http.Client{Transport: base, Timeout: time.Second}
	c := WrapClient(existing)
	if _, ok := existing.Transport.(roundTripFunc); !ok || existing.Timeout != time.Second {
		t.Errorf("existing client changed: %#v", existing)
	}
	if _, ok := c.Transport.(*Transport); !ok || c.Timeout != time.Second {
		t.Errorf("wrapped client %#v", c)
	}
}

// TestTracingRequestIDAfterChain: a chain that fails hands back the
// primary's response (no request ID); the call span's llm.request_id must
// not be the target's.
func TestTracingRequestIDAfterChain(t *testing.T) {
	tel := newTelemetry(t)
	tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if strings.Contains(string(b), `"model":"a"`) {
			return response(503, `{"error":{"message":"a busy"}}`), nil
		}
		return response(503, `{"error":{"message":"b busy"}}`, "X-Request-Id", "req_of_b"), nil
	}), tel.options(WithMaxRetries(0), WithoutCircuitBreaker(), WithFallbacks(map[string][]string{"a": {"b"}}))...)
	resp, err := tr.RoundTrip(chainReq(t, t.Context(), gw, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "" {
		t.Fatalf("handed back a response with request ID %q, want the primary's (none)", got)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	calls := tel.spans("chat a")
	if len(calls) != 1 {
		t.Fatalf("%d call spans", len(calls))
	}
	if v, ok := attrs(calls[0].Attributes())["llm.request_id"]; ok {
		t.Errorf("call span llm.request_id = %q for a response that carries none (the target's)", v.AsString())
	}
}

// TestTracingCallSpanEndsWithHandedBackBody: "The call's span ... ends when
// you have read or closed the final body" — after a failed chain (the
// primary's response handed back) and after a 503 then resets (the 503
// handed back).
func TestTracingCallSpanEndsWithHandedBackBody(t *testing.T) {
	for _, chain := range []bool{true, false} {
		t.Run(fmt.Sprintf("chain=%v", chain), func(t *testing.T) {
			tel := newTelemetry(t)
			n := 0
			opts := []Option{WithoutCircuitBreaker()}
			if chain {
				opts = append(opts, WithMaxRetries(0), WithFallbacks(map[string][]string{"a": {"b"}}))
			}
			tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
				n++
				if n == 1 || chain {
					return response(503, `{"error":{"message":"busy"}}`), nil
				}
				return nil, syscall.ECONNRESET
			}), tel.options(opts...)...)
			resp, err := tr.RoundTrip(chainReq(t, t.Context(), gw, "a"))
			if err != nil || resp.StatusCode != 503 {
				t.Fatalf("got %v, %v; want the 503", resp, err)
			}
			if k := len(tel.spans("chat a")); k != 0 {
				t.Errorf("call span ended before the handed-back body was read (%d attempts)", n)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			if k := len(tel.spans("chat a")); k != 1 {
				t.Errorf("after the body was read and closed, %d call spans ended, want 1", k)
			}
		})
	}
}
