//go:build jaeger

// The end-to-end test against a real Jaeger: run it with
// scripts/jaeger-e2e.sh, which builds, starts and stops Jaeger.

package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/llmtransport/llmtransport"
)

// Secrets the fake client sends; none may reach Jaeger.
const (
	e2eBearer = "sk-e2e-Zq9XwV7uT5sR3pN1mL8kJ6hG4fD2sA0"
	e2eKey    = "AIzaE2EsecretKEY0123456789abcdefghijk"
	e2eHeader = "e2e-x-api-key-0123456789abcdef"
)

// envOr returns the environment variable k, or def when it is unset or
// empty.
func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// OTLP JSON, as Jaeger's /api/v3 returns it.
type (
	otlpValue struct {
		StringValue *string  `json:"stringValue"`
		IntValue    *string  `json:"intValue"`
		BoolValue   *bool    `json:"boolValue"`
		DoubleValue *float64 `json:"doubleValue"`
		ArrayValue  *struct {
			Values []otlpValue `json:"values"`
		} `json:"arrayValue"`
	}
	otlpKV struct {
		Key   string    `json:"key"`
		Value otlpValue `json:"value"`
	}
	otlpSpan struct {
		TraceID      string   `json:"traceId"`
		SpanID       string   `json:"spanId"`
		ParentSpanID string   `json:"parentSpanId"`
		Name         string   `json:"name"`
		Kind         int      `json:"kind"`
		Attributes   []otlpKV `json:"attributes"`
		Status       struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
		Events []struct {
			Name       string   `json:"name"`
			Attributes []otlpKV `json:"attributes"`
		} `json:"events"`
		scope string
	}
	otlpTrace struct {
		Result struct {
			ResourceSpans []struct {
				ScopeSpans []struct {
					Scope struct {
						Name    string `json:"name"`
						Version string `json:"version"`
					} `json:"scope"`
					Spans []otlpSpan `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		} `json:"result"`
	}
)

// String renders v the way the tests compare it: strings as is, ints in
// decimal, arrays as [a b].
func (v otlpValue) String() string {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.IntValue != nil:
		return *v.IntValue
	case v.BoolValue != nil:
		return fmt.Sprint(*v.BoolValue)
	case v.DoubleValue != nil:
		return fmt.Sprint(*v.DoubleValue)
	case v.ArrayValue != nil:
		parts := make([]string, len(v.ArrayValue.Values))
		for i, e := range v.ArrayValue.Values {
			parts[i] = e.String()
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return ""
}

// attr returns the value of s's attribute k as text, and whether s has it.
func (s otlpSpan) attr(k string) (string, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == k {
			return kv.Value.String(), true
		}
	}
	return "", false
}

// want fails t unless s has each attribute of want with its value, and
// none of absent.
func (s otlpSpan) want(t *testing.T, want map[string]string, absent ...string) {
	t.Helper()
	for k, v := range want {
		got, ok := s.attr(k)
		if !ok {
			t.Errorf("%s %s: attribute %s missing, want %q", s.Name, s.SpanID, k, v)
		} else if got != v {
			t.Errorf("%s %s: %s = %q, want %q", s.Name, s.SpanID, k, got, v)
		}
	}
	for _, k := range absent {
		if got, ok := s.attr(k); ok {
			t.Errorf("%s %s: attribute %s = %q, want none", s.Name, s.SpanID, k, got)
		}
	}
}

// fetchTrace polls Jaeger until the trace has n spans, and returns the raw
// JSON and the spans.
func fetchTrace(t *testing.T, ctx context.Context, queryURL, traceID string, n int) ([]byte, []otlpSpan) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, queryURL+"/api/v3/traces/"+traceID, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
			if resp.StatusCode == http.StatusOK {
				var tr otlpTrace
				if err := json.Unmarshal(body, &tr); err != nil {
					t.Fatalf("decoding the trace: %v\n%s", err, body)
				}
				var spans []otlpSpan
				for _, rs := range tr.Result.ResourceSpans {
					for _, ss := range rs.ScopeSpans {
						for _, s := range ss.Spans {
							s.scope = ss.Scope.Name + " " + ss.Scope.Version
							spans = append(spans, s)
						}
					}
				}
				if len(spans) >= n {
					return body, spans
				}
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("trace %s did not reach Jaeger with %d spans; last answer: %s", traceID, n, last)
		case <-tick.C:
		}
	}
}

// TestJaegerEndToEnd: a call the gateway fails once with 503 and then
// answers reaches a real Jaeger over OTLP/HTTP as one trace — the caller's
// span, the call span, two attempt spans with their status codes, request
// IDs and resend count, each attempt's traceparent as the gateway saw it —
// and none of the request's secrets is in it.
func TestJaegerEndToEnd(t *testing.T) {
	ctx := t.Context()
	endpoint := envOr("JAEGER_OTLP_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
	queryURL := envOr("JAEGER_QUERY_URL", "http://127.0.0.1:16686")
	service := fmt.Sprintf("llmtransport-e2e-%d", time.Now().UnixNano())

	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))),
	)

	// A gateway that fails once, then answers; it checks that the secrets
	// really were sent (so that their absence in Jaeger means something)
	// and keeps the traceparent of each request.
	var (
		n        atomic.Int32
		mu       sync.Mutex
		parents  []string
		sawCreds bool
	)
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		mu.Lock()
		parents = append(parents, r.Header.Get("traceparent"))
		sawCreds = r.Header.Get("Authorization") == "Bearer "+e2eBearer &&
			r.Header.Get("X-Api-Key") == e2eHeader && r.URL.Query().Get("key") == e2eKey
		mu.Unlock()
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", fmt.Sprintf("req_e2e_%d", i))
		if i == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"message":"upstream unavailable","type":"server_error"}}`)
			return
		}
		io.WriteString(w, `{"id":"chatcmpl-e2e","object":"chat.completion","choices":[]}`)
	}))
	defer gateway.Close()

	client := &http.Client{Transport: llmtransport.New(nil,
		llmtransport.WithTracerProvider(tp),
		llmtransport.WithPropagators(propagation.TraceContext{}),
		llmtransport.WithBackoff(time.Millisecond, 5*time.Millisecond),
	)}

	rctx, root := tp.Tracer("e2e").Start(ctx, "e2e request")
	req, err := http.NewRequestWithContext(llmtransport.ContextWithModel(rctx, "gpt-4o"), http.MethodPost,
		gateway.URL+"/v1/chat/completions?key="+e2eKey, strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e2eBearer)
	req.Header.Set("X-Api-Key", e2eHeader)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	root.End()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "chatcmpl-e2e") {
		t.Fatalf("response %d %q, want the gateway's 200", resp.StatusCode, body)
	}
	if !sawCreds {
		t.Fatal("the gateway did not receive the credentials")
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("flushing spans to Jaeger: %v", err)
	}

	traceID := root.SpanContext().TraceID().String()
	raw, spans := fetchTrace(t, ctx, queryURL, traceID, 4)
	t.Logf("trace %s in Jaeger (service %s): %d spans, %d bytes of OTLP JSON", traceID, service, len(spans), len(raw))

	for _, secret := range []string{e2eBearer, e2eKey, e2eHeader, "Bearer"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the stored trace contains the secret %q", secret)
		}
	}

	var call otlpSpan
	var attempts []otlpSpan
	for _, s := range spans {
		switch s.Name {
		case "chat gpt-4o":
			call = s
		case "POST":
			attempts = append(attempts, s)
		}
	}
	if call.SpanID == "" || len(attempts) != 2 {
		t.Fatalf("spans %v: want one %q and two POST", names(spans), "chat gpt-4o")
	}
	if hasAttr(attempts[0], "http.request.resend_count") {
		attempts[0], attempts[1] = attempts[1], attempts[0]
	}

	rootID := root.SpanContext().SpanID().String()
	if call.ParentSpanID != rootID || call.Kind != 3 || call.Status.Code != 0 {
		t.Errorf("call span: parent %s kind %d status %d, want parent %s (the root), kind 3 (client), status unset",
			call.ParentSpanID, call.Kind, call.Status.Code, rootID)
	}
	if want := llmtransport.ScopeName + " " + llmtransport.Version; call.scope != want {
		t.Errorf("call span scope %q, want %q", call.scope, want)
	}
	call.want(t, map[string]string{
		"gen_ai.operation.name":     "chat",
		"gen_ai.request.model":      "gpt-4o",
		"llm.attempts":              "2",
		"llm.error.class":           "success",
		"llm.request_id":            "req_e2e_2",
		"http.response.status_code": "200",
	}, "error.type")
	var retry bool
	for _, e := range call.Events {
		if e.Name == "retry scheduled" {
			retry = true
			for _, kv := range e.Attributes {
				if kv.Key == "llm.retry.reason" && kv.Value.String() != "upstream_transient" {
					t.Errorf("retry reason %q, want upstream_transient", kv.Value.String())
				}
			}
		}
	}
	if !retry {
		t.Errorf("call span has no %q event: %+v", "retry scheduled", call.Events)
	}

	redactedURL := gateway.URL + "/v1/chat/completions?key=REDACTED"
	for i, a := range attempts {
		if a.ParentSpanID != call.SpanID || a.Kind != 3 || a.TraceID != traceID {
			t.Errorf("attempt %d: parent %s kind %d trace %s, want parent %s, kind 3, trace %s",
				i, a.ParentSpanID, a.Kind, a.TraceID, call.SpanID, traceID)
		}
		if want := fmt.Sprintf("00-%s-%s-01", traceID, a.SpanID); i < len(parents) && parents[i] != want {
			t.Errorf("attempt %d: the gateway saw traceparent %q, want %q", i, parents[i], want)
		}
	}
	attempts[0].want(t, map[string]string{
		"http.request.method":               "POST",
		"url.full":                          redactedURL,
		"http.response.status_code":         "503",
		"error.type":                        "503",
		"llm.error.class":                   "upstream_transient",
		"http.response.header.x-request-id": "[req_e2e_1]",
		"llm.request_id":                    "req_e2e_1",
	}, "http.request.resend_count")
	if attempts[0].Status.Code != 2 {
		t.Errorf("first attempt status %d, want 2 (error)", attempts[0].Status.Code)
	}
	attempts[1].want(t, map[string]string{
		"http.request.method":               "POST",
		"url.full":                          redactedURL,
		"http.request.resend_count":         "1",
		"http.response.status_code":         "200",
		"llm.error.class":                   "success",
		"http.response.header.x-request-id": "[req_e2e_2]",
		"llm.request_id":                    "req_e2e_2",
	}, "error.type")
	if attempts[1].Status.Code != 0 {
		t.Errorf("second attempt status %d, want 0 (unset)", attempts[1].Status.Code)
	}

	t.Logf("tree:\n  %s\n  └─ %s %s\n     ├─ %s %s status=503 x-request-id=req_e2e_1\n     └─ %s %s resend_count=1 status=200 x-request-id=req_e2e_2",
		"e2e request "+rootID, call.Name, call.SpanID, attempts[0].Name, attempts[0].SpanID, attempts[1].Name, attempts[1].SpanID)
}

// hasAttr reports whether s has the attribute k.
func hasAttr(s otlpSpan, k string) bool {
	_, ok := s.attr(k)
	return ok
}

// names returns the names of spans, in order.
func names(spans []otlpSpan) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name
	}
	return out
}
