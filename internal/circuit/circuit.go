// Package circuit is the transport's per-(host, model) circuit breakers: a
// registry of circuits, each judging the calls made to one model, with a
// two-step API for a call:
//
//	var t circuit.Ticket // one per call
//	ch, err := r.Admit(&t, key) // before each attempt; err is an *OpenError when refused
//	report(ch)
//	... the attempt ...
//	report(t.Attempted(out, hint)) // after each attempt: a half-open probe's outcome
//	report(t.Done(out, hint))      // once, when the call's retries are over
//
// Every method returns the state changes it caused (or found waiting) as
// [Changes], for the caller to report once every lock is released: the
// package calls nothing of the caller's. gobreaker v2 is sealed inside.
//
// What a circuit judges is calls, not attempts: a call's outcome is
// settled once, by [Ticket.Done], when its retries are over. Calls still in
// flight count as calls that have not failed: a closed circuit opens once
// at least Config.MinFailures calls failed in the rolling window and the
// failures are at least Config.Ratio of the calls that succeeded, failed or
// are still in flight. An open circuit refuses attempts for
// Config.OpenTimeout, or longer when a server's wait hint asks for it; then
// it is half-open and lets Config.Probes attempts through as probes. An
// outcome that arrives after its circuit changed state (a call put in
// flight in an earlier generation) is dropped.
package circuit

import (
	"fmt"
	"time"
)

// Key names one circuit: the host requests go to and the model they ask for
// ("" for a per-host circuit).
type Key struct {
	Host, Model string
}

// Outcome is what a call (or a probe) means to its circuit.
type Outcome uint8

// The outcomes.
const (
	Success  Outcome = iota // the model answered
	Failure                 // the model (or the path to it) is failing
	Excluded                // says nothing about the model's health
)

// State is the state of one circuit.
type State uint8

// The states.
const (
	Closed   State = iota // attempts flow
	HalfOpen              // a bounded number of probes flow
	Open                  // attempts are refused
)

// Change is one circuit changing state.
type Change struct {
	Key      Key
	From, To State
	// Reason is, for a change to Open, the cause of the failure that
	// opened the circuit (see Ticket.SetCause): "" when that failure had
	// none (a transport error).
	Reason string
	// OpenFor is, for a change to Open, how long the circuit refuses
	// attempts from when the change is reported (server hints included).
	OpenFor time.Duration
}

// Status is a snapshot of one circuit (see [Registry.Snapshot]).
type Status struct {
	Key   Key
	State State // an open circuit past its open period is reported half-open
	// RetryIn is, for an open circuit, how long until it lets a probe
	// through.
	RetryIn time.Duration
	// The counts of the current state: for a closed or open circuit, the
	// calls that ended over the window (Requests those whose outcome is
	// in; for an open circuit, those that opened it, until they age out);
	// for a half-open one, its probes (Requests those admitted).
	Requests, Successes, Failures, Excluded uint32
	// InFlight is, for a closed circuit, the calls it admitted whose
	// outcome is not in yet.
	InFlight uint32
	// Held is set while a hold (Registry.Hold) is on the circuit: State
	// and RetryIn then say what the hold does (open until its end, then
	// half-open while the fleet's probe is decided or out). HoldRemote says
	// another process set it, HoldReason is its reason.
	Held       bool
	HoldRemote bool
	HoldReason string
}

// Config is the circuits' policy. Window and OpenTimeout must be positive;
// MinFailures and Probes below 1 count as 1; a zero IdleAfter or
// MaxCircuits is 10 minutes or 10,000 circuits. Ratio ≤ 0 means never trip.
type Config struct {
	Ratio       float64       // trip at this failure ratio of succ+fail+inflight
	MinFailures int           // ... once this many calls failed in the window
	Window      time.Duration // the rolling window of the counts (in tenths)
	OpenTimeout time.Duration // the shortest open period
	Probes      int           // attempts let through while half-open

	IdleAfter   time.Duration // closed circuits unused this long may be dropped
	MaxCircuits int           // the most circuits kept; further keys get none
}

// OpenError is the refusal of an attempt by an open (or half-open and busy)
// circuit.
type OpenError struct {
	Key Key
	// RetryIn is how long until the circuit lets a probe through; 0 when
	// unknown (half-open with every probe out).
	RetryIn time.Duration
	// Held is set when the refusal is a hold's (Registry.Hold); Remote
	// when another process set the hold, Reason its reason.
	Held   bool
	Remote bool
	Reason string
}

// Error describes the refusal.
func (e *OpenError) Error() string {
	return fmt.Sprintf("circuit open for %q on %s (next probe in %v)", e.Key.Model, e.Key.Host, e.RetryIn)
}

// Ticket is one call's standing with the circuit of its model, from its
// first attempt to its end. The zero Ticket is ready for [Registry.Admit];
// a Ticket is used by one goroutine at a time.
//
// While the circuit is closed, admitting an attempt costs one atomic load,
// and the call's first admitted attempt puts it in flight until Done. While
// half-open, each attempt is a probe, whose outcome Attempted reports.
type Ticket struct {
	c        *circuit    // nil: no circuit (none configured, or the registry is full)
	gen      uint32      // the generation the call was put in flight in
	inflight bool        // counted in c.inflight
	counted  bool        // Done counted the call a success (see Late) ...
	bucket   int64       // ... in this bucket number
	probe    func(error) // the admitted probe's report, until Attempted
	closedAt uint32      // the generation a successful probe of the call closed the circuit into; 0: none
	cause    string      // the cause of the call's failure (SetCause)

	holdProbe bool    // the call's attempt is a hold's probe, until Attempted
	holdGen   uint32  // the generation of the hold it asked the lease for
	holdEnd   HoldEnd // what its probe did, until TakeHoldEnd
}

// SetCause sets the cause of the call's failure, reported with a change to
// Open that the failure causes (Change.Reason), and the reason of a hold
// its failing hold probe starts again: the class of the server's answer,
// or "" when no server answered (a transport error).
func (t *Ticket) SetCause(cause string) { t.cause = cause }

// TakeHoldEnd returns what the call's last hold probe did to its hold,
// once.
func (t *Ticket) TakeHoldEnd() HoldEnd {
	e := t.holdEnd
	t.holdEnd = HoldKept
	return e
}

// Changes holds the state changes of one circuit waiting to be reported.
// The zero Changes holds none.
type Changes struct{ c *circuit }

// Report calls f with each change waiting, in order. It must be called
// with no lock held. One goroutine at a time reports a circuit's changes: a
// Report that finds another one reporting leaves the changes to it, so that
// f sees each circuit's changes in order and never concurrently.
func (ch Changes) Report(f func(Change)) {
	if c := ch.c; c != nil && c.npending.Load() > 0 {
		c.report(f)
	}
}

// Admit asks the circuit of key whether the next attempt of the call t may
// go. It returns an *OpenError when not. On a nil Registry (no circuits)
// every attempt goes.
func (r *Registry) Admit(t *Ticket, key Key) (Changes, error) {
	if r.admitClosed(t, key) {
		// The fast path: admitted without gobreaker (see circuit).
		return Changes{}, nil
	}
	c := t.c
	if c.state.Load()&heldBit != 0 {
		if err := c.admitHeld(t, key); err != nil {
			return Changes{c}, err
		}
	}
	return r.admitState(t, key)
}

// admitState is Admit past the fast path and the hold: the circuit's own
// state decides. A hold probe it refuses is given back.
func (r *Registry) admitState(t *Ticket, key Key) (Changes, error) {
	c := t.c
	ch, err := r.admitOwn(t, key)
	if err != nil && t.holdProbe {
		c.unprobe(t)
	}
	return ch, err
}

func (r *Registry) admitOwn(t *Ticket, key Key) (Changes, error) {
	c := t.c
	switch c.st() {
	case Closed:
		// Closed, but held a moment ago (or probing a hold).
		if !t.inflight {
			t.inflight = true
			t.gen = c.gen.Load()
			c.inflight.Add(1)
		}
		return Changes{c}, nil
	case Open:
		if d := c.openUntil.Load() - r.now(); d >= 0 {
			return Changes{c}, &OpenError{Key: key, RetryIn: time.Duration(d)}
		}
	}
	done, err := c.cb.Allow()
	switch err {
	case nil:
		t.probe = done
		return Changes{c}, nil // a change to half-open, before its probe goes out
	case errOpenState:
		// Another call opened the circuit since the check above.
		return Changes{c}, &OpenError{Key: key, RetryIn: time.Duration(max(c.openUntil.Load()-r.now(), 0))}
	default:
		// Too many requests: half-open with its probes out.
		return Changes{c}, &OpenError{Key: key}
	}
}

// admitClosed admits the next attempt of the call t if the circuit of key
// is closed (or there is none), as Admit would; it reports false, having
// done nothing, when the attempt must go through gobreaker.
func (r *Registry) admitClosed(t *Ticket, key Key) bool {
	if r == nil {
		return true
	}
	if t.c == nil {
		if t.c = r.lookup(key); t.c == nil {
			return true
		}
	}
	c := t.c
	if c.state.Load() != uint32(Closed) {
		return false // not closed, or held (hold.go)
	}
	if !t.inflight {
		t.inflight = true
		t.gen = c.gen.Load()
		c.inflight.Add(1)
	}
	return true
}

// Attempted reports the outcome of the attempt Admit admitted last, with
// the server's wait hint: for a half-open probe, it frees the probe's place
// and counts it (a failed probe opens the circuit again, for at least
// hint); an attempt of a closed circuit needs nothing.
func (t *Ticket) Attempted(out Outcome, hint time.Duration) Changes {
	var ch Changes
	if t.holdProbe {
		t.holdProbe = false
		t.holdEnd = t.c.probed(t.holdGen, out, hint, t.cause)
		ch = Changes{t.c}
	}
	probe := t.probe
	if probe == nil {
		return ch
	}
	t.probe = nil
	if out == Failure {
		t.c.trip(probe, t.cause)
		t.c.lengthenByHint(hint)
	} else {
		probe(outcomeErrs[out])
	}
	if out == Success && t.c.st() == Closed {
		t.closedAt = t.c.gen.Load() // for Late: the probe's stream may yet fail
	}
	return Changes{t.c}
}

// Done settles the call t once it ended, with its outcome and the server's
// wait hint on its last attempt. Only a call that was put in flight counts;
// its outcome is dropped if the circuit changed state since.
func (t *Ticket) Done(out Outcome, hint time.Duration) Changes {
	c := t.c
	if c == nil || !t.inflight {
		return Changes{}
	}
	t.inflight = false
	c.inflight.Add(-1)
	if c.gen.Load() != t.gen {
		return Changes{c}
	}
	now := c.r.now()
	c.count(out, now)
	t.counted, t.bucket = out == Success, now/c.r.bucket
	if out == Failure {
		c.reportFailure(t.gen, hint, t.cause)
	}
	return Changes{c}
}

// Late records the outcome of the call t found after Done counted it a
// success (a stream that failed after its first event). The circuit
// counts calls, and that call failed (or, for Excluded, says nothing): the
// success is taken back from its bucket (when still in the window) and the
// outcome counted now, a failure reported as Done reports one. As in Done,
// an outcome that arrives after the circuit changed state is dropped. A
// half-open probe whose success closed the circuit and whose stream then
// failed was no proof of health: when nothing changed since, the circuit
// opens again at once, so that a model that fails every stream after its
// first event is let through once per open period, not until three more
// calls failed. A second Late does nothing.
func (t *Ticket) Late(out Outcome, hint time.Duration) Changes {
	c := t.c
	if c != nil && t.closedAt != 0 && out == Failure {
		gen := t.closedAt
		t.closedAt = 0
		if c.gen.Load() != gen {
			return Changes{}
		}
		c.count(out, c.r.now())
		c.tripNow.Store(true)
		c.reportFailure(gen, hint, t.cause)
		c.tripNow.Store(false)
		return Changes{c}
	}
	if c == nil || !t.counted || out == Success {
		return Changes{}
	}
	t.counted = false
	if c.gen.Load() != t.gen {
		return Changes{c}
	}
	c.uncount(t.bucket)
	c.count(out, c.r.now())
	if out == Failure {
		c.reportFailure(t.gen, hint, t.cause)
	}
	return Changes{c}
}

// Abandon ends the call t if a panic (of a hook, a classifier, an observer
// or the base transport) left it unfinished: a probe not yet reported gives
// its place back, and a call still in flight is settled as Excluded, so
// that neither a probe's place nor the circuit's failure ratio is lost for
// ever. After a call that finished normally it does nothing.
func (t *Ticket) Abandon() Changes {
	var ch Changes
	if t.probe != nil || t.holdProbe {
		ch = t.Attempted(Excluded, 0)
	}
	if t.inflight {
		ch = t.Done(Excluded, 0)
	}
	return ch
}

// OpenFor returns how much longer the call's circuit will refuse attempts:
// 0 when it admits them (closed, half-open, or past its open period). It
// lets a retry loop hand back what it has at once instead of waiting to be
// refused.
func (t *Ticket) OpenFor() time.Duration {
	c := t.c
	if c == nil || c.state.Load() == uint32(Closed) {
		return 0
	}
	d := c.heldFor()
	if c.st() == Open {
		d = max(d, time.Duration(c.openUntil.Load()-c.r.now()))
	}
	return max(d, 0)
}
