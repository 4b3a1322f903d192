package llmtransport

import (
	"context"
	"time"

	"github.com/llmtransport/llmtransport/internal/circuit"
)

// Defaults of the circuit breaker options.
//
// Every (host, model) pair the transport sends requests to has its own
// circuit, so that one failing model fails fast while every other model
// behind the same gateway keeps working. The model is read from the request
// (see [ContextWithModel]); requests without one share a per-host circuit.
//
// What a circuit judges is calls, not attempts: the outcome of a call is
// known once its retries are over. A call that ends in a success is a
// success, however many of its attempts failed: a model whose failures the
// retries rescue is healthy. A call that ends on a failure of the model
// (overloaded, upstream_transient, timeout, model_not_found, unknown, or a
// transport error that says the server or the path to it failed) is a
// failure. Every other ending says nothing about the model and counts as
// neither: the caller's own errors (invalid_request, auth, permission,
// context_length, content_filtered, quota_exhausted), rate limits (which the
// cooldowns handle), and the caller's cancellations and deadlines, at any
// point of the call. The outcome is known once the response headers (and,
// for an error or an event stream, the peeked start of the body) are in, so
// a response whose body the caller never reads still reports it.
//
// Calls still in flight count too, as calls that have not failed: a closed
// circuit opens when at least [DefaultBreakerMinFailures] (3) calls failed
// in the last [DefaultBreakerWindow] (30 s, rolling in tenths) and they are
// at least [DefaultBreakerFailureRatio] (50 %) of the calls that succeeded,
// failed or are still in flight. Fast failures come back before slow
// successes; counting the calls in flight keeps a wave of 200 calls whose
// first six answers are quick 503s from looking like a dead model (6 of 200
// is 3 %, not 6 of 6), while a model that fails every call is cut off after
// three calls in a row at one call at a time (12 attempts with the default
// retries) and within the first wave of attempts of 200 concurrent calls.
//
// An open circuit refuses requests at once, with a [*CircuitOpenError], for
// [DefaultBreakerOpenTimeout] (10 s) or for the longest wait the server
// asked for (Retry-After and the like) with the failures that opened it or
// arrived while it was open, whichever is longer. Then it is half-open: it
// lets [DefaultBreakerProbes] (1) attempt through as a probe; a successful
// probe closes it, a failed one opens it again, and a probe whose outcome
// says nothing (a cancellation) frees its place for the next.
//
// Circuits are created on first use and cost about 700 bytes each. Closed
// circuits unused for 10 minutes or more are dropped when a new circuit is
// created; at most 10,000 circuits are kept, and requests for further
// models go through without a circuit.
const (
	DefaultBreakerFailureRatio = 0.5
	DefaultBreakerMinFailures  = 3
	DefaultBreakerWindow       = 30 * time.Second
	DefaultBreakerOpenTimeout  = 10 * time.Second
	DefaultBreakerProbes       = 1
)

// circuitKey names one circuit: the host the request goes to and the model it
// asks for ("" for a per-host circuit).
type circuitKey struct {
	host, model string
}

// circuit returns k as internal/circuit names it.
func (k circuitKey) circuit() circuit.Key { return circuit.Key{Host: k.host, Model: k.model} }

// outcome is what an attempt, or a call, means to its circuit. Its values
// are internal/circuit's, so that it converts as it is.
type outcome uint8

const (
	outcomeSuccess  = outcome(circuit.Success)  // the model answered
	outcomeFailure  = outcome(circuit.Failure)  // the model (or the path to it) is failing
	outcomeExcluded = outcome(circuit.Excluded) // says nothing about the model's health
)

// CircuitState is the state of one circuit.
type CircuitState uint8

// The circuit states.
const (
	CircuitClosed   CircuitState = iota // requests flow
	CircuitHalfOpen                     // a bounded number of probes flow
	CircuitOpen                         // requests fail fast with ErrCircuitOpen
)

// String returns "closed", "half-open" or "open".
func (s CircuitState) String() string {
	switch s {
	case CircuitClosed:
		return "closed"
	case CircuitHalfOpen:
		return "half-open"
	case CircuitOpen:
		return "open"
	}
	return "unknown"
}

// CircuitStateChange describes one circuit changing state.
type CircuitStateChange struct {
	// Host and Model name the circuit. Model is "" for a per-host circuit.
	Host, Model string
	// From and To are the states before and after the change.
	From, To CircuitState
}

// CircuitStatus is a snapshot of one circuit, as returned by
// [Transport.Circuits].
type CircuitStatus struct {
	// Host and Model name the circuit. Model is "" for a per-host circuit.
	Host, Model string
	// State is the circuit's state. An open circuit whose open period has
	// passed is reported half-open: the next request will be a probe.
	State CircuitState
	// RetryIn is, for an open circuit, how long until it lets the next probe
	// through; 0 otherwise.
	RetryIn time.Duration
	// The counts of the current state: for a closed circuit, the calls that
	// ended over the rolling window, now; for a half-open one, the probes
	// since it became half-open. Requests counts, for a closed circuit, the
	// calls whose outcome is in, and for a half-open one the admitted probes,
	// including those still in flight; Excluded counts outcomes that were
	// neither success nor failure.
	Requests, Successes, Failures, Excluded uint32
	// InFlight is, for a closed circuit, the number of calls it admitted
	// whose outcome is not in yet.
	InFlight uint32
}

// breakerConfig holds the circuit breaker options.
type breakerConfig struct {
	disabled bool

	ratio       float64       // trip at this failure ratio; 0: never
	minFailures int           // ... once this many calls failed in the window
	window      time.Duration // the rolling window of the counts
	openTimeout time.Duration // the shortest open period
	probes      int           // requests let through while half-open

	// observers are called, outside every lock, on the goroutine of the
	// request whose outcome changed the state, with that request's context.
	observers []func(context.Context, CircuitStateChange)
}

func defaultBreakerConfig() breakerConfig {
	return breakerConfig{
		ratio:       DefaultBreakerFailureRatio,
		minFailures: DefaultBreakerMinFailures,
		window:      DefaultBreakerWindow,
		openTimeout: DefaultBreakerOpenTimeout,
		probes:      DefaultBreakerProbes,
	}
}

// WithBreakerThreshold sets when a closed circuit opens: once at least
// minFailures calls failed within the window (see [WithBreakerWindow]) and
// the failures are at least the fraction ratio of the calls that succeeded,
// failed or are still in flight. ratio ≤ 0 means never (a ratio above 1 is
// treated as 1); minFailures < 1 counts as 1. The defaults are
// [DefaultBreakerFailureRatio] (0.5) and [DefaultBreakerMinFailures] (3).
func WithBreakerThreshold(ratio float64, minFailures int) Option {
	return func(c *config) {
		c.breaker.ratio = min(max(ratio, 0), 1)
		c.breaker.minFailures = max(minFailures, 1)
	}
}

// WithBreakerWindow sets the rolling window over which a closed circuit
// counts the outcomes of calls; it rolls in tenths. The default is
// [DefaultBreakerWindow] (30 s). Values ≤ 0 are ignored.
func WithBreakerWindow(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.breaker.window = d
		}
	}
}

// WithBreakerOpenTimeout sets how long an open circuit refuses requests
// before it lets a probe through. A server's wait hint on the failure that
// opened the circuit lengthens the period, never shortens it. The default is
// [DefaultBreakerOpenTimeout] (10 s). Values ≤ 0 are ignored.
func WithBreakerOpenTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.breaker.openTimeout = d
		}
	}
}

// WithBreakerProbes sets how many requests a half-open circuit lets
// through; it closes once that many succeed in a row, and opens again at the
// first failure. The default is [DefaultBreakerProbes] (1). Values < 1 are
// ignored.
func WithBreakerProbes(n int) Option {
	return func(c *config) {
		if n >= 1 {
			c.breaker.probes = n
		}
	}
}

// WithOnCircuitStateChange adds a function called whenever a circuit
// changes state. It is called outside every lock, on the goroutine of a
// request that reached the circuit (normally the one whose outcome or
// arrival caused the change), so it may call back into the transport, for
// instance [Transport.Circuits]; it should not block, as that request waits
// for it. The changes of one circuit are reported in order, one at a time.
// Several calls add several functions; a nil f is ignored. The default is
// none.
func WithOnCircuitStateChange(f func(CircuitStateChange)) Option {
	return func(c *config) {
		if f != nil {
			c.breaker.observers = append(c.breaker.observers, func(_ context.Context, ch CircuitStateChange) { f(ch) })
		}
	}
}

// Circuits returns a snapshot of every circuit of the transport, sorted by
// host and model, for dashboards and tests. It returns nil when the circuit
// breaker is off ([WithoutCircuitBreaker]). It is safe to call at any time,
// including from a [WithOnCircuitStateChange] function.
func (t *Transport) Circuits() []CircuitStatus {
	snap := t.circuits.Snapshot()
	if snap == nil {
		return nil
	}
	out := make([]CircuitStatus, len(snap))
	for i, s := range snap {
		out[i] = CircuitStatus{
			Host: s.Key.Host, Model: s.Key.Model, State: circuitState(s.State), RetryIn: s.RetryIn,
			Requests: s.Requests, Successes: s.Successes, Failures: s.Failures, Excluded: s.Excluded,
			InFlight: s.InFlight,
		}
	}
	return out
}

// newCircuits returns the registry of the circuits cfg describes, or nil
// (no circuits: every attempt goes) when the breaker is off.
func newCircuits(cfg breakerConfig) *circuit.Registry {
	if cfg.disabled {
		return nil
	}
	return circuit.New(circuit.Config{
		Ratio:       cfg.ratio,
		MinFailures: cfg.minFailures,
		Window:      cfg.window,
		OpenTimeout: cfg.openTimeout,
		Probes:      cfg.probes,
	})
}

// circuitState returns s as the transport reports it.
func circuitState(s circuit.State) CircuitState {
	switch s {
	case circuit.Open:
		return CircuitOpen
	case circuit.HalfOpen:
		return CircuitHalfOpen
	}
	return CircuitClosed
}

// stateChange returns ch as the transport reports it.
func stateChange(ch circuit.Change) CircuitStateChange {
	return CircuitStateChange{Host: ch.Key.Host, Model: ch.Key.Model, From: circuitState(ch.From), To: circuitState(ch.To)}
}

// admit asks the call's circuit whether its next attempt may go, and
// reports the state changes that found (a change to half-open, before its
// probe goes out). It returns the refusal when the attempt may not go.
func (c *call) admit() *CircuitOpenError {
	ch, err := c.t.circuits.Admit(&c.circ, c.key.circuit())
	c.t.reportCircuit(c.ctx, c.trace.st, ch)
	if err != nil {
		oe := err.(*circuit.OpenError)
		return &CircuitOpenError{Host: oe.Key.Host, Model: oe.Key.Model, RetryIn: oe.RetryIn}
	}
	return nil
}

// attempted reports the outcome of the attempt a, which admit admitted, to
// the call's circuit: a half-open circuit's probe is counted at once.
func (c *call) attempted(a *attemptResult) {
	c.t.reportCircuit(c.ctx, c.trace.st, c.circ.Attempted(circuit.Outcome(a.out), a.cl.RetryAfter))
}

// settle records the call's outcome in its circuit once its retries are
// over: the outcome of its last attempt with the server's wait hint on it.
func (c *call) settle() {
	c.t.reportCircuit(c.ctx, c.trace.st, c.circ.Done(circuit.Outcome(c.out), c.hint))
}

// abandon ends the call's standing with its circuit if a panic cut the
// call short (see circuit.Ticket.Abandon): deferred by roundTrip.
func (c *call) abandon() {
	c.t.reportCircuit(context.Background(), nil, c.circ.Abandon())
}

// reportCircuit reports the state changes ch holds, with no lock held: on
// the span cs of the call that reports them (nil: none), in the metrics,
// and to the observers ([WithOnCircuitStateChange]), with ctx.
func (t *Transport) reportCircuit(ctx context.Context, cs *callSpan, ch circuit.Changes) {
	ch.Report(func(cc circuit.Change) {
		sc := stateChange(cc)
		for _, o := range t.cfg.breaker.observers {
			o(ctx, sc)
		}
		t.tracer.circuitChanged(ctx, cs, sc)
	})
}
