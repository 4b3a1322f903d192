package circuit

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// errOpenState is gobreaker's refusal by an open circuit.
var errOpenState = gobreaker.ErrOpenState

// The errors a circuit's attempt reports to gobreaker for each outcome.
var (
	errOutcomeFailure  = &outcomeError{"failure"}
	errOutcomeExcluded = &outcomeError{"excluded"}
	outcomeErrs        = [...]error{Success: nil, Failure: errOutcomeFailure, Excluded: errOutcomeExcluded}
)

// outcomeError is the error reported to gobreaker for an outcome other
// than a success.
type outcomeError struct{ s string }

// Error names the outcome.
func (e *outcomeError) Error() string { return "circuit: attempt outcome " + e.s }

// windowBuckets is the number of buckets of a closed circuit's rolling
// window.
const windowBuckets = 10

// noBucket is the stamp of a cleared bucket: older than any window.
const noBucket = math.MinInt64

// bucket counts the outcomes of one tenth of a closed circuit's window.
type bucket struct {
	stamp            atomic.Int64 // the bucket's number: now / r.bucket; noBucket when cleared
	succ, fail, excl atomic.Uint32
	_                uint32
}

// circuit is one (host, model) circuit.
//
// gobreaker is its state machine: the states and generations, the open
// period, the half-open probes and their count. While the circuit is
// closed, though, calls do not go through gobreaker: their attempts are
// admitted by one atomic load, and the calls' outcomes are counted here,
// lock-free, in a rolling window of atomic buckets, with the number of
// calls in flight. Only a failure goes to gobreaker (after the fact), and
// gobreaker asks ReadyToTrip, which reads this window. gobreaker locks its
// mutex and reads the clock twice per request; on a closed circuit, the
// common case, that was the largest part of the transport's own cost.
//
// It also keeps what gobreaker does not: the end of the open period (which
// a server's wait hint can lengthen), a lock-free copy of the state, a used
// mark for eviction, and the state changes still to be reported.
type circuit struct {
	key     Key
	dropped atomic.Bool // evicted from the registry
	r       *Registry
	cb      *gobreaker.TwoStepCircuitBreaker[struct{}]

	state     atomic.Uint32 // State, and heldBit while the fleet holds it (hold.go)
	gen       atomic.Uint32 // bumped at every state change
	openUntil atomic.Int64  // r.now() at which an open circuit lets a probe through
	used      atomic.Bool   // admitted a request since the last sweep
	npending  atomic.Int32  // len(pending), read without the lock
	reporting atomic.Bool   // a goroutine is reporting the changes
	tripNow   atomic.Bool   // readyToTrip says yes: a probe's late failure (see Ticket.Late)

	// The closed state's counts: the calls in flight (admitted while
	// closed, in any generation, and not yet settled) and the outcomes of
	// the calls that ended. rollMu serialises the clearing of a bucket for
	// reuse.
	inflight atomic.Int32
	win      [windowBuckets]bucket
	rollMu   sync.Mutex

	// mu guards pending. It is taken inside gobreaker's mutex (in
	// onStateChange) and never the other way round.
	mu      sync.Mutex
	pending []Change

	// tripMu is held around every failure reported to gobreaker, the only
	// reports that can open the circuit: cause is the failing call's, and
	// onStateChange, called within, copies it to openCause.
	tripMu    sync.Mutex
	cause     string
	openCause string

	hold hold // the fleet's hold on the circuit (hold.go)
}

// newCircuit returns a closed circuit for key, with its gobreaker.
func (r *Registry) newCircuit(key Key) *circuit {
	c := &circuit{key: key, r: r}
	c.clearCounts()
	st := r.settings
	st.OnStateChange = c.onStateChange
	st.ReadyToTrip = c.readyToTrip
	c.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](st)
	return c
}

// clearCounts empties the closed state's window. The calls in flight stay
// counted: they are still in flight.
func (c *circuit) clearCounts() {
	c.rollMu.Lock()
	defer c.rollMu.Unlock()
	for i := range c.win {
		c.win[i].stamp.Store(noBucket)
	}
}

// slot returns the bucket of bucket number b, cleared first if it last
// counted an older tenth of the window.
func (c *circuit) slot(b int64) *bucket {
	s := &c.win[b%windowBuckets]
	if s.stamp.Load() != b {
		c.rollMu.Lock()
		if s.stamp.Load() != b {
			s.succ.Store(0)
			s.fail.Store(0)
			s.excl.Store(0)
			s.stamp.Store(b)
		}
		c.rollMu.Unlock()
	}
	return s
}

// count records the outcome of a call the closed circuit admitted, at time
// now. A failure must then be reported to gobreaker (see reportFailure).
func (c *circuit) count(o Outcome, now int64) {
	s := c.slot(now / c.r.bucket)
	switch o {
	case Success:
		s.succ.Add(1)
	case Excluded:
		s.excl.Add(1)
	default:
		s.fail.Add(1)
	}
}

// uncount takes back a success counted in bucket number n, if that bucket
// still counts it.
func (c *circuit) uncount(n int64) {
	s := &c.win[n%windowBuckets]
	c.rollMu.Lock() // slot clears buckets under it: succ cannot drop under us
	defer c.rollMu.Unlock()
	if s.stamp.Load() == n && s.succ.Load() > 0 {
		s.succ.Add(^uint32(0))
	}
}

// window returns the closed state's counts over the window as of now.
func (c *circuit) window(now int64) (succ, fail, excl uint32) {
	b := now / c.r.bucket
	for i := range c.win {
		s := &c.win[i]
		if st := s.stamp.Load(); st > b-windowBuckets && st <= b {
			succ += s.succ.Load()
			fail += s.fail.Load()
			excl += s.excl.Load()
		}
	}
	return succ, fail, excl
}

// readyToTrip is gobreaker's ReadyToTrip, asked after each failure gobreaker
// records while closed; it reads the circuit's own window and calls in
// flight, not gobreaker's counts, which see only the failures.
func (c *circuit) readyToTrip(gobreaker.Counts) bool {
	cfg := &c.r.cfg
	if cfg.Ratio <= 0 {
		return false
	}
	if c.tripNow.Load() {
		return true
	}
	succ, fail, _ := c.window(c.r.now())
	if fail < uint32(cfg.MinFailures) {
		return false
	}
	n := uint64(succ) + uint64(fail) + uint64(max(c.inflight.Load(), 0))
	return float64(fail) >= cfg.Ratio*float64(n)
}

// reportFailure reports to gobreaker the failure of a call put in flight in
// generation gen and counted in the window, with the server's wait hint and
// the failure's cause (see Ticket.SetCause).
func (c *circuit) reportFailure(gen uint32, hint time.Duration, cause string) {
	if done, err := c.cb.Allow(); err == nil {
		if c.gen.Load() != gen {
			// Changed state since: this outcome is not the new
			// state's (a probe's place is given back).
			done(errOutcomeExcluded)
		} else {
			c.trip(done, cause)
		}
	}
	c.lengthenByHint(hint)
}

// toState returns gobreaker's state s as a State.
func toState(s gobreaker.State) State {
	switch s {
	case gobreaker.StateOpen:
		return Open
	case gobreaker.StateHalfOpen:
		return HalfOpen
	}
	return Closed
}

// onStateChange is gobreaker's OnStateChange. gobreaker calls it with its
// mutex held, so it only records the change; the caller of the method that
// caused it reports it (see Changes) once every lock is released.
func (c *circuit) onStateChange(_ string, from, to gobreaker.State) {
	s := toState(to)
	if s == Open {
		c.openUntil.Store(c.r.now() + int64(c.r.cfg.OpenTimeout))
	}
	if s == Closed {
		c.clearCounts()
	}
	c.gen.Add(1)
	for {
		// The hold bit is the hold's (hold.go): kept as it is.
		old := c.state.Load()
		if c.state.CompareAndSwap(old, old&heldBit|uint32(s)) {
			break
		}
	}
	if s == Open {
		c.openCause = c.cause // set by the failure that opened it (see trip)
	}
	c.mu.Lock()
	ch := Change{Key: c.key, From: toState(from), To: s}
	if s == Open {
		ch.Reason = c.openCause
	}
	c.pending = append(c.pending, ch)
	c.npending.Store(int32(len(c.pending)))
	c.mu.Unlock()
}

// report calls f with the state changes recorded so far, in order, one
// goroutine at a time (see Changes.Report).
func (c *circuit) report(f func(Change)) {
	for c.npending.Load() > 0 && c.reporting.CompareAndSwap(false, true) {
		c.reportAll(f)
	}
}

// reportAll calls f with the changes recorded, in order, until none is
// left; the caller holds c.reporting, which it releases.
func (c *circuit) reportAll(f func(Change)) {
	defer c.reporting.Store(false)
	for {
		c.mu.Lock()
		changes := c.pending
		c.pending = nil
		c.npending.Store(0)
		c.mu.Unlock()
		if len(changes) == 0 {
			return
		}
		for _, ch := range changes {
			if ch.To == Open {
				ch.OpenFor = time.Duration(max(c.openUntil.Load()-c.r.now(), 0))
			}
			f(ch)
		}
	}
}

// trip reports a failure to gobreaker through done, with its cause: should
// it open the circuit, the change says why.
func (c *circuit) trip(done func(error), cause string) {
	c.tripMu.Lock()
	defer c.tripMu.Unlock()
	c.cause = cause
	done(errOutcomeFailure)
	c.cause = ""
}

// st returns the circuit's state, without the hold bit.
func (c *circuit) st() State { return State(c.state.Load() & stateMask) }

// lengthenOpen makes an open circuit stay open at least until until.
func (c *circuit) lengthenOpen(until int64) {
	for {
		cur := c.openUntil.Load()
		if cur >= until || c.openUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// lengthenByHint makes c, if the failure just recorded left it open, stay
// open at least for the server's wait hint.
func (c *circuit) lengthenByHint(hint time.Duration) {
	if hint > 0 && c.st() == Open {
		c.lengthenOpen(c.r.now() + int64(hint))
	}
}

// idle reports whether c can be dropped: closed, with nothing to report,
// and unused since the last sweep.
func (c *circuit) idle() bool {
	return !c.used.Load() && c.state.Load() == uint32(Closed) && c.npending.Load() == 0
}
