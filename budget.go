package llmtransport

import "sync/atomic"

// budget is a retry budget in the style of gRPC retry throttling: a token
// bucket that every call fills by ratio and every retry empties by one. It is
// lock-free; a nil *budget allows every retry.
type budget struct {
	milli   atomic.Int64 // tokens × 1000
	deposit int64        // ratio × 1000
	max     int64        // burst × 1000
}

func newBudget(ratio float64, burst int) *budget {
	if ratio <= 0 {
		return nil
	}
	b := &budget{deposit: int64(ratio * 1000), max: int64(burst) * 1000}
	if b.deposit < 1 {
		b.deposit = 1
	}
	b.milli.Store(b.max)
	return b
}

// call records a new call. It writes nothing while the bucket is full, so a
// healthy service costs one atomic load per call.
func (b *budget) call() {
	if b == nil {
		return
	}
	for {
		v := b.milli.Load()
		if v >= b.max {
			return
		}
		n := min(v+b.deposit, b.max)
		if b.milli.CompareAndSwap(v, n) {
			return
		}
	}
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
