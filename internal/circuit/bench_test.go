package circuit

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCircuitAdmission measures the breaker's cost for an admitted
// call of one attempt: the registry lookup and the circuit's bookkeeping
// (Admit, Attempted, Done), over 1,000 models in parallel.
func BenchmarkCircuitAdmission(b *testing.B) {
	r := New(testConfig())
	keys := make([]Key, 1000)
	for i := range keys {
		keys[i] = Key{"api.example.com", fmt.Sprintf("model-%04d", i)}
		r.guard(keys[i], func() (Outcome, time.Duration) { return Success, 0 }, nil)
	}
	var seed atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(7919))
		attempt := func() (Outcome, time.Duration) { return Success, 0 }
		report := func(Change) {}
		for pb.Next() {
			i++
			if err := r.guard(keys[i%len(keys)], attempt, report); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCircuitLookup measures the registry lookup alone, to separate
// it from the closed path's bookkeeping (a clock read and an atomic add).
func BenchmarkCircuitLookup(b *testing.B) {
	r := New(testConfig())
	keys := make([]Key, 1000)
	for i := range keys {
		keys[i] = Key{"api.example.com", fmt.Sprintf("model-%04d", i)}
		r.get(keys[i])
	}
	var seed atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(7919))
		for pb.Next() {
			i++
			if r.get(keys[i%len(keys)]) == nil {
				b.Fatal("no circuit")
			}
		}
	})
}
