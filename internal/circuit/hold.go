package circuit

import (
	"errors"
	"sync"
	"time"
)

// A circuit's state word holds its State in its low byte and heldBit while
// the fleet holds it: a closed circuit that nobody holds reads exactly
// Closed, so the fast path of Admit stays one atomic load.
const (
	stateMask = 0xff
	heldBit   = 1 << 8
)

// The phases of a hold.
const (
	holdWaiting  uint8 = iota // attempts are refused until the hold's end
	holdDeciding              // past its end: one call asks the fleet for the probe lease
	holdProbing               // the lease was granted: one call probes
)

// hold is the fleet's hold on a circuit (see Registry.Hold): a period during
// which the circuit refuses attempts whatever its own state, then, instead
// of a half-open period of its own, a probe that only the process granted
// the fleet's lease sends. It is read and written only on the slow path
// (heldBit set), under mu.
type hold struct {
	mu     sync.Mutex
	on     bool
	phase  uint8
	until  int64  // r.now() at which a waiting hold ends
	gen    uint32 // bumped whenever the hold is replaced or ends
	reason string
	remote bool // set by another process (Registry.Hold's remote)
}

// ErrLease is returned by [Registry.Admit] to the one call that finds a
// hold's period over: before its attempt may go, the caller asks the fleet
// for the probe lease and tells the circuit the answer with
// [Registry.Leased]. Meanwhile the circuit's other calls are refused.
var ErrLease = errors.New("circuit: the fleet's hold has ended: ask for the probe lease")

// HoldEnd is what a probe's outcome did to the hold it probed (see
// [Ticket.TakeHoldEnd]).
type HoldEnd uint8

// The ends of a hold.
const (
	HoldKept     HoldEnd = iota // nothing changed (no probe, or its outcome says nothing)
	HoldReleased                // the probe succeeded: the hold is over
	HoldReopened                // the probe failed: the hold starts again
)

// Hold holds the circuit of key for d from now: its attempts are refused
// with an *OpenError (Held set) whatever its own state. A hold only
// extends: one that would end sooner than the hold in place changes
// nothing. remote says the hold comes from another process, reason is the
// class that caused it. It reports whether the hold changed. On a nil or
// full Registry it does nothing.
func (r *Registry) Hold(key Key, d time.Duration, reason string, remote bool) bool {
	if r == nil || d <= 0 {
		return false
	}
	c := r.get(key)
	if c == nil {
		return false
	}
	if !c.used.Load() {
		c.used.Store(true)
	}
	until := r.now() + int64(d)
	h := &c.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.on && h.phase == holdWaiting && h.until >= until {
		return false
	}
	if !h.on || h.phase != holdWaiting {
		// A new hold, or one replacing a decision or a probe in
		// progress: their outcome is no longer the hold's.
		h.gen++
	}
	h.on, h.phase, h.until, h.reason, h.remote = true, holdWaiting, until, reason, remote
	c.setHeld(true)
	return true
}

// Release ends the hold of key, if any, and reports whether there was one.
func (r *Registry) Release(key Key) bool {
	c := r.find(key)
	if c == nil {
		return false
	}
	h := &c.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.on {
		return false
	}
	h.on = false
	h.gen++
	c.setHeld(false)
	return true
}

// HeldFor returns how much longer the hold of key refuses attempts: 0 when
// there is none, or when its period is over.
func (r *Registry) HeldFor(key Key) time.Duration {
	c := r.find(key)
	if c == nil {
		return 0
	}
	return c.heldFor()
}

// Leased tells the circuit of the call t, to which Admit returned
// ErrLease, the fleet's answer: granted, the call's attempt goes as the
// hold's probe (through the circuit's own state: it may still be refused);
// else the hold refuses attempts for wait more. A hold replaced or released
// meanwhile is admitted afresh. It returns what Admit returns.
func (r *Registry) Leased(t *Ticket, key Key, granted bool, wait time.Duration) (Changes, error) {
	c := t.c
	if c == nil {
		return r.Admit(t, key)
	}
	h := &c.hold
	h.mu.Lock()
	if !h.on || h.gen != t.holdGen || h.phase != holdDeciding {
		h.mu.Unlock()
		return r.Admit(t, key)
	}
	if !granted {
		h.phase, h.until = holdWaiting, r.now()+int64(max(wait, 0))
		err := &OpenError{Key: key, RetryIn: max(wait, 0), Held: true, Remote: h.remote, Reason: h.reason}
		h.mu.Unlock()
		return Changes{}, err
	}
	h.phase = holdProbing
	h.mu.Unlock()
	t.holdProbe = true
	return r.admitState(t, key)
}

// find returns the circuit of key, or nil, without creating it.
func (r *Registry) find(key Key) *circuit {
	if r == nil {
		return nil
	}
	if m := r.shards[shardOf(key)].m.Load(); m != nil {
		return (*m)[key]
	}
	return nil
}

// setHeld sets or clears the circuit's hold bit; c.hold.mu must be held.
func (c *circuit) setHeld(on bool) {
	for {
		old := c.state.Load()
		nw := old &^ heldBit
		if on {
			nw |= heldBit
		}
		if old == nw || c.state.CompareAndSwap(old, nw) {
			return
		}
	}
}

// admitHeld decides the attempt of the call t on a held circuit: nil when
// the hold lets it through to the circuit's own state (there is no hold
// any more), ErrLease when the hold's period is over and the call is the
// one to ask for the lease, else the refusal.
func (c *circuit) admitHeld(t *Ticket, key Key) error {
	h := &c.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.on {
		return nil
	}
	if h.phase == holdWaiting {
		now := c.r.now()
		if d := h.until - now; d > 0 {
			return &OpenError{Key: key, RetryIn: time.Duration(d), Held: true, Remote: h.remote, Reason: h.reason}
		}
		if c.st() == Open {
			if d := c.openUntil.Load() - now; d >= 0 {
				// The circuit's own open period runs on: no
				// probe to ask for yet.
				return &OpenError{Key: key, RetryIn: time.Duration(d)}
			}
		}
		h.phase = holdDeciding
		t.holdGen = h.gen
		return ErrLease
	}
	// Another call is asking for the lease, or probing.
	return &OpenError{Key: key, Held: true, Remote: h.remote, Reason: h.reason}
}

// unprobe gives back the probe the call t was granted, when the circuit's
// own state refused it: the hold waits until the circuit's own open period
// ends, then asks for the lease again.
func (c *circuit) unprobe(t *Ticket) {
	t.holdProbe = false
	h := &c.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.on && h.gen == t.holdGen && h.phase == holdProbing {
		h.phase, h.until = holdWaiting, max(c.openUntil.Load()+1, c.r.now()) // the open period ends strictly after openUntil
	}
}

// probed ends the hold probe of generation gen with its outcome: a success
// releases the hold, a failure holds the circuit again for the open period
// (or the server's hint, if longer), with cause as its reason; an outcome
// that says nothing lets the next call ask for the lease again.
func (c *circuit) probed(gen uint32, out Outcome, hint time.Duration, cause string) HoldEnd {
	h := &c.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.on || h.gen != gen || h.phase != holdProbing {
		return HoldKept
	}
	now := c.r.now()
	switch out {
	case Success:
		h.on = false
		h.gen++
		c.setHeld(false)
		return HoldReleased
	case Failure:
		h.phase, h.until, h.reason, h.remote = holdWaiting, now+int64(max(c.r.cfg.OpenTimeout, hint)), cause, false
		return HoldReopened
	default:
		h.phase, h.until = holdWaiting, now
		return HoldKept
	}
}

// heldStatus adds the hold, if any, to st.
func (c *circuit) heldStatus(st *Status, now int64) {
	if c.state.Load()&heldBit == 0 {
		return
	}
	h := &c.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.on {
		return
	}
	st.Held, st.HoldRemote, st.HoldReason = true, h.remote, h.reason
	if d := h.until - now; h.phase == holdWaiting && d > 0 {
		st.State, st.RetryIn = Open, max(st.RetryIn, time.Duration(d))
	} else if st.State != Open {
		st.State = HalfOpen
	}
}

// heldFor is Ticket.OpenFor's part for a held circuit.
func (c *circuit) heldFor() time.Duration {
	if c.state.Load()&heldBit == 0 {
		return 0
	}
	h := &c.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.on || h.phase != holdWaiting {
		return 0
	}
	return time.Duration(max(h.until-c.r.now(), 0))
}
