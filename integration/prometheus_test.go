package integration_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// TestPrometheusRecipe: the transport's metrics through OpenTelemetry's
// Prometheus exporter, as the README's recipe sets it up. The circuit
// gauge comes out as llm_client_circuit_state (no _ratio), the durations
// as histograms in seconds, with error.type on failure.
func TestPrometheusRecipe(t *testing.T) {
	// The recipe.
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	defer mp.Shutdown(context.Background())
	tr := llmtransport.New(nil, append(fast, llmtransport.WithMeterProvider(mp),
		llmtransport.WithMaxRetries(0), llmtransport.WithBreakerThreshold(0.5, 2))...)
	metricsPage := promhttp.HandlerFor(reg, promhttp.HandlerOpts{}) // serve it on /metrics

	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("dead",
		always(llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel"))))
	defer gw.Close()
	client := &http.Client{Transport: tr}
	for _, model := range []string{"ok", "dead", "dead", "dead"} {
		resp, err := client.Post(gw.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}

	rec := httptest.NewRecorder()
	metricsPage.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	page := rec.Body.String()
	for _, want := range []string{
		`llm_client_circuit_state{`,
		`gen_ai_client_operation_duration_seconds_bucket{`,
		`error_type="upstream_transient"`,
		`error_type="circuit_open"`,
		`http_client_request_duration_seconds_count{`,
		`llm_client_attempts_total{`,
		`llm_client_circuit_rejected_total{`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the metrics page has no %s", want)
		}
	}
	if strings.Contains(page, "circuit_state_ratio") {
		t.Error("the circuit gauge has the _ratio suffix")
	}
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, "llm_client_circuit_state{") && !strings.Contains(line, `gen_ai_request_model="dead"`) {
			t.Errorf("a circuit gauge of another model: %s", line)
		}
		if strings.HasPrefix(line, "llm_client_circuit_state{") && !strings.HasSuffix(line, " 2") {
			t.Errorf("the dead model's circuit is not open (2): %s", line)
		}
	}
	if t.Failed() {
		t.Log(page)
	}
}
