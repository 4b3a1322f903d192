package llmtransport

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestDurationMetrics: a call retried once records one
// gen_ai.client.operation.duration point and one
// http.client.request.duration point per attempt, with the conventions'
// attributes; a call that fails carries error.type.
func TestDurationMetrics(t *testing.T) {
	tel := newTelemetry(t)
	f := &fakeRT{respond: func(i int, r *http.Request) (*http.Response, error) {
		if i == 0 || r.Header.Get("X-Fail") != "" {
			return response(503, busy503), nil
		}
		return response(200, `{"ok":true}`), nil
	}}
	tr := New(f, tel.options(WithoutCircuitBreaker(), WithMaxRetries(1))...)
	resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test:8080/v1/chat/completions"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req := newChatRequest(t, t.Context(), "http://gw.test:8080/v1/chat/completions")
	req.Header.Set("X-Fail", "1")
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	rm := tel.collect(t)
	ok := map[string]string{"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "server.address": "gw.test"}
	if n, p := sum(rm, MetricOperationDuration, ok); n != 2 || p != 2 {
		t.Errorf("%s: %v calls in %d points, want 2 in 2 (one ok, one failed)", MetricOperationDuration, n, p)
	}
	failed := map[string]string{"error.type": "upstream_transient"}
	if n, _ := sum(rm, MetricOperationDuration, failed); n != 1 {
		t.Errorf("%s with error.type upstream_transient: %v calls, want 1", MetricOperationDuration, n)
	}
	if n, _ := sum(rm, MetricRequestDuration, map[string]string{"http.request.method": "POST", "server.address": "gw.test", "server.port": "8080", "http.response.status_code": "503", "error.type": "503"}); n != 3 {
		t.Errorf("%s of the 503s: %v, want 3", MetricRequestDuration, n)
	}
	if n, _ := sum(rm, MetricRequestDuration, map[string]string{"http.response.status_code": "200"}); n != 1 {
		t.Errorf("%s of the 200: %v, want 1", MetricRequestDuration, n)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case MetricOperationDuration, MetricRequestDuration:
				h, isHist := m.Data.(metricdata.Histogram[float64])
				if m.Unit != "s" || !isHist || len(h.DataPoints) == 0 || len(h.DataPoints[0].Bounds) != len(durationBuckets) {
					t.Errorf("%s: unit %q, data %T, want a histogram in s with the GenAI buckets", m.Name, m.Unit, m.Data)
				}
				for _, p := range h.DataPoints {
					if _, has := p.Attributes.Value("error.type"); has && m.Name == MetricOperationDuration {
						if v, _ := p.Attributes.Value("gen_ai.response.model"); v.AsString() != "" {
							t.Errorf("a failed call carries gen_ai.response.model %q", v.AsString())
						}
					}
				}
			case MetricCircuitState:
				if m.Unit != "{state}" {
					t.Errorf("%s: unit %q, want {state} (no Prometheus suffix)", m.Name, m.Unit)
				}
			}
		}
	}
}

// TestDurationMetricsFallback: a call a fallback target answered records
// the model asked for and the one that answered.
func TestDurationMetricsFallback(t *testing.T) {
	tel := newTelemetry(t)
	f := &fakeRT{respond: func(_ int, r *http.Request) (*http.Response, error) {
		rc, _ := r.GetBody()
		b, _ := io.ReadAll(rc)
		if strings.Contains(string(b), `"model":"b"`) {
			return response(200, `{"ok":true}`), nil
		}
		return response(503, busy503), nil
	}}
	tr := New(f, tel.options(fbOptions(WithoutCircuitBreaker(), WithMaxRetries(0))...)...)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://gw.test/v1/chat/completions", strings.NewReader(`{"model":"a"}`))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rm := tel.collect(t)
	if n, _ := sum(rm, MetricOperationDuration, map[string]string{"gen_ai.request.model": "a", "gen_ai.response.model": "b"}); n != 1 {
		t.Errorf("%s with the model asked for and the one that answered: %v, want 1", MetricOperationDuration, n)
	}
}
