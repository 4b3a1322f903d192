package redisstate

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// The metrics a [State] records with the meter of [WithMeterProvider].
// Their attributes are llm.shared.kind ("cooldown", "open", "release"),
// llm.shared.outcome, llm.shared.source, llm.shared.reason and
// llm.shared.op as said below: all from small fixed sets.
const (
	// MetricPublished counts holds written to Redis, by kind and outcome:
	// "stored" (written and published) or "kept" (a longer hold was
	// already there: nothing written, nothing published).
	MetricPublished = "llm.client.shared.published"
	// MetricReceived counts holds delivered to a subscriber, by kind and
	// source: "push" (a message) or "backfill" (read at a (re)subscription).
	MetricReceived = "llm.client.shared.received"
	// MetricDropped counts holds that never reached Redis, by reason:
	// "queue_full", "unavailable" (Redis failed within the last second),
	// "error" (the write failed), "closed" (Publish after Close),
	// "invalid" (no kind, no TTL, oversized names) or "expired" (the hold
	// ended while queued).
	MetricDropped = "llm.client.shared.dropped"
	// MetricErrors counts failed or timed-out Redis operations, by op:
	// "publish", "lease", "subscribe", "backfill", "ping", "reserve".
	MetricErrors = "llm.client.shared.errors"
	// MetricReserves counts the limiter's reserves (WithLimiter), by
	// outcome: "allowed" (Redis counted the request), "denied" (Redis
	// answered a wait), "cached" (a wait answered from the negative cache,
	// without a round trip), and the fail-open outcomes, which let the
	// request go uncounted: "error" (the Redis call failed or timed out;
	// also counted in MetricErrors, op "reserve"), "unavailable" (within
	// DefaultPauseAfterError of such a failure: no round trip) and "busy"
	// (too many calls in flight).
	MetricReserves = "llm.client.shared.reserves"
	// MetricLag is a histogram of the propagation lag (in seconds) of a
	// pushed hold, from its Publish call to its receipt. It compares the
	// publisher's clock with the receiver's: exact within one host, skewed
	// by their clock difference across hosts (negative values count as 0).
	// No TTL ever depends on it.
	MetricLag = "llm.client.shared.lag"
)

const (
	keyKind    = attribute.Key("llm.shared.kind")
	keyOutcome = attribute.Key("llm.shared.outcome")
	keySource  = attribute.Key("llm.shared.source")
	keyReason  = attribute.Key("llm.shared.reason")
	keyOp      = attribute.Key("llm.shared.op")
)

type metrics struct {
	published metric.Int64Counter
	received  metric.Int64Counter
	dropped   metric.Int64Counter
	errors    metric.Int64Counter
	lag       metric.Float64Histogram
	reserves  metric.Int64Counter
}

func newMetrics(m metric.Meter) (metrics, error) {
	var ms metrics
	var errs [6]error
	ms.published, errs[0] = m.Int64Counter(MetricPublished, metric.WithUnit("{hold}"),
		metric.WithDescription("Holds written to the shared store, by kind and outcome."))
	ms.received, errs[1] = m.Int64Counter(MetricReceived, metric.WithUnit("{hold}"),
		metric.WithDescription("Holds received from the shared store, by kind and source."))
	ms.dropped, errs[2] = m.Int64Counter(MetricDropped, metric.WithUnit("{hold}"),
		metric.WithDescription("Holds not written to the shared store, by reason."))
	ms.errors, errs[3] = m.Int64Counter(MetricErrors, metric.WithUnit("{error}"),
		metric.WithDescription("Failed or timed-out shared-store operations, by operation."))
	ms.lag, errs[4] = m.Float64Histogram(MetricLag, metric.WithUnit("s"),
		metric.WithDescription("Propagation lag of pushed holds, from Publish to receipt."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
	ms.reserves, errs[5] = m.Int64Counter(MetricReserves, metric.WithUnit("{reserve}"),
		metric.WithDescription("Reserves of the shared rate limiter, by outcome."))
	return ms, errors.Join(errs[:]...)
}

func (m *metrics) count(c metric.Int64Counter, kv ...attribute.KeyValue) {
	if c == nil || !c.Enabled(context.Background()) {
		return
	}
	c.Add(context.Background(), 1, metric.WithAttributes(kv...))
}

func (m *metrics) recordLag(d time.Duration) {
	if m.lag == nil || !m.lag.Enabled(context.Background()) {
		return
	}
	m.lag.Record(context.Background(), max(d, 0).Seconds())
}
