package llmtransport

import (
	"context"
	"time"

	"github.com/llmtransport/llmtransport/internal/circuit"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// The fleet's side of the transport (WithSharedState): what it publishes,
// how it applies what it receives, and the probe lease.
//
// Local and remote holds meet in the transport's own tables, so that a
// request asks nothing new:
//
//   - a cooldown is an entry of the cooldown table, keyed, when the fleet
//     is on, by the fleet's Fingerprint of the credential instead of this
//     process's own hash (see credentialOf). A request finds a remote
//     cooldown as it finds a local one, by the same lookup, which without a
//     live cooldown is one atomic load, and waits it out by the same rules;
//   - an open hold is a hold on the model's circuit (internal/circuit: a
//     bit of the state word that the closed fast path already reads), which
//     refuses calls with a *CircuitOpenError whatever the circuit's own
//     state, and at its end lets only the process granted the lease probe.
//
// Publishing happens only where the transport changes its own state: a 429
// recorded as a cooldown, a circuit opened by a failure the server
// classified (the circuit carries the cause of the failure that opened it),
// the outcome of a hold's probe. The success path publishes nothing.

// Fleet tuning.
const (
	// fleetJitterMax bounds the positive jitter added to a remote hold,
	// and fleetJitterFrac sets it as a fraction of the hold: up to 20 % (as
	// a local wait's jitter over a hint), at most 250 ms, so that replicas
	// do not all come back at once: those that come back within the
	// propagation lag of the next 429 collect one each.
	fleetJitterMax  = 250 * time.Millisecond
	fleetJitterFrac = 5
	// echoSlack is how much later than the hold in place a remote hold
	// must end to change it: less is this process's own hold coming back
	// (the store counts its TTL from when it received it), or one just as
	// long, and applying it would only add jitter to jitter.
	echoSlack = 50 * time.Millisecond
	// leaseTimeout bounds the one store round trip a call may make: the
	// probe lease, when it finds its circuit's fleet hold over.
	leaseTimeout = time.Second
	// minLeaseWait is the least a process denied the lease holds on for,
	// so that a store answering "held for 0" is not asked again at once.
	minLeaseWait = 100 * time.Millisecond
)

// The span event of a remote hold applied to a call, and its attributes.
const (
	eventRemoteHold = "remote hold"
	keyHoldKind     = attribute.Key("llm.hold.kind")   // "cooldown" or "open"
	keyHoldReason   = attribute.Key("llm.hold.reason") // the class that caused it
)

// fleetJitter returns the positive jitter of a remote hold of d.
func fleetJitter(d time.Duration) time.Duration {
	return jitter(min(d/fleetJitterFrac, fleetJitterMax))
}

// startFleet subscribes the transport to its fleet's holds.
func (t *Transport) startFleet() {
	s := t.cfg.shared
	if s == nil {
		return
	}
	t.cooldowns.fp = s.Fingerprint
	t.stopWatch = s.Subscribe(t.applyHold)
}

// Close stops the transport's subscription to its fleet's holds
// ([WithSharedState]): it returns once no hold is delivered any more. It
// does not close the shared state, nor idle connections (see
// [Transport.CloseIdleConnections]), and the transport keeps working, on
// its own. Close is idempotent; without shared state it does nothing. It
// returns nil.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		if t.stopWatch != nil {
			t.stopWatch()
		}
	})
	return nil
}

// applyHold applies a hold another process published (or this one's, come
// back: see echoSlack). It runs on the shared state's goroutine.
func (t *Transport) applyHold(h Hold) {
	key := circuitKey{host: h.Host, model: h.Model}
	switch h.Kind {
	case HoldCooldown:
		if h.TTL > 0 {
			t.cooldowns.setRemote(key, h.Credential, h.TTL, fleetJitter(h.TTL), echoSlack)
		}
	case HoldOpen:
		if h.TTL <= 0 || t.circuits == nil {
			return
		}
		ck := key.circuit()
		if t.circuits.HeldFor(ck)+echoSlack >= h.TTL {
			return
		}
		t.circuits.Hold(ck, h.TTL+fleetJitter(h.TTL), h.Reason, true)
	case HoldRelease:
		t.circuits.Release(key.circuit())
	}
}

// publishCooldown shares the cooldown the call just recorded, d for the
// credential fingerprint cred.
func (c *call) publishCooldown(cred uint64, d time.Duration, reason string) {
	if s := c.t.cfg.shared; s != nil && !c.t.cfg.noCooldowns {
		s.Publish(Hold{Kind: HoldCooldown, Host: c.key.host, Model: c.key.model, Credential: cred, TTL: d, Reason: reason})
	}
}

// publishOpen shares a circuit that a failure the server classified opened,
// and holds it here too, so that this process waits for the fleet's probe
// lease like the others when its open period ends.
func (t *Transport) publishOpen(ch circuit.Change) {
	s := t.cfg.shared
	if s == nil || ch.Reason == "" || ch.OpenFor <= 0 {
		return
	}
	t.circuits.Hold(ch.Key, ch.OpenFor, ch.Reason, false)
	s.Publish(Hold{Kind: HoldOpen, Host: ch.Key.Host, Model: ch.Key.Model, TTL: ch.OpenFor, Reason: ch.Reason})
}

// probed publishes what the call's hold probe did: its success releases the
// fleet's hold; its failure, if the server classified it, holds the fleet
// again for the open period.
func (c *call) probed(a *attemptResult) {
	s := c.t.cfg.shared
	if s == nil {
		return
	}
	switch c.circ.TakeHoldEnd() {
	case circuit.HoldReleased:
		s.Publish(Hold{Kind: HoldRelease, Host: c.key.host, Model: c.key.model})
	case circuit.HoldReopened:
		cause := failureCause(a)
		if cause == "" {
			return // a transport error: perhaps this process's alone
		}
		if d := c.t.circuits.HeldFor(c.key.circuit()); d > 0 {
			s.Publish(Hold{Kind: HoldOpen, Host: c.key.host, Model: c.key.model, TTL: d, Reason: cause})
		}
	}
}

// lease asks the fleet whether this call may probe its circuit, held by the
// fleet, whose hold just ended, and tells the circuit the answer. It is the
// only round trip to the store a call ever makes, bounded by the call's
// context and leaseTimeout; a store that does not answer grants it.
func (c *call) lease() (circuit.Changes, error) {
	t := c.t
	granted, held := true, time.Duration(0)
	if s := t.cfg.shared; s != nil {
		ctx, cancel := context.WithTimeout(c.ctx, leaseTimeout)
		granted, held = s.Lease(ctx, c.key.host, c.key.model, t.cfg.breaker.openTimeout)
		cancel()
	}
	if !granted {
		held = max(held, minLeaseWait)
		held += fleetJitter(held)
	}
	return t.circuits.Leased(&c.circ, c.key.circuit(), granted, held)
}

// remoteHold records on the call's span that a hold of the fleet applies to
// it: kind "cooldown" (it waits) or "open" (it is refused).
func (c *callTrace) remoteHold(kind, reason string) {
	if c.st == nil {
		return
	}
	c.st.AddEvent(eventRemoteHold, trace.WithAttributes(keyHoldKind.String(kind), keyHoldReason.String(reason)))
}
