package llmtransport

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// discardExporter drops every span, so that the benchmark measures the
// instrumentation and the SDK, not an exporter.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// okBase answers every request with a small 200, in memory.
var okBase = roundTripFunc(func(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: 200,
		Header:     http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"req_1"}},
		Body:       io.NopCloser(strings.NewReader(`{"id":"chatcmpl-1"}`)),
	}, nil
})

// BenchmarkTracingOverhead measures the success path through New: the base
// transport alone, the transport with no-op telemetry (the default when the
// application sets no providers), and with an SDK that samples and records
// everything (batch span processor with a discarding exporter, and a meter
// provider with a manual reader).
func BenchmarkTracingOverhead(b *testing.B) {
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(discardExporter{}),
	)
	defer tp.Shutdown(context.Background())
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer mp.Shutdown(context.Background())

	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"base", okBase},
		{"global", New(okBase)},
		{"noop", New(okBase, WithTracerProvider(noop.NewTracerProvider()), WithMeterProvider(metricnoop.NewMeterProvider()))},
		{"noop+propagator", New(okBase, WithTracerProvider(noop.NewTracerProvider()), WithMeterProvider(metricnoop.NewMeterProvider()),
			WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})))},
		{"sdk", New(okBase, WithTracerProvider(tp), WithMeterProvider(mp), WithPropagators(propagation.TraceContext{}))},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := ContextWithModel(context.Background(), "gpt-4o")
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://api.openai.com/v1/chat/completions", nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
