package llmtransport

import (
	"hash/maphash"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmtransport/llmtransport/internal/redact"
)

// cooldowns remembers until when the server asked callers to wait after a
// rate limit, so that concurrent requests wait it out instead of each
// collecting its own 429.
//
// A rate limit belongs to whoever is limited: a cooldown is kept per
// (host, model, credential), where the credential is a keyed fingerprint of
// the request's API key (see credentialOf), never the key itself. One
// tenant's 429 does not hold back another tenant's requests, even for the
// same model on the same gateway.
//
// Setting or reading a cooldown is O(1): a concurrent map, no copy. The
// common case, no cooldown anywhere, costs one atomic load per request, and
// once every cooldown has passed, two. Expired entries are dropped in
// sweeps whose cost is amortised over the entries added since the previous
// one; at most maxCooldowns entries are kept, and a rate limit seen when
// the table is full of live cooldowns is not shared (the request that got
// it still waits before its own retry). Only waits the transport would
// honour are recorded (see run).
type cooldowns struct {
	off   bool
	seed  maphash.Seed
	fp    func(string) uint64 // the fleet's Fingerprint (WithSharedState); nil: none
	epoch time.Time           // deadlines count from here, on the monotonic clock

	m       sync.Map     // cooldownKey → *atomic.Int64: the deadline
	n       atomic.Int64 // entries in m
	horizon atomic.Int64 // the latest deadline ever set
	sweepAt atomic.Int64 // n at which set sweeps
	swept   atomic.Int64 // now() of the last sweep
	sweepMu sync.Mutex   // one sweep at a time
	max     int64
}

// maxCooldowns bounds the cooldown table: 65,536 entries of about 150
// bytes, ~10 MB at most.
const maxCooldowns = 1 << 16

// minSweep is the smallest table that set sweeps.
const minSweep = 1024

// cooldownKey names one cooldown.
type cooldownKey struct {
	circuitKey
	cred uint64 // credentialOf the request; 0 for none
}

// newCooldowns returns an empty cooldown table; off turns sharing off
// ([WithoutCooldowns]): set records nothing.
func newCooldowns(off bool) *cooldowns {
	c := &cooldowns{off: off, seed: maphash.MakeSeed(), epoch: time.Now(), max: maxCooldowns}
	c.sweepAt.Store(minSweep)
	return c
}

// now returns the time since c.epoch on the monotonic clock, in
// nanoseconds: the unit of the deadlines.
func (c *cooldowns) now() int64 { return int64(time.Since(c.epoch)) }

// A deadline's lowest bit says who set it: 0 this process, 1 another one of
// the fleet (setRemote). One nanosecond either way changes no wait.
const remoteMark = 1

// remaining returns how long req, for key, should still wait.
func (c *cooldowns) remaining(key circuitKey, req *http.Request) time.Duration {
	if c == nil || c.n.Load() == 0 {
		return 0
	}
	now := c.now()
	if now >= c.horizon.Load() {
		return 0 // every cooldown has passed
	}
	v, ok := c.m.Load(cooldownKey{key, c.credentialOf(req)})
	if !ok {
		return 0
	}
	return time.Duration(max(v.(*atomic.Int64).Load()-now, 0))
}

// set starts (or lengthens, never shortens) the cooldown of req, for key,
// for d from now. It returns the credential it keyed it with.
func (c *cooldowns) set(key circuitKey, req *http.Request, d time.Duration) uint64 {
	if c == nil || c.off || d <= 0 {
		return 0
	}
	cred := c.credentialOf(req)
	c.setKey(cooldownKey{key, cred}, (c.now()+int64(d))&^remoteMark)
	return cred
}

// setRemote applies a cooldown another process of the fleet published: d
// from now, plus j, for the credential fingerprint cred. A cooldown that
// would end no more than slack after the one in place changes nothing (the
// echo of this process's own, or one just as long). It reports whether it
// changed the cooldown.
func (c *cooldowns) setRemote(key circuitKey, cred uint64, d, j, slack time.Duration) bool {
	if c == nil || c.off || d <= 0 {
		return false
	}
	k := cooldownKey{key, cred}
	now := c.now()
	if v, ok := c.m.Load(k); ok && v.(*atomic.Int64).Load()+int64(slack) >= now+int64(d) {
		return false
	}
	c.setKey(k, (now+int64(d+j))|remoteMark)
	return true
}

// remote reports whether the cooldown of req, for key, was set by another
// process of the fleet. It is asked only while the request waits for it.
func (c *cooldowns) remote(key circuitKey, req *http.Request) bool {
	v, ok := c.m.Load(cooldownKey{key, c.credentialOf(req)})
	return ok && v.(*atomic.Int64).Load()&remoteMark != 0
}

// setKey starts (or lengthens, never shortens) the cooldown k until until.
func (c *cooldowns) setKey(k cooldownKey, until int64) {
	now := c.now()
	extend(&c.horizon, until)
	if v, ok := c.m.Load(k); ok {
		extend(v.(*atomic.Int64), until)
		return
	}
	if n := c.n.Load(); n >= c.max {
		// Full: sweep at most once a second, so that a table full of
		// live cooldowns does not cost a sweep per rate limit.
		if now-c.swept.Load() >= int64(time.Second) {
			c.sweep(now)
		}
		if c.n.Load() >= c.max {
			return
		}
	} else if n >= c.sweepAt.Load() {
		c.sweep(now)
	}
	nv := new(atomic.Int64)
	nv.Store(until)
	if v, loaded := c.m.LoadOrStore(k, nv); loaded {
		extend(v.(*atomic.Int64), until)
		return
	}
	c.n.Add(1)
}

// sweep drops the cooldowns that have passed, and sets the size of the
// next sweep to twice what is left, so that sweeps cost O(1) per entry
// added.
func (c *cooldowns) sweep(now int64) {
	if !c.sweepMu.TryLock() {
		return // another request is sweeping
	}
	defer c.sweepMu.Unlock()
	c.swept.Store(now)
	c.m.Range(func(k, v any) bool {
		u := v.(*atomic.Int64)
		if u.Load() > now || !c.m.CompareAndDelete(k, v) {
			return true
		}
		if until := u.Load(); until > now {
			// A set extended it between the check and the delete:
			// put it back (or extend what another set put there).
			if w, loaded := c.m.LoadOrStore(k, v); loaded {
				extend(w.(*atomic.Int64), until)
			}
			return true
		}
		c.n.Add(-1)
		return true
	})
	c.sweepAt.Store(max(2*c.n.Load(), minSweep))
}

// extend raises v to until, if until is later.
func extend(v *atomic.Int64, until int64) {
	for {
		cur := v.Load()
		if cur >= until || v.CompareAndSwap(cur, until) {
			return
		}
	}
}

// credentialOf returns a fingerprint of req's API key: a hash keyed with a
// random per-process seed of the API keys the request carries (the headers
// and the ?key= parameter of [redact.APIKeys], the same rules that decide
// what is masked), or 0 when it carries none. It cannot be turned back into
// the key, and is never recorded outside this process's memory.
//
// With shared state ([WithSharedState]), it is the fleet's Fingerprint
// instead, the same in every process, so that local and remote cooldowns
// are one table's entries: a request looks up its cooldown as it does
// without a fleet, and only while a cooldown is live.
func (c *cooldowns) credentialOf(req *http.Request) uint64 {
	if c.fp != nil {
		if cred := sharedCredential(req); cred != "" {
			return c.fp(cred)
		}
		return 0
	}
	var h maphash.Hash
	h.SetSeed(c.seed)
	found := false
	for where, v := range redact.APIKeys(req) {
		h.WriteString(where)
		h.WriteString(v)
		found = true
	}
	if !found {
		return 0
	}
	return h.Sum64() | 1
}

// sharedCredential returns the credential the fleet fingerprints for req:
// its one API key as sent (the commonest case, without a copy), its keys
// joined by newlines when it carries several, "" when none.
func sharedCredential(req *http.Request) string {
	var (
		first string
		b     strings.Builder
		n     int
	)
	for _, v := range redact.APIKeys(req) {
		switch n {
		case 0:
			first = v
		case 1:
			b.WriteString(first)
			fallthrough
		default:
			b.WriteByte('\n')
			b.WriteString(v)
		}
		n++
	}
	if n > 1 {
		return b.String()
	}
	return first
}
