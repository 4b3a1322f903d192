package circuit

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// The registry's limits when Config leaves them zero.
const (
	defaultIdleAfter   = 10 * time.Minute
	defaultMaxCircuits = 10000
	// minForcedSweep is the shortest time between two sweeps forced by a
	// full registry.
	minForcedSweep = time.Second
)

// numShards is the number of registry shards. Inserting a circuit copies
// one shard's map, so sharding keeps that cheap for thousands of models.
const numShards = 32

// shard is one part of the registry: its circuits, and the one found last,
// checked before the map since most requests go to the same few models.
type shard struct {
	m    atomic.Pointer[map[Key]*circuit]
	last atomic.Pointer[circuit]
}

// Registry is the per-(host, model) registry of circuits. Circuits are
// created on first use; closed circuits unused for Config.IdleAfter are
// dropped when a new circuit is created, and at most Config.MaxCircuits are
// kept: further keys get no circuit, and their attempts always go. Lookups
// are lock-free: each shard is an immutable map behind an atomic pointer,
// replaced (copy on write) when a circuit is added or dropped.
//
// A nil *Registry has no circuits: it admits every attempt.
type Registry struct {
	cfg      Config
	epoch    time.Time // now() counts from here, on the monotonic clock
	bucket   int64     // the length of a tenth of the window, in ns
	settings gobreaker.Settings
	shards   [numShards]shard

	// mu serialises the writers of shards.
	mu        sync.Mutex
	count     int   // circuits in shards
	lastSweep int64 // now() of the last sweep
}

// New returns a registry of circuits with the policy cfg. cfg.Window and
// cfg.OpenTimeout must be positive; MinFailures and Probes below 1 count
// as 1.
func New(cfg Config) *Registry {
	cfg.Probes = max(cfg.Probes, 1)
	cfg.MinFailures = max(cfg.MinFailures, 1)
	cfg.IdleAfter = cmp.Or(cfg.IdleAfter, defaultIdleAfter)
	cfg.MaxCircuits = cmp.Or(cfg.MaxCircuits, defaultMaxCircuits)
	r := &Registry{cfg: cfg, epoch: time.Now(), bucket: int64(max(cfg.Window/windowBuckets, time.Millisecond))}
	r.settings = gobreaker.Settings{
		MaxRequests: uint32(cfg.Probes),
		Timeout:     cfg.OpenTimeout,
		IsExcluded:  func(err error) bool { return err == errOutcomeExcluded },
	}
	return r
}

// now is the time on the monotonic clock, in nanoseconds since r.epoch.
func (r *Registry) now() int64 { return int64(time.Since(r.epoch)) }

// lookup returns the circuit of key (nil when the registry is full), marked
// as used.
func (r *Registry) lookup(key Key) *circuit {
	c := r.get(key)
	if c != nil && !c.used.Load() {
		c.used.Store(true)
	}
	return c
}

// shardOf picks key's shard from the model's length and a few of its bytes:
// cheap, and spread enough for names that share a prefix.
func shardOf(key Key) int {
	m := key.Model
	h := uint32(len(m))*2654435761 + uint32(len(key.Host))
	if n := len(m); n > 0 {
		h = (h ^ uint32(m[n-1])) * 16777619
		h = (h ^ uint32(m[n/2])) * 16777619
		if n > 1 {
			h = (h ^ uint32(m[n-2])) * 16777619
		}
	}
	return int(h>>8) % numShards
}

// get returns the circuit of key, creating it if needed. It returns nil
// when the registry is full.
func (r *Registry) get(key Key) *circuit {
	s := &r.shards[shardOf(key)]
	if c := s.last.Load(); c != nil && c.key == key && !c.dropped.Load() {
		return c
	}
	if m := s.m.Load(); m != nil {
		if c := (*m)[key]; c != nil {
			s.last.Store(c)
			return c
		}
	}
	return r.insert(key, s)
}

// insert adds a circuit for key to shard s (copy on write), first dropping
// idle circuits when it is time to.
func (r *Registry) insert(key Key, s *shard) *circuit {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := s.m.Load(); m != nil {
		if c := (*m)[key]; c != nil {
			return c
		}
	}
	now := r.now()
	since := time.Duration(now - r.lastSweep)
	if since >= r.cfg.IdleAfter || (r.count >= r.cfg.MaxCircuits && since >= min(minForcedSweep, r.cfg.IdleAfter)) {
		r.sweepLocked(now)
	}
	if r.count >= r.cfg.MaxCircuits {
		return nil
	}
	c := r.newCircuit(key)
	var old map[Key]*circuit
	if p := s.m.Load(); p != nil {
		old = *p
	}
	m := make(map[Key]*circuit, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[key] = c
	s.m.Store(&m)
	r.count++
	return c
}

// sweepLocked drops the closed circuits that admitted no request since the
// previous sweep, and clears the used marks of the others.
// r.mu must be held.
func (r *Registry) sweepLocked(now int64) {
	r.lastSweep = now
	for i := range r.shards {
		s := &r.shards[i]
		p := s.m.Load()
		if p == nil {
			continue
		}
		drop := 0
		for _, c := range *p {
			if c.idle() {
				drop++
			}
		}
		if drop > 0 {
			m := make(map[Key]*circuit, len(*p)-drop)
			for k, c := range *p {
				if c.idle() {
					// Marked first: a lookup that found it in the
					// old map may still leave it in s.last.
					c.dropped.Store(true)
				} else {
					m[k] = c
				}
			}
			s.m.Store(&m)
			if l := s.last.Load(); l != nil && l.dropped.Load() {
				s.last.CompareAndSwap(l, nil)
			}
			r.count -= len(*p) - len(m)
			p = &m
		}
		for _, c := range *p {
			c.used.Store(false)
		}
	}
}

// Snapshot returns the status of every circuit, sorted by host and model;
// nil for a nil Registry.
func (r *Registry) Snapshot() []Status {
	if r == nil {
		return nil
	}
	now := r.now()
	out := []Status{}
	for i := range r.shards {
		p := r.shards[i].m.Load()
		if p == nil {
			continue
		}
		for _, c := range *p {
			st := Status{Key: c.key, State: c.st()}
			if st.State == Open {
				if d := c.openUntil.Load() - now; d >= 0 {
					st.RetryIn = time.Duration(d)
				} else {
					st.State = HalfOpen
				}
			}
			if st.State != HalfOpen {
				// An open circuit keeps its window (cleared when it
				// closes): the calls that opened it, until they age out.
				st.Successes, st.Failures, st.Excluded = c.window(now)
				st.Requests = st.Successes + st.Failures + st.Excluded
				st.InFlight = uint32(max(c.inflight.Load(), 0))
			} else { // half-open
				n := c.cb.Counts()
				st.Requests, st.Successes, st.Failures, st.Excluded = n.Requests, n.TotalSuccesses, n.TotalFailures, n.TotalExclusions
			}
			c.heldStatus(&st, now)
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b Status) int {
		return cmp.Or(cmp.Compare(a.Key.Host, b.Key.Host), cmp.Compare(a.Key.Model, b.Key.Model))
	})
	return out
}
