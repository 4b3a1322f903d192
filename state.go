package llmtransport

import (
	"cmp"
	"hash/maphash"
	"slices"
	"sync/atomic"
	"time"
)

// State is a snapshot of what a Transport holds against its upstreams: its
// circuits, the cooldowns rate limits left, and what pacing learned. It is
// what [Transport.State] returns, for dashboards, debug endpoints and
// tests; every list is sorted, so that two snapshots of the same state
// print the same.
type State struct {
	// At is when the snapshot was taken: the cooldowns' Remaining counts
	// from it.
	At time.Time
	// Circuits is what [Transport.Circuits] returns: every circuit with
	// its counts, and the fleet's hold on it (Fleet: remote or not, reason,
	// until when). nil when the breaker is off ([WithoutCircuitBreaker]).
	Circuits []CircuitStatus
	// Cooldowns are the live cooldowns, sorted by host, model and
	// credential id. nil when there is none (always, with
	// [WithoutCooldowns]).
	Cooldowns []CooldownStatus
	// Limits is what [Transport.Limits] returns: the rate limits pacing
	// learned. nil when pacing is off ([WithPacing]).
	Limits []LearnedLimit
}

// CooldownStatus is one live cooldown ([State.Cooldowns]): requests for
// Host and Model with one API key wait until Until before they go (within
// [WithMaxRetryWait] and their deadline, else they go at once).
type CooldownStatus struct {
	Host, Model string
	// Credential is an opaque id of the API key the cooldown belongs to:
	// 8 hex digits derived from the transport's in-memory fingerprint of
	// the key with a random per-process seed. Within one Transport, the
	// same key has the same id in every snapshot (and in
	// [LearnedLimit.Credential]), and different keys different ones but
	// by chance (32 bits: among thousands of keys, two may share one); it
	// cannot be turned back into the key, nor matched
	// with another process's ids. "" for requests that carry no key.
	Credential string
	// Reason is the class of the response that started the cooldown:
	// "rate_limited" (only a rate limit whose wait the transport would
	// honour starts one, here or in the fleet).
	Reason string
	// Remaining is how long from At the cooldown still holds; Until is its
	// end on this process's clock.
	Remaining time.Duration
	Until     time.Time
	// Remote is true when another process of the fleet ([WithSharedState])
	// set or last lengthened the cooldown; false when this process's own
	// rate limit did.
	Remote bool
}

// State returns a snapshot of the transport's circuits, live cooldowns and
// learned limits (see [State]). It is safe to call at any time, from any
// goroutine, including from the transport's hooks.
//
// Requests do not pay for it: it reads the cooldowns and the circuits
// lock-free, as requests do, and copies what it finds; only a circuit the
// fleet holds, and each key pacing tracks, are locked a moment each, and
// the pacer's key map (a sync.Map) is walked without a lock (as by
// [Transport.Circuits] and [Transport.Limits]). Its cost is the walk: at
// most 65,536 cooldowns and the circuits (10,000 at most by default) and
// paced keys (16,384 at most), sorted, O(n log n), into a result of about
// 110 bytes an entry: a full cooldown table makes ~7 MB and takes tens of
// milliseconds (60 ms on a busy 2-core machine; TestStateFullTable logs
// it). Call it when asked, not per request. Cooldowns are judged at At:
// one that had passed by then is never in it, swept from the table or not.
func (t *Transport) State() State {
	at := time.Now()
	return State{
		At:        at,
		Circuits:  t.Circuits(),
		Cooldowns: t.cooldowns.snapshot(at),
		Limits:    t.Limits(),
	}
}

// snapshot returns the cooldowns live at at, sorted.
func (c *cooldowns) snapshot(at time.Time) []CooldownStatus {
	if c == nil || c.n.Load() == 0 {
		return nil
	}
	now := int64(at.Sub(c.epoch))
	if now >= c.horizon.Load() {
		return nil // every cooldown has passed
	}
	reason := ClassRateLimited.String()
	out := make([]CooldownStatus, 0, min(c.n.Load(), c.max))
	c.m.Range(func(k, v any) bool {
		until := v.(*atomic.Int64).Load()
		if until <= now {
			return true // passed, not swept yet
		}
		key := k.(cooldownKey)
		d := time.Duration(until - now) // as remaining says, mark included
		out = append(out, CooldownStatus{
			Host: key.host, Model: key.model, Credential: c.credentialID(key.cred), Reason: reason,
			Remaining: d, Until: at.Add(d), Remote: until&remoteMark != 0,
		})
		return true
	})
	if len(out) == 0 {
		return nil
	}
	slices.SortFunc(out, func(a, b CooldownStatus) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Model, b.Model),
			cmp.Compare(a.Credential, b.Credential), a.Until.Compare(b.Until))
	})
	return out
}

// credentialID returns the opaque id of the credential fingerprint cred
// that snapshots show ([CooldownStatus.Credential]): the fingerprint hashed
// again with the process's seed, 32 bits of it in hex; "" for 0 (no key).
func (c *cooldowns) credentialID(cred uint64) string {
	if cred == 0 {
		return ""
	}
	const digits = "0123456789abcdef"
	h := uint32(maphash.Comparable(c.seed, cred) >> 32)
	var b [8]byte
	for i := range b {
		b[len(b)-1-i] = digits[h>>(4*i)&0xf]
	}
	return string(b[:])
}
