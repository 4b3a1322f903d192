package llmtransport

import (
	"sync"
	"sync/atomic"
)

// budget bounds retries across the calls of a Transport to one host, so
// that a dead upstream under a burst is not hit by every call's every
// retry. It is a token bucket, in the spirit of the AWS SDK's retry quota:
// a retry takes a token; a call that ends in success gives back the tokens
// its retries took (retries that worked cost nothing) or, when it needed
// none, adds a fraction of a token. Retries that end in failure are what
// drains it, and only successes refill it. It is lock-free; a nil *budget
// allows every retry.
type budget struct {
	milli   atomic.Int64 // tokens × 1000
	deposit int64        // ratio × 1000
	max     int64        // burst × 1000
}

func newBudget(ratio float64, burst int) *budget {
	if ratio <= 0 || burst <= 0 {
		return nil
	}
	b := &budget{deposit: max(int64(ratio*1000), 1), max: int64(burst) * 1000}
	b.milli.Store(b.max)
	return b
}

// retry takes a token for one retry and reports whether there was one.
func (b *budget) retry() bool {
	if b == nil {
		return true
	}
	for {
		v := b.milli.Load()
		if v < 1000 {
			return false
		}
		if b.milli.CompareAndSwap(v, v-1000) {
			return true
		}
	}
}

// settle records the end of a call that took retries tokens. Only a
// success puts tokens back. While the bucket is full it writes nothing, so
// a healthy service costs one atomic load per call.
func (b *budget) settle(success bool, retries int) {
	if b == nil || !success {
		return
	}
	add := int64(retries) * 1000
	if retries == 0 {
		add = b.deposit
	}
	for {
		v := b.milli.Load()
		if v >= b.max {
			return
		}
		if b.milli.CompareAndSwap(v, min(v+add, b.max)) {
			return
		}
	}
}

// budgets holds one retry budget per host (upstream), as Envoy keeps one
// per cluster: a dead provider drains its own budget, never another's.
// Hosts beyond maxBudgets share one budget. A nil *budgets is a disabled
// budget.
type budgets struct {
	ratio float64
	burst int

	m        sync.Map // host → *hostBudget
	n        atomic.Int32
	last     atomic.Pointer[hostBudget] // the budget found last
	overflow *budget
}

// maxBudgets is the number of hosts with a budget of their own.
const maxBudgets = 1024

type hostBudget struct {
	host string
	b    *budget
}

func newBudgets(ratio float64, burst int) *budgets {
	if newBudget(ratio, burst) == nil {
		return nil
	}
	return &budgets{ratio: ratio, burst: burst, overflow: newBudget(ratio, burst)}
}

// of returns the budget of host.
func (bs *budgets) of(host string) *budget {
	if bs == nil {
		return nil
	}
	if l := bs.last.Load(); l != nil && l.host == host {
		return l.b
	}
	v, ok := bs.m.Load(host)
	if !ok {
		if bs.n.Load() >= maxBudgets {
			return bs.overflow
		}
		var loaded bool
		if v, loaded = bs.m.LoadOrStore(host, &hostBudget{host, newBudget(bs.ratio, bs.burst)}); !loaded {
			bs.n.Add(1)
		}
	}
	hb := v.(*hostBudget)
	bs.last.Store(hb)
	return hb.b
}
