package llmtransport

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// The metrics a [Transport] records with the meter of [WithMeterProvider].
// Their attributes are server.address (the host name), gen_ai.request.model
// (when known) and, where it applies, llm.error.class, llm.retry.reason and
// llm.wait.source — never anything else, so their cardinality is bounded by
// the hosts and models the application uses.
const (
	// MetricAttempts counts attempts sent, by host, model and class.
	MetricAttempts = "llm.client.attempts"
	// MetricRetries counts retries scheduled, by host, model, class of the
	// failed attempt and reason.
	MetricRetries = "llm.client.retries"
	// MetricWait is a histogram of the waits (in seconds) before retries
	// and for cooldowns, by host, model and where the wait came from
	// ("backoff", a header name such as "retry-after", or "cooldown").
	MetricWait = "llm.client.wait.duration"
	// MetricBudgetExhausted counts retries refused by the retry budget.
	MetricBudgetExhausted = "llm.client.retry.budget_exhausted"
	// MetricCircuitState is a gauge of the state of each circuit, by host
	// and model: 0 closed, 1 half-open, 2 open. It is recorded when the
	// state changes.
	MetricCircuitState = "llm.client.circuit.state"
	// MetricCircuitRejected counts requests refused by an open circuit, by
	// host and model.
	MetricCircuitRejected = "llm.client.circuit.rejected"
	// MetricStreamErrors counts event streams that failed after their
	// first event reached the caller (an error event, a finish reason
	// content_filter or error, no finish reason at the end), by host,
	// model and class. The call's attempts are counted in MetricAttempts
	// as they were classified when the stream started.
	MetricStreamErrors = "llm.client.stream.errors"
	// MetricPacingWait is a histogram of the waits (in seconds) pacing
	// ([WithPacing]) asked for before attempts, by host, model and
	// llm.pacing.waited: true when the attempt waited, false when the wait
	// was past [WithMaxRetryWait] or the deadline and the attempt went at
	// once.
	MetricPacingWait = "llm.client.pacing.wait.duration"
)

const (
	keyRetryReason = attribute.Key("llm.retry.reason")
	keyWaitSource  = attribute.Key("llm.wait.source")
)

// metrics holds the instruments. Every method checks that its instrument is
// enabled before building attributes, so that without a meter provider
// they cost one call each.
type metrics struct {
	attempts        metric.Int64Counter
	retries         metric.Int64Counter
	wait            metric.Float64Histogram
	budgetExhausted metric.Int64Counter
	circuitState    metric.Int64Gauge
	rejected        metric.Int64Counter
	streamErrors    metric.Int64Counter
	fallbacks       metric.Int64Counter // MetricFallbacks (fallback.go)
	pacingWait      metric.Float64Histogram
}

func newMetrics(m metric.Meter) metrics {
	var ms metrics
	var errs [9]error
	ms.attempts, errs[0] = m.Int64Counter(MetricAttempts, metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts sent, by class of their outcome."))
	ms.retries, errs[1] = m.Int64Counter(MetricRetries, metric.WithUnit("{retry}"),
		metric.WithDescription("Retries scheduled, by class of the failed attempt and reason."))
	ms.wait, errs[2] = m.Float64Histogram(MetricWait, metric.WithUnit("s"),
		metric.WithDescription("Waits before retries and for rate-limit cooldowns."),
		metric.WithExplicitBucketBoundaries(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 120))
	ms.budgetExhausted, errs[3] = m.Int64Counter(MetricBudgetExhausted, metric.WithUnit("{retry}"),
		metric.WithDescription("Retries refused by the retry budget."))
	ms.circuitState, errs[4] = m.Int64Gauge(MetricCircuitState, metric.WithUnit("1"),
		metric.WithDescription("Circuit state per host and model: 0 closed, 1 half-open, 2 open."))
	ms.rejected, errs[5] = m.Int64Counter(MetricCircuitRejected, metric.WithUnit("{request}"),
		metric.WithDescription("Requests refused by an open circuit."))
	ms.streamErrors, errs[6] = m.Int64Counter(MetricStreamErrors, metric.WithUnit("{stream}"),
		metric.WithDescription("Event streams that failed after their first event, by class."))
	ms.fallbacks, errs[7] = m.Int64Counter(MetricFallbacks, metric.WithUnit("{fallback}"),
		metric.WithDescription("Steps down fallback chains, by model left, target and reason."))
	ms.pacingWait, errs[8] = m.Float64Histogram(MetricPacingWait, metric.WithUnit("s"),
		metric.WithDescription("Waits pacing asked for before attempts, waited or not."),
		metric.WithExplicitBucketBoundaries(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 120))
	if err := errors.Join(errs[:]...); err != nil {
		otel.Handle(err)
	}
	return ms
}

// target returns the attributes naming a circuit: host (with or without
// port) and model.
func target(host, model string) []attribute.KeyValue {
	kv := make([]attribute.KeyValue, 0, 4)
	kv = append(kv, keyServerAddress.String(hostName(host)))
	if model != "" {
		kv = append(kv, keyRequestModel.String(model))
	}
	return kv
}

func (m *metrics) attempt(ctx context.Context, host, model string, c Class) {
	if m.attempts == nil || !m.attempts.Enabled(ctx) {
		return
	}
	m.attempts.Add(ctx, 1, metric.WithAttributes(append(target(host, model), keyClass.String(c.String()))...))
}

func (m *metrics) retry(ctx context.Context, ev *RetryEvent) {
	if m.retries != nil && m.retries.Enabled(ctx) {
		m.retries.Add(ctx, 1, metric.WithAttributes(append(target(ev.Host, ev.Model),
			keyClass.String(ev.Classification.Class.String()), keyRetryReason.String(ev.Reason))...))
	}
	m.waited(ctx, ev.Host, ev.Model, ev.Wait, ev.WaitSource)
}

func (m *metrics) waited(ctx context.Context, host, model string, d time.Duration, source string) {
	if m.wait == nil || !m.wait.Enabled(ctx) {
		return
	}
	m.wait.Record(ctx, d.Seconds(), metric.WithAttributes(append(target(host, model), keyWaitSource.String(source))...))
}

func (m *metrics) budget(ctx context.Context, host, model string) {
	if m.budgetExhausted == nil || !m.budgetExhausted.Enabled(ctx) {
		return
	}
	m.budgetExhausted.Add(ctx, 1, metric.WithAttributes(target(host, model)...))
}

func (m *metrics) circuit(ctx context.Context, ch CircuitStateChange) {
	if m.circuitState == nil || !m.circuitState.Enabled(ctx) {
		return
	}
	m.circuitState.Record(ctx, int64(ch.To), metric.WithAttributes(target(ch.Host, ch.Model)...))
}

func (m *metrics) reject(ctx context.Context, host, model string) {
	if m.rejected == nil || !m.rejected.Enabled(ctx) {
		return
	}
	m.rejected.Add(ctx, 1, metric.WithAttributes(target(host, model)...))
}

func (m *metrics) streamError(ctx context.Context, host, model string, c Class) {
	if m.streamErrors == nil || !m.streamErrors.Enabled(ctx) {
		return
	}
	m.streamErrors.Add(ctx, 1, metric.WithAttributes(append(target(host, model), keyClass.String(c.String()))...))
}

func (m *metrics) paced(ctx context.Context, host, model string, d time.Duration, waited bool) {
	if m.pacingWait == nil || !m.pacingWait.Enabled(ctx) {
		return
	}
	m.pacingWait.Record(ctx, d.Seconds(), metric.WithAttributes(append(target(host, model), keyPacingWaited.Bool(waited))...))
}
