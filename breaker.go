package llmtransport

import (
	"context"
	"time"

	"github.com/llmtransport/llmtransport/internal/circuit"
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
	// ended over the rolling window ([WithBreakerWindow]), now; for an open
	// one, the same window, which holds the calls that opened it until
	// they age out (a circuit open longer than the window shows 0s: the
	// calls it refuses are not counted here but in the
	// llm.client.circuit.rejected metric); for a half-open one, the probes
	// since it became half-open. Requests counts, for a closed or open
	// circuit, the calls whose outcome is in, and for a half-open one the
	// admitted probes, including those still in flight; Excluded counts
	// outcomes that were neither success nor failure.
	Requests, Successes, Failures, Excluded uint32
	// InFlight is, for a closed or open circuit, the number of calls it
	// admitted (while closed) whose outcome is not in yet.
	InFlight uint32
	// Fleet is set while a hold of the fleet ([WithSharedState]) is on the
	// circuit: State and RetryIn then come from the hold (open until its
	// end, then half-open while the fleet's probe is decided or out),
	// whatever the counts say. nil otherwise.
	Fleet *FleetHold
}

// FleetHold describes the hold of the fleet on a circuit
// ([CircuitStatus.Fleet]).
type FleetHold struct {
	// Remote is true when another process of the fleet set the hold; false
	// when this process did, publishing its own circuit's opening (it then
	// waits for the fleet's probe lease like the others).
	Remote bool
	// Reason is the class of the failure that caused it ("overloaded",
	// "model_not_found"…).
	Reason string
	// Until is when the hold ends, on this process's clock (jitter
	// included); zero once it has ended and the fleet's probe is being
	// decided or is out.
	Until time.Time
}

// Circuits returns a snapshot of every circuit of the transport, sorted by
// host and model, for dashboards and tests. It returns nil when the circuit
// breaker is off ([WithoutCircuitBreaker]). A circuit the fleet holds
// ([WithSharedState]) has Fleet set. It is safe to call at any time,
// including from a [WithOnCircuitStateChange] function.
func (t *Transport) Circuits() []CircuitStatus {
	snap := t.circuits.Snapshot()
	if snap == nil {
		return nil
	}
	out := make([]CircuitStatus, len(snap))
	now := time.Now()
	for i, s := range snap {
		out[i] = CircuitStatus{
			Host: s.Key.Host, Model: s.Key.Model, State: circuitState(s.State), RetryIn: s.RetryIn,
			Requests: s.Requests, Successes: s.Successes, Failures: s.Failures, Excluded: s.Excluded,
			InFlight: s.InFlight,
		}
		if s.Held {
			f := &FleetHold{Remote: s.HoldRemote, Reason: s.HoldReason}
			if s.State == circuit.Open {
				f.Until = now.Add(s.RetryIn)
			}
			out[i].Fleet = f
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
	if err == circuit.ErrLease {
		// The fleet's hold on the circuit just ended: the fleet says
		// whether this call probes (fleet.go).
		c.t.reportCircuit(c.ctx, c.trace.st, ch)
		ch, err = c.lease()
		if err == circuit.ErrLease {
			// Replaced during the lease by a hold already over: this
			// call asks no second time, it waits a little like a
			// refused one.
			c.t.reportCircuit(c.ctx, c.trace.st, ch)
			ch, err = c.t.circuits.Leased(&c.circ, c.key.circuit(), false, minLeaseWait)
		}
	}
	c.t.reportCircuit(c.ctx, c.trace.st, ch)
	if err != nil {
		oe := err.(*circuit.OpenError)
		if oe.Remote {
			c.trace.remoteHold("open", oe.Reason)
		}
		return &CircuitOpenError{Host: oe.Key.Host, Model: oe.Key.Model, RetryIn: oe.RetryIn}
	}
	return nil
}

// attempted reports the outcome of the attempt a, which admit admitted, to
// the call's circuit: a half-open circuit's probe is counted at once.
func (c *call) attempted(a *attemptResult) {
	c.circ.SetCause(failureCause(a))
	c.t.reportCircuit(c.ctx, c.trace.st, c.circ.Attempted(circuit.Outcome(a.out), circuitHint(&a.cl)))
	if c.t.cfg.shared != nil {
		c.probed(a) // fleet.go
	}
}

// failureCause returns what the circuit is told caused the attempt a's
// failure, should it open the circuit: the class the server's answer was
// classified as, or "" when no server answered or the time ran out here (a
// transport error, a timeout), which may be this process's alone and is
// not shared with the fleet.
func failureCause(a *attemptResult) string {
	if a.err != nil || a.resp == nil || a.cl.Class == ClassTimeout {
		return ""
	}
	return a.cl.Class.String()
}

// settle records the call's outcome in its circuit once its retries are
// over: the outcome of its last attempt with the server's wait hint on it.
func (c *call) settle() {
	c.t.reportCircuit(c.ctx, c.trace.st, c.circ.Done(circuit.Outcome(c.out), c.hint))
}

// abandon ends the call's standing with its circuit if a panic cut the
// call short (see circuit.Ticket.Abandon): deferred by roundTrip.
func (c *call) abandon() {
	c.paceAbandon() // pacing.go
	c.t.reportCircuit(context.Background(), nil, c.circ.Abandon())
}

// reportCircuit reports the state changes ch holds, with no lock held: on
// the span cs of the call that reports them (nil: none), in the metrics,
// and to the observers ([WithOnCircuitStateChange]), with ctx.
func (t *Transport) reportCircuit(ctx context.Context, cs *callSpan, ch circuit.Changes) {
	ch.Report(func(cc circuit.Change) {
		if cc.To == circuit.Open && t.cfg.shared != nil {
			t.publishOpen(cc) // fleet.go
		}
		sc := stateChange(cc)
		for _, o := range t.cfg.breaker.observers {
			o(ctx, sc)
		}
		t.tracer.circuitChanged(ctx, cs, sc)
	})
}

// maxCircuitHint is the longest a server's wait hint keeps a circuit open:
// a day, the longest window servers count quotas in (a daily quota spent).
// A circuit refuses at once, so a hint longer than the waits the transport
// takes ([WithMaxRetryWait]) is still worth honouring there; an absurd one
// (Retry-After: 99999999, taken as hint.MaxSaneWait, 31 days) would shut
// the model out for a month, and with shared state the whole fleet with it.
const maxCircuitHint = 24 * time.Hour

// circuitHint is the wait hint of cl as a circuit takes it (see
// maxCircuitHint).
func circuitHint(cl *Classification) time.Duration {
	return min(cl.RetryAfter, maxCircuitHint)
}
