package llmtransport

import (
	"context"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"
)

// fakeFleet is an in-memory store of holds connecting the Transports of one
// test as if they were processes of a fleet: each gets a member of it
// (fakeFleet.member) as its SharedState. Like a real store, it keeps holds
// extend-only with relative TTLs (a publish that would not extend the hold
// in place is dropped), delivers each new hold to every member, the
// publisher included, from the member's own goroutine, backfills the live
// holds when a member subscribes, and grants the probe lease of a model to
// one member at a time.
type fakeFleet struct {
	mu     sync.Mutex
	holds  map[fakeHoldKey]fakeHeld
	leases map[[2]string]fakeLease
	subs   map[*fakeSub]bool

	hangLease  atomic.Bool  // Lease waits for its context
	leaseCalls atomic.Int32 // Lease calls
}

type fakeHoldKey struct {
	open        bool // HoldOpen (else HoldCooldown)
	host, model string
	cred        uint64
}

type fakeHeld struct {
	h     Hold
	until time.Time
}

type fakeLease struct {
	owner *fakeMember
	until time.Time
}

type fakeSub struct {
	m     *fakeMember
	in    chan Hold
	quit  chan struct{}
	done  chan struct{}
	apply func(Hold)
}

func newFakeFleet() *fakeFleet {
	return &fakeFleet{holds: map[fakeHoldKey]fakeHeld{}, leases: map[[2]string]fakeLease{}, subs: map[*fakeSub]bool{}}
}

// fakeMember is one process's view of the fleet: a SharedState.
type fakeMember struct {
	f         *fakeFleet
	published atomic.Int32
	applied   chan Hold // every hold delivered, after apply (tests wait on it); dropped when full
}

func (f *fakeFleet) member() *fakeMember {
	return &fakeMember{f: f, applied: make(chan Hold, 256)}
}

var _ SharedState = (*fakeMember)(nil)

func (m *fakeMember) Fingerprint(credential string) uint64 {
	if credential == "" {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte("fleet-secret\x00"))
	h.Write([]byte(credential))
	return h.Sum64() | 1
}

func (m *fakeMember) Publish(h Hold) {
	m.published.Add(1)
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	k := fakeHoldKey{open: h.Kind != HoldCooldown, host: h.Host, model: h.Model, cred: h.Credential}
	switch h.Kind {
	case HoldRelease:
		delete(f.holds, k)
		delete(f.leases, [2]string{h.Host, h.Model})
	default:
		if cur, ok := f.holds[k]; ok && !cur.until.Before(now.Add(h.TTL)) {
			return // extend-only: nothing new to say
		}
		f.holds[k] = fakeHeld{h: h, until: now.Add(h.TTL)}
	}
	f.deliverLocked(h)
}

// deliver hands h to every member as it is, bypassing the store's
// extend-only rule (a test's way to send a shorter hold).
func (f *fakeFleet) deliver(h Hold) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deliverLocked(h)
}

func (f *fakeFleet) deliverLocked(h Hold) {
	for s := range f.subs {
		select {
		case s.in <- h:
		default: // a full queue drops, as a real store's would
		}
	}
}

func (m *fakeMember) Subscribe(apply func(Hold)) (stop func()) {
	f := m.f
	s := &fakeSub{m: m, in: make(chan Hold, 256), quit: make(chan struct{}), done: make(chan struct{}), apply: apply}
	f.mu.Lock()
	now := time.Now()
	for _, held := range f.holds { // the backfill
		if d := held.until.Sub(now); d > 0 {
			h := held.h
			h.TTL = d
			s.in <- h
		}
	}
	f.subs[s] = true
	f.mu.Unlock()
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.quit:
				return
			case h := <-s.in:
				s.apply(h)
				select {
				case m.applied <- h:
				default:
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.subs, s)
			f.mu.Unlock()
			close(s.quit)
			<-s.done
		})
	}
}

func (m *fakeMember) Lease(ctx context.Context, host, model string, ttl time.Duration) (bool, time.Duration) {
	f := m.f
	f.leaseCalls.Add(1)
	if f.hangLease.Load() {
		<-ctx.Done()
		return true, 0 // fail open
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	k := [2]string{host, model}
	if l, ok := f.leases[k]; ok && l.owner != m && l.until.After(now) {
		return false, l.until.Sub(now)
	}
	f.leases[k] = fakeLease{owner: m, until: now.Add(ttl)}
	return true, 0
}

// nopState is a SharedState that shares nothing: the cost of shared state
// on with no live holds.
type nopState struct{}

func (nopState) Fingerprint(string) uint64 { return 0 }
func (nopState) Publish(Hold)              {}
func (nopState) Subscribe(func(Hold)) func() {
	return func() {}
}
func (nopState) Lease(context.Context, string, string, time.Duration) (bool, time.Duration) {
	return true, 0
}
