package llmtransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Secrets the tests send; none may appear in any span or metric.
const (
	testBearer = "sk-proj-abcDEF123456ghiJKL789012mnoPQR"
	testKey    = "AIzaTESTKEY0123456789abcdefghijklmno"
	testHeader = "xk-header-secret-0123456789"
)

// telemetry is an SDK tracer and meter provider that keep what they record.
type telemetry struct {
	sr *tracetest.SpanRecorder
	tp *sdktrace.TracerProvider
	mr *sdkmetric.ManualReader
	mp *sdkmetric.MeterProvider
}

func newTelemetry(t *testing.T) *telemetry {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	mr := sdkmetric.NewManualReader()
	tel := &telemetry{
		sr: sr,
		tp: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr)),
		mr: mr,
		mp: sdkmetric.NewMeterProvider(sdkmetric.WithReader(mr)),
	}
	t.Cleanup(func() {
		tel.tp.Shutdown(context.Background())
		tel.mp.Shutdown(context.Background())
	})
	return tel
}

// options returns the options that send the transport's telemetry to tel,
// with the W3C propagator and a 1 ms backoff.
func (tel *telemetry) options(more ...Option) []Option {
	return append([]Option{
		WithTracerProvider(tel.tp),
		WithMeterProvider(tel.mp),
		WithPropagators(propagation.TraceContext{}),
		WithBackoff(time.Millisecond, time.Millisecond),
	}, more...)
}

func (tel *telemetry) spans(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tel.sr.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// collect reads the metrics.
func (tel *telemetry) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.mr.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

// matches reports whether set has every attribute of want.
func matches(set attribute.Set, want map[string]string) bool {
	for k, v := range want {
		got, ok := set.Value(attribute.Key(k))
		if !ok || got.String() != v {
			return false
		}
	}
	return true
}

// sum returns the sum of the data points of the metric name whose
// attributes include want, and how many points matched.
func sum(rm metricdata.ResourceMetrics, name string, want map[string]string) (total float64, points int) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes, want) {
						total += float64(p.Value)
						points++
					}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes, want) {
						total += float64(p.Value)
						points++
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes, want) {
						total += float64(p.Count)
						points++
					}
				}
			}
		}
	}
	return total, points
}

func attrs(kvs []attribute.KeyValue) map[string]attribute.Value {
	m := make(map[string]attribute.Value, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

// wantAttrs checks that kvs hold every attribute of want (compared by their
// Emit form) and none of the keys in absent.
func wantAttrs(t *testing.T, what string, kvs []attribute.KeyValue, want map[string]string, absent ...string) {
	t.Helper()
	m := attrs(kvs)
	for k, v := range want {
		got, ok := m[k]
		if !ok {
			t.Errorf("%s: attribute %s missing, want %q", what, k, v)
			continue
		}
		if got.String() != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got.String(), v)
		}
	}
	for _, k := range absent {
		if v, ok := m[k]; ok {
			t.Errorf("%s: attribute %s = %q, want none", what, k, v.String())
		}
	}
}

// dump renders everything a span records, for secret checks.
func dump(s sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s|", s.Name(), s.Status().Code, s.Status().Description)
	for _, kv := range s.Attributes() {
		fmt.Fprintf(&b, "%s=%s|", kv.Key, kv.Value.String())
	}
	for _, e := range s.Events() {
		fmt.Fprintf(&b, "event %s|", e.Name)
		for _, kv := range e.Attributes {
			fmt.Fprintf(&b, "%s=%s|", kv.Key, kv.Value.String())
		}
	}
	return b.String()
}

func noSecrets(t *testing.T, tel *telemetry) {
	t.Helper()
	for _, s := range tel.sr.Ended() {
		d := dump(s)
		for _, secret := range []string{testBearer, testKey, testHeader, "Bearer"} {
			if strings.Contains(d, secret) {
				t.Errorf("span %q records a secret %q: %s", s.Name(), secret, d)
			}
		}
	}
}

// flakyGateway answers 503 to the first failures requests and 200 after,
// each with a request ID, and records the traceparent of every request.
type flakyGateway struct {
	failures int32
	n        atomic.Int32
	mu       sync.Mutex
	parents  []string
}

func (g *flakyGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := g.n.Add(1)
	g.mu.Lock()
	g.parents = append(g.parents, r.Header.Get("traceparent"))
	g.mu.Unlock()
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", fmt.Sprintf("req_%d", n))
	if n <= g.failures {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"error":{"message":"upstream failed, key %s","type":"server_error"}}`, testBearer)
		return
	}
	io.WriteString(w, `{"id":"chatcmpl-1","choices":[]}`)
}

// chatRequest returns a chat completion request for model gpt-4o carrying
// the test secrets in its headers and query.
func chatRequest(t *testing.T, ctx context.Context, base string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ContextWithModel(ctx, "gpt-4o"), http.MethodPost,
		base+"/v1/chat/completions?key="+testKey+"&alt=sse",
		strings.NewReader(`{"model":"gpt-4o","messages":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testBearer)
	req.Header.Set("X-Api-Key", testHeader)
	req.Header.Set("Content-Type", "application/json")
	return req
}

func TestTracingRetryTree(t *testing.T) {
	tel := newTelemetry(t)
	gw := &flakyGateway{failures: 1}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	client := &http.Client{Transport: New(nil, tel.options()...)}

	req := chatRequest(t, t.Context(), srv.URL)
	before := req.Header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	if n := len(tel.spans("chat gpt-4o")); n != 0 {
		t.Errorf("call span ended before the body was read")
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	if len(req.Header) != len(before) || req.Header.Get("traceparent") != "" {
		t.Errorf("caller's headers changed: %v, were %v", req.Header, before)
	}

	calls := tel.spans("chat gpt-4o")
	attempts := tel.spans("POST")
	if len(calls) != 1 || len(attempts) != 2 {
		t.Fatalf("ended spans: %d call, %d attempts, want 1 and 2 (all: %d)", len(calls), len(attempts), len(tel.sr.Ended()))
	}
	call := calls[0]
	if call.SpanKind() != trace.SpanKindClient {
		t.Errorf("call span kind = %v, want client", call.SpanKind())
	}
	if call.Parent().IsValid() {
		t.Errorf("call span has parent %v, want root", call.Parent())
	}
	if got := call.InstrumentationScope(); got.Name != ScopeName || got.Version != Version {
		t.Errorf("scope = %s %s, want %s %s", got.Name, got.Version, ScopeName, Version)
	}
	host, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "http://"), ":")
	wantAttrs(t, "call", call.Attributes(), map[string]string{
		"gen_ai.operation.name":     "chat",
		"gen_ai.request.model":      "gpt-4o",
		"server.address":            host,
		"server.port":               port,
		"llm.attempts":              "2",
		"llm.error.class":           "success",
		"http.response.status_code": "200",
		"llm.request_id":            "req_2",
	}, "error.type", "gen_ai.provider.name")
	if call.Status().Code != codes.Unset {
		t.Errorf("call status = %v, want unset", call.Status())
	}
	evs := call.Events()
	if len(evs) != 1 || evs[0].Name != "retry scheduled" {
		t.Fatalf("call events = %v, want one retry scheduled", evs)
	}
	wantAttrs(t, "retry event", evs[0].Attributes, map[string]string{
		"llm.retry.attempt":     "0",
		"llm.retry.reason":      "upstream_transient",
		"llm.retry.wait_source": "backoff",
		"llm.error.class":       "upstream_transient",
	})
	if w := attrs(evs[0].Attributes)["llm.retry.wait"].AsFloat64(); w < 0 || w > 0.002 {
		t.Errorf("retry wait = %vs, want within the 1 ms backoff", w)
	}

	wantURL := srv.URL + "/v1/chat/completions?key=REDACTED&alt=sse"
	for i, a := range attempts {
		what := fmt.Sprintf("attempt %d", i)
		if a.Parent().SpanID() != call.SpanContext().SpanID() || a.SpanContext().TraceID() != call.SpanContext().TraceID() {
			t.Errorf("%s: parent %v, want the call span %v", what, a.Parent().SpanID(), call.SpanContext().SpanID())
		}
		if a.SpanKind() != trace.SpanKindClient {
			t.Errorf("%s: kind = %v, want client", what, a.SpanKind())
		}
		// The traceparent the gateway saw names this attempt's span.
		want := fmt.Sprintf("00-%s-%s-01", a.SpanContext().TraceID(), a.SpanContext().SpanID())
		if gw.parents[i] != want {
			t.Errorf("%s: gateway saw traceparent %q, want %q", what, gw.parents[i], want)
		}
		if a.EndTime().After(call.EndTime()) {
			t.Errorf("%s ends after the call span", what)
		}
	}
	wantAttrs(t, "attempt 0", attempts[0].Attributes(), map[string]string{
		"http.request.method":               "POST",
		"server.address":                    host,
		"server.port":                       port,
		"url.full":                          wantURL,
		"http.response.status_code":         "503",
		"error.type":                        "503",
		"llm.error.class":                   "upstream_transient",
		"http.response.header.x-request-id": `["req_1"]`,
		"llm.request_id":                    "req_1",
	}, "http.request.resend_count")
	if st := attempts[0].Status(); st.Code != codes.Error {
		t.Errorf("attempt 0 status = %v, want error", st)
	}
	wantAttrs(t, "attempt 1", attempts[1].Attributes(), map[string]string{
		"http.request.method":               "POST",
		"url.full":                          wantURL,
		"http.response.status_code":         "200",
		"http.request.resend_count":         "1",
		"llm.error.class":                   "success",
		"http.response.header.x-request-id": `["req_2"]`,
	}, "error.type")
	if st := attempts[1].Status(); st.Code != codes.Unset {
		t.Errorf("attempt 1 status = %v, want unset", st)
	}
	noSecrets(t, tel)

	rm := tel.collect(t)
	for _, c := range []struct {
		metric string
		want   map[string]string
		n      float64
	}{
		{MetricAttempts, map[string]string{"llm.error.class": "upstream_transient", "server.address": host, "gen_ai.request.model": "gpt-4o"}, 1},
		{MetricAttempts, map[string]string{"llm.error.class": "success"}, 1},
		{MetricRetries, map[string]string{"llm.error.class": "upstream_transient", "llm.retry.reason": "upstream_transient", "gen_ai.request.model": "gpt-4o"}, 1},
		{MetricWait, map[string]string{"llm.wait.source": "backoff", "server.address": host}, 1},
	} {
		if got, _ := sum(rm, c.metric, c.want); got != c.n {
			t.Errorf("%s%v = %v, want %v", c.metric, c.want, got, c.n)
		}
	}
	metricsHaveNoSecrets(t, rm)
}

func metricsHaveNoSecrets(t *testing.T, rm metricdata.ResourceMetrics) {
	t.Helper()
	s := fmt.Sprintf("%+v", rm)
	for _, secret := range []string{testBearer, testKey, testHeader} {
		if strings.Contains(s, secret) {
			t.Errorf("metrics record a secret %q", secret)
		}
	}
}

func TestTracingErrorResponseHandedBack(t *testing.T) {
	tel := newTelemetry(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Request-Id", "req_anthropic")
		w.Header().Set("X-Request-Id", "req_other")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}`)
	}))
	defer srv.Close()
	tr := New(nil, tel.options()...)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/v1/messages", strings.NewReader(`{}`))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "invalid_request_error") {
		t.Errorf("body = %q, want the gateway's", b)
	}
	calls, attempts := tel.spans("chat"), tel.spans("POST")
	if len(calls) != 1 || len(attempts) != 1 {
		t.Fatalf("spans: %d calls, %d attempts, want 1 and 1", len(calls), len(attempts))
	}
	wantAttrs(t, "call", calls[0].Attributes(), map[string]string{
		"gen_ai.operation.name": "chat",
		"llm.error.class":       "invalid_request",
		"error.type":            "invalid_request",
		"llm.attempts":          "1",
		"llm.request_id":        "req_anthropic",
	}, "gen_ai.request.model")
	if calls[0].Status().Code != codes.Error {
		t.Errorf("call status = %v, want error", calls[0].Status())
	}
	wantAttrs(t, "attempt", attempts[0].Attributes(), map[string]string{
		"error.type":                      "400",
		"http.response.status_code":       "400",
		"http.response.header.request-id": `["req_anthropic"]`,
	}, "http.response.header.x-request-id", "http.request.resend_count")
	if attempts[0].Status().Code != codes.Error {
		t.Errorf("attempt status = %v, want error", attempts[0].Status())
	}
}

func TestTracingClassificationDetails(t *testing.T) {
	tel := newTelemetry(t)
	// An in-band error: 200 with an error the classifier finds in the body.
	tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}},
			Body: io.NopCloser(strings.NewReader("data: {\"error\":{\"code\":\"insufficient_quota\"}}\n\n"))}, nil
	}), tel.options(WithClassifier(func(resp *http.Response, body []byte) Classification {
		return Classification{Class: ClassQuotaExhausted, Status: resp.StatusCode, Code: "insufficient_quota",
			RequestID: "req_body", Message: "quota exceeded for key " + testBearer}
	}))...)
	req, _ := http.NewRequestWithContext(ContextWithModel(t.Context(), "gpt-4o"), http.MethodPost, "https://openrouter.ai/api/v1/chat/completions", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	calls, attempts := tel.spans("chat gpt-4o"), tel.spans("POST")
	if len(calls) != 1 || len(attempts) != 1 {
		t.Fatalf("spans: %d calls, %d attempts, want 1 and 1", len(calls), len(attempts))
	}
	for _, s := range []sdktrace.ReadOnlySpan{calls[0], attempts[0]} {
		wantAttrs(t, s.Name(), s.Attributes(), map[string]string{
			"llm.error.class":           "quota_exhausted",
			"llm.error.code":            "insufficient_quota",
			"llm.request_id":            "req_body",
			"error.type":                "quota_exhausted",
			"http.response.status_code": "200",
		})
		if st := s.Status(); st.Code != codes.Error || st.Description != "quota exceeded for key sk-REDACTED" {
			t.Errorf("%s: status = %v, want error with the redacted message", s.Name(), st)
		}
	}
	wantAttrs(t, "call", calls[0].Attributes(), map[string]string{"gen_ai.provider.name": "openrouter"})
	noSecrets(t, tel)
}

// roundTripFunc is in transport.go; errTransport fails every attempt.
func errTransport(err error) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	})
}

func TestTracingTransportError(t *testing.T) {
	tel := newTelemetry(t)
	cause := &url.Error{Op: "Post", URL: "https://gw.example/v1/chat/completions?key=" + testKey,
		Err: errors.New("dial tcp: connection refused, token sk-live-" + testHeader)}
	tr := New(errTransport(cause), tel.options(WithMaxRetries(0))...)
	req := chatRequest(t, t.Context(), "https://gw.example")
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, cause) {
		t.Fatalf("err = %v, want the transport's", err)
	}
	calls, attempts := tel.spans("chat gpt-4o"), tel.spans("POST")
	if len(calls) != 1 || len(attempts) != 1 {
		t.Fatalf("spans: %d calls, %d attempts, want 1 and 1", len(calls), len(attempts))
	}
	for _, s := range []sdktrace.ReadOnlySpan{calls[0], attempts[0]} {
		if s.Status().Code != codes.Error || s.Status().Description == "" {
			t.Errorf("%s: status = %v, want error with a description", s.Name(), s.Status())
		}
		wantAttrs(t, s.Name(), s.Attributes(), map[string]string{
			"error.type":      "upstream_transient",
			"llm.error.class": "upstream_transient",
		}, "http.response.status_code")
	}
	wantAttrs(t, "call", calls[0].Attributes(), map[string]string{"server.port": "443"}, "gen_ai.provider.name")
	noSecrets(t, tel)
	if d := attempts[0].Status().Description; !strings.Contains(d, "key=REDACTED") || !strings.Contains(d, "connection refused") {
		t.Errorf("description = %q, want the error with its key redacted", d)
	}
}

func TestTracingCallerCancelIsNotAnError(t *testing.T) {
	tel := newTelemetry(t)
	ctx, cancel := context.WithCancel(t.Context())
	tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		cancel()
		return nil, r.Context().Err()
	}), tel.options()...)
	_, err := tr.RoundTrip(chatRequest(t, ctx, "https://api.openai.com"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	calls, attempts := tel.spans("chat gpt-4o"), tel.spans("POST")
	if len(calls) != 1 || len(attempts) != 1 {
		t.Fatalf("spans: %d calls, %d attempts, want 1 and 1", len(calls), len(attempts))
	}
	for _, s := range []sdktrace.ReadOnlySpan{calls[0], attempts[0]} {
		if s.Status().Code != codes.Unset {
			t.Errorf("%s: status = %v, want unset", s.Name(), s.Status())
		}
		wantAttrs(t, s.Name(), s.Attributes(), nil, "error.type")
	}
	wantAttrs(t, "call", calls[0].Attributes(), map[string]string{"gen_ai.provider.name": "openai"})
}

// rwBody is a response body that can be written to, as a 101 response's.
type rwBody struct {
	io.Reader
	closed  bool
	written []byte
}

func (b *rwBody) Write(p []byte) (int, error) {
	b.written = append(b.written, p...)
	return len(p), nil
}
func (b *rwBody) Close() error { b.closed = true; return nil }

func TestTracingSpanEndsWithBody(t *testing.T) {
	for _, c := range []struct {
		name   string
		finish func(io.ReadCloser)
	}{
		{"EOF", func(b io.ReadCloser) { io.Copy(io.Discard, b) }},
		{"Close", func(b io.ReadCloser) { b.Close() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			tel := newTelemetry(t)
			tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("data"))}, nil
			}), tel.options()...)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://api.openai.com/v1/models", nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(tel.sr.Ended()); n != 0 {
				t.Fatalf("%d spans ended before the body, want 0", n)
			}
			c.finish(resp.Body)
			if n := len(tel.sr.Ended()); n != 2 {
				t.Fatalf("%d spans ended after the body, want 2", n)
			}
			resp.Body.Close() // a second end is ignored
			if n := len(tel.sr.Ended()); n != 2 {
				t.Errorf("%d spans ended after a second Close, want 2", n)
			}
			if got := tel.spans("request"); len(got) != 1 {
				t.Errorf("call span named %q, want %q", tel.sr.Ended()[1].Name(), "request")
			}
			if got := tel.spans("GET"); len(got) != 1 {
				t.Errorf("no GET attempt span")
			}
		})
	}
}

func TestTracingKeepsWritableBody(t *testing.T) {
	tel := newTelemetry(t)
	body := &rwBody{Reader: strings.NewReader("")}
	tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusSwitchingProtocols, Header: http.Header{}, Body: body}, nil
	}), tel.options()...)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://api.openai.com/v1/realtime", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	w, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("body %T is not an io.ReadWriteCloser", resp.Body)
	}
	io.WriteString(w, "ping")
	w.Close()
	if string(body.written) != "ping" || !body.closed {
		t.Errorf("written %q, closed %v; want ping, true", body.written, body.closed)
	}
	if n := len(tel.sr.Ended()); n != 2 {
		t.Errorf("%d spans ended, want 2", n)
	}
}

func TestTracingBrokenBody(t *testing.T) {
	tel := newTelemetry(t)
	broken := errors.New("stream reset, key=" + testKey)
	tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{},
			Body: io.NopCloser(io.MultiReader(strings.NewReader("x"), errReader{broken}))}, nil
	}), tel.options()...)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://api.openai.com/v1/embeddings", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, broken) {
		t.Fatalf("read err = %v, want %v", err, broken)
	}
	for _, name := range []string{"embeddings", "POST"} {
		s := tel.spans(name)
		if len(s) != 1 {
			t.Fatalf("%d %q spans ended, want 1", len(s), name)
		}
		if s[0].Status().Code != codes.Error {
			t.Errorf("%s: status = %v, want error", name, s[0].Status())
		}
		wantAttrs(t, name, s[0].Attributes(), map[string]string{"error.type": "body_read"})
	}
	noSecrets(t, tel)
}

// TestTracingHooks drives the hooks the breaker, cooldown and budget call,
// which the transport only reaches under conditions other tests arrange.
func TestTracingHooks(t *testing.T) {
	tel := newTelemetry(t)
	tr := newTracer(tracingConfig{tp: tel.tp, mp: tel.mp})
	req, _ := http.NewRequest(http.MethodPost, "https://example.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21&api-key="+testKey, nil)
	ctx, c := tr.startCall(t.Context(), req, "gpt-4o")
	c.cooldownWait(1500 * time.Millisecond)
	tr.circuitChanged(ctx, c.st, CircuitStateChange{Host: "example.openai.azure.com:443", Model: "gpt-4o", From: CircuitClosed, To: CircuitOpen})
	c.circuitRejected(&CircuitOpenError{Host: "example.openai.azure.com:443", Model: "gpt-4o", RetryIn: 2 * time.Second})
	c.budgetExhausted()
	c.end(&Classification{}, 0, &CircuitOpenError{Host: "example.openai.azure.com:443", Model: "gpt-4o"}, nil, &secrets{req: req})

	calls := tel.spans("chat gpt-4o")
	if len(calls) != 1 {
		t.Fatalf("%d call spans, want 1", len(calls))
	}
	s := calls[0]
	wantAttrs(t, "call", s.Attributes(), map[string]string{
		"gen_ai.provider.name": "azure.ai.openai",
		"error.type":           "circuit_open",
		"llm.attempts":         "0",
	}, "llm.error.class")
	if s.Status().Code != codes.Error {
		t.Errorf("status = %v, want error", s.Status())
	}
	evs := s.Events()
	wantNames := []string{"cooldown wait", "circuit state change", "circuit rejected", "retry budget exhausted"}
	if len(evs) != len(wantNames) {
		t.Fatalf("%d events, want %d: %v", len(evs), len(wantNames), evs)
	}
	for i, n := range wantNames {
		if evs[i].Name != n {
			t.Errorf("event %d = %q, want %q", i, evs[i].Name, n)
		}
	}
	wantAttrs(t, "cooldown", evs[0].Attributes, map[string]string{"llm.cooldown.wait": "1.5"})
	wantAttrs(t, "state change", evs[1].Attributes, map[string]string{
		"llm.circuit.from": "closed", "llm.circuit.to": "open",
		"server.address": "example.openai.azure.com", "gen_ai.request.model": "gpt-4o",
	})
	wantAttrs(t, "rejected", evs[2].Attributes, map[string]string{"llm.circuit.retry_in": "2", "gen_ai.request.model": "gpt-4o"})

	rm := tel.collect(t)
	target := map[string]string{"server.address": "example.openai.azure.com", "gen_ai.request.model": "gpt-4o"}
	for _, c := range []struct {
		metric string
		want   float64
	}{
		{MetricCircuitState, float64(CircuitOpen)},
		{MetricCircuitRejected, 1},
		{MetricBudgetExhausted, 1},
		{MetricWait, 1},
	} {
		if got, n := sum(rm, c.metric, target); got != c.want || n != 1 {
			t.Errorf("%s = %v over %d points, want %v over 1", c.metric, got, n, c.want)
		}
	}
	if _, n := sum(rm, MetricAttempts, nil); n != 0 {
		t.Errorf("%d attempt points for a call that sent nothing, want 0", n)
	}
	if _, n := sum(rm, MetricWait, map[string]string{"llm.wait.source": "cooldown"}); n != 1 {
		t.Errorf("no cooldown wait recorded")
	}
	metricsHaveNoSecrets(t, rm)
	noSecrets(t, tel)
}

func TestTracingNoopSkipsWrapping(t *testing.T) {
	body := io.NopCloser(strings.NewReader("ok"))
	var sent *http.Request
	tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = r
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: body}, nil
	}), WithTracerProvider(noop.NewTracerProvider()), WithPropagators(propagation.TraceContext{}))

	// A caller's remote parent is still propagated, without touching the
	// caller's request.
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithRemoteSpanContext(t.Context(), parent)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://api.openai.com/v1/models", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Body != body {
		t.Errorf("body is %T, want the base transport's, unwrapped", resp.Body)
	}
	if got, want := sent.Header.Get("traceparent"), "00-01000000000000000000000000000000-0200000000000000-01"; got != want {
		t.Errorf("traceparent = %q, want %q", got, want)
	}
	if req.Header.Get("traceparent") != "" || sent == req {
		t.Errorf("the caller's request was modified or sent as is")
	}

	// Without a trace context nothing is injected and the request is sent
	// as is.
	req2, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://api.openai.com/v1/models", nil)
	if _, err := tr.RoundTrip(req2); err != nil {
		t.Fatal(err)
	}
	if sent != req2 {
		t.Errorf("a request with nothing to inject was copied")
	}
}

func TestTracingDefaultsToGlobals(t *testing.T) {
	tel := newTelemetry(t)
	oldTP, oldMP, oldProp := otel.GetTracerProvider(), otel.GetMeterProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tel.tp)
	otel.SetMeterProvider(tel.mp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	defer func() {
		otel.SetTracerProvider(oldTP)
		otel.SetMeterProvider(oldMP)
		otel.SetTextMapPropagator(oldProp)
	}()
	var parent string
	tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		parent = r.Header.Get("traceparent")
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}, nil
	}), WithTracerProvider(nil), WithMeterProvider(nil), WithPropagators(nil))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(tel.spans("generate_content gemini-2.5-pro")) != 1 || len(tel.spans("POST")) != 1 {
		t.Errorf("the global tracer provider did not get the spans")
	}
	if parent == "" {
		t.Errorf("the global propagator injected nothing")
	}
	if _, n := sum(tel.collect(t), MetricAttempts, map[string]string{"llm.error.class": "success"}); n != 1 {
		t.Errorf("the global meter provider did not get the attempt")
	}
}

// TestTracingGlobalSetAfterNew checks that a Transport made before the
// application installs its tracer provider records spans once it does:
// skipping spans while OTel's stand-in provider is the global must not
// outlive the stand-in. OTel's stand-in forwards only to the first provider
// ever set, and other tests set one, so the check runs in a fresh process.
func TestTracingGlobalSetAfterNew(t *testing.T) {
	if os.Getenv("LLMTRANSPORT_FRESH_GLOBALS") != "1" {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestTracingGlobalSetAfterNew$", "-test.count=1")
		cmd.Env = append(os.Environ(), "LLMTRANSPORT_FRESH_GLOBALS=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("in a fresh process: %v\n%s", err, out)
		}
		return
	}
	tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody}, nil
	}))
	send := func() {
		req, _ := http.NewRequestWithContext(ContextWithModel(t.Context(), "gpt-4o"), http.MethodPost, "https://api.openai.com/v1/chat/completions", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	send() // before any provider: no span, nowhere to go
	if !tr.tracer.spansOff() {
		t.Errorf("after a span that did nothing, spans are still started under OTel's stand-in")
	}
	tel := newTelemetry(t)
	otel.SetTracerProvider(tel.tp)
	send()
	if n := len(tel.spans("chat gpt-4o")); n != 1 {
		t.Errorf("got %d call spans after the global provider was set, want 1", n)
	}
}

// uncomparableTP is a tracer provider whose type cannot be compared.
type uncomparableTP struct {
	noop.TracerProvider
	_ []int
}

// TestTracingIdleProviderComparable: a global provider seen to start spans
// that do nothing is remembered only if it can be compared with the global
// later (comparing an uncomparable one would panic).
func TestTracingIdleProviderComparable(t *testing.T) {
	tr := &tracer{global: true}
	tr.sawIdle(uncomparableTP{})
	if tr.idle.Load() != nil {
		t.Errorf("an uncomparable provider was remembered")
	}
	tr.sawIdle(noop.NewTracerProvider())
	if p := tr.idle.Load(); p == nil || p.tp != trace.TracerProvider(noop.NewTracerProvider()) {
		t.Errorf("a no-op provider was not remembered: %v", p)
	}
}
