package llmtransport

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// The metrics a [Transport] records with the meter of [WithMeterProvider].
// Their attributes are server.address (the host name), gen_ai.request.model
// (when known) and, where it applies, llm.error.class, llm.retry.reason and
// llm.wait.source; the two duration histograms of the OpenTelemetry
// conventions have theirs (below: the operation, method, port, status code,
// error.type, never a URL or an ID), so that the cardinality of every
// metric is bounded by the hosts and models the application uses.
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
	// once; and llm.pacing.source: "local" (this transport's pacing) or
	// "fleet" (the fleet's limiter, [SharedLimiter]).
	MetricPacingWait = "llm.client.pacing.wait.duration"
	// MetricOperationDuration is the OpenTelemetry GenAI histogram of the
	// calls' durations (in seconds), from the call's start until the
	// transport hands its response back (of a stream: its first event) or
	// its error, retries, waits and fallbacks included. Its attributes are
	// gen_ai.operation.name, gen_ai.request.model (the model asked for),
	// gen_ai.response.model (when a fallback target answered),
	// server.address and, when the call did not succeed, error.type: the
	// class of its last attempt ("rate_limited", "quota_exhausted"…),
	// "circuit_open", "canceled" (the caller's), or "_OTHER".
	MetricOperationDuration = "gen_ai.client.operation.duration"
	// MetricRequestDuration is the OpenTelemetry HTTP histogram of the
	// attempts' durations (in seconds), from the attempt's start until its
	// response headers came (and what of the body the transport looks
	// at: an error body, a stream's first event). Its attributes are
	// http.request.method, server.address, server.port,
	// http.response.status_code when a response came, and error.type: the
	// status code of a response ≥ 400, the class of an error inside a 2xx
	// body or of a transport error.
	MetricRequestDuration = "http.client.request.duration"
)

// durationBuckets are the explicit bucket boundaries (seconds) the GenAI
// conventions advise for gen_ai.client.operation.duration; the attempts
// of LLM calls last as long, so http.client.request.duration uses them
// too rather than the HTTP conventions' (which end at 10 s).
var durationBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}

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
	opDuration      metric.Float64Histogram
	reqDuration     metric.Float64Histogram
}

func newMetrics(m metric.Meter) metrics {
	var ms metrics
	var errs [11]error
	ms.attempts, errs[0] = m.Int64Counter(MetricAttempts, metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts sent, by class of their outcome."))
	ms.retries, errs[1] = m.Int64Counter(MetricRetries, metric.WithUnit("{retry}"),
		metric.WithDescription("Retries scheduled, by class of the failed attempt and reason."))
	ms.wait, errs[2] = m.Float64Histogram(MetricWait, metric.WithUnit("s"),
		metric.WithDescription("Waits before retries and for rate-limit cooldowns."),
		metric.WithExplicitBucketBoundaries(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 120))
	ms.budgetExhausted, errs[3] = m.Int64Counter(MetricBudgetExhausted, metric.WithUnit("{retry}"),
		metric.WithDescription("Retries refused by the retry budget."))
	// The unit is a word in braces, as for a count, so that the
	// Prometheus exporter adds no suffix ("1" turns into "_ratio").
	ms.circuitState, errs[4] = m.Int64Gauge(MetricCircuitState, metric.WithUnit("{state}"),
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
	ms.opDuration, errs[9] = m.Float64Histogram(MetricOperationDuration, metric.WithUnit("s"),
		metric.WithDescription("GenAI operation duration."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	ms.reqDuration, errs[10] = m.Float64Histogram(MetricRequestDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP client requests."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
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

func (m *metrics) paced(ctx context.Context, host, model string, d time.Duration, waited, fleet bool) {
	if m.pacingWait == nil || !m.pacingWait.Enabled(ctx) {
		return
	}
	m.pacingWait.Record(ctx, d.Seconds(), metric.WithAttributes(append(target(host, model), keyPacingWaited.Bool(waited), pacingSource(fleet))...))
}

// timing reports whether h records: then, and only then, is a start time
// taken.
func timing(ctx context.Context, h metric.Float64Histogram) bool {
	return h != nil && h.Enabled(ctx)
}

// operation records the duration of a call that started at start.
func (m *metrics) operation(ctx context.Context, start time.Time, op, host, requested, answered, errType string) {
	kv := make([]attribute.KeyValue, 0, 6)
	kv = append(kv, keyOperation.String(op), keyServerAddress.String(hostName(host)))
	if requested != "" {
		kv = append(kv, keyRequestModel.String(requested))
	}
	if answered != requested {
		kv = append(kv, keyResponseModel.String(answered))
	}
	if errType != "" {
		kv = append(kv, keyErrorType.String(errType))
	}
	m.opDuration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(kv...))
}

// request records the duration of an attempt a that started at start.
func (m *metrics) request(ctx context.Context, start time.Time, req *http.Request, a *attemptResult) {
	addr, port := serverAddrPort(req.URL)
	method, _ := normalizeMethod(req.Method)
	kv := make([]attribute.KeyValue, 0, 5)
	kv = append(kv, keyMethod.String(method), keyServerAddress.String(addr), keyServerPort.Int(port))
	switch {
	case a.err != nil || a.resp == nil:
		kv = append(kv, keyErrorType.String(a.cl.Class.String()))
	case a.resp.StatusCode >= 400 || a.resp.StatusCode < 100:
		kv = append(kv, keyStatusCode.Int(a.resp.StatusCode), keyErrorType.String(strconv.Itoa(a.resp.StatusCode)))
	case a.cl.Class != ClassSuccess:
		kv = append(kv, keyStatusCode.Int(a.resp.StatusCode), keyErrorType.String(a.cl.Class.String()))
	default:
		kv = append(kv, keyStatusCode.Int(a.resp.StatusCode))
	}
	m.reqDuration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(kv...))
}
