package llmtransport

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestCircuitsEvictIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := defaultBreakerConfig()
		cfg.idleAfter, cfg.maxCircuits = time.Minute, 4
		r := newCircuits(cfg)
		use := func(model string, o outcome) bool {
			called := false
			r.guard(t.Context(), circuitKey{"h", model}, func() (outcome, time.Duration) { called = true; return o, 0 })
			return called
		}
		models := func() string {
			var m []string
			for _, c := range r.snapshot() {
				m = append(m, c.Model)
			}
			return strings.Join(m, ",")
		}
		for _, m := range []string{"a", "b", "c", "d"} {
			use(m, outcomeSuccess)
		}
		for range DefaultBreakerMinFailures {
			use("d", outcomeFailure) // d is open: never dropped
		}
		// Full: a new model goes through without a circuit.
		if !use("e", outcomeSuccess) || models() != "a,b,c,d" {
			t.Fatalf("full registry: %s", models())
		}
		// A forced sweep drops nothing that was used since the last one.
		time.Sleep(2 * time.Second)
		if use("e", outcomeSuccess); models() != "a,b,c,d" {
			t.Fatalf("after a sweep of used circuits: %s", models())
		}
		time.Sleep(2 * time.Second)
		use("a", outcomeSuccess)
		if use("e", outcomeSuccess); models() != "a,d,e" {
			t.Fatalf("after a sweep with b and c idle: got %s, want a,d,e", models())
		}
		// Periodic sweeps drop the closed circuits unused since the
		// previous sweep.
		time.Sleep(cfg.idleAfter)
		use("f", outcomeSuccess) // a is idle; e was used after the last sweep
		if got := models(); got != "d,e,f" {
			t.Fatalf("after an idle period: got %s, want d,e,f", got)
		}
		time.Sleep(cfg.idleAfter)
		use("g", outcomeSuccess) // e is idle
		if got := models(); got != "d,f,g" {
			t.Fatalf("after another idle period: got %s, want d,f,g", got)
		}
		// A dropped circuit is not found again, even if it was the last
		// one found in its shard: e comes back as a new circuit.
		if use("e", outcomeSuccess); models() != "d,e,f,g" {
			t.Fatalf("after e came back: got %s, want d,e,f,g", models())
		}
		for _, m := range []string{"a", "b", "c", "e"} {
			if c := r.get(circuitKey{"h", m}); c != nil && c.dropped.Load() {
				t.Errorf("get(%q) returned a dropped circuit", m)
			}
		}
	})
}

func TestCircuitsConcurrentUse(t *testing.T) {
	r := newCircuits(defaultBreakerConfig())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				key := circuitKey{"h", fmt.Sprintf("m%d", (i*7+w)%300)}
				r.guard(t.Context(), key, func() (outcome, time.Duration) { return outcome(i % 3), 0 })
			}
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 50 {
			r.snapshot()
		}
	}()
	wg.Wait()
	if n := len(r.snapshot()); n != 300 || r.count != 300 {
		t.Errorf("got %d circuits (count %d), want 300", n, r.count)
	}
}

func TestCircuitStateString(t *testing.T) {
	for s, want := range map[CircuitState]string{CircuitClosed: "closed", CircuitHalfOpen: "half-open", CircuitOpen: "open", 9: "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("%d: got %q, want %q", s, got, want)
		}
	}
}

// BenchmarkCircuitAdmission measures the breaker's cost for an admitted
// attempt: the registry lookup and the circuit's bookkeeping, over 1,000
// models in parallel.
func BenchmarkCircuitAdmission(b *testing.B) {
	r := newCircuits(defaultBreakerConfig())
	keys := make([]circuitKey, 1000)
	for i := range keys {
		keys[i] = circuitKey{"api.example.com", fmt.Sprintf("model-%04d", i)}
		r.guard(context.Background(), keys[i], func() (outcome, time.Duration) { return outcomeSuccess, 0 })
	}
	ctx := context.Background()
	var seed atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(7919))
		attempt := func() (outcome, time.Duration) { return outcomeSuccess, 0 }
		for pb.Next() {
			i++
			if err := r.guard(ctx, keys[i%len(keys)], attempt); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCircuitLookup measures the registry lookup alone, to separate
// it from the closed path's bookkeeping (a clock read and an atomic add).
func BenchmarkCircuitLookup(b *testing.B) {
	r := newCircuits(defaultBreakerConfig())
	keys := make([]circuitKey, 1000)
	for i := range keys {
		keys[i] = circuitKey{"api.example.com", fmt.Sprintf("model-%04d", i)}
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

func TestCircuitsReportChangesInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := defaultBreakerConfig()
		cfg.openTimeout = 3 * time.Second
		var (
			mu      sync.Mutex
			changes []CircuitStateChange
			inside  atomic.Int32
		)
		cfg.observers = []func(context.Context, CircuitStateChange){func(_ context.Context, ch CircuitStateChange) {
			if inside.Add(1) != 1 {
				t.Error("observer called concurrently for one circuit")
			}
			mu.Lock()
			changes = append(changes, ch)
			mu.Unlock()
			time.Sleep(5 * time.Second) // longer than the open period: others change the state meanwhile
			inside.Add(-1)
		}}
		r := newCircuits(cfg)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := range 300 {
					r.guard(t.Context(), circuitKey{"h", "m"}, func() (outcome, time.Duration) {
						time.Sleep(time.Duration(w+1) * 10 * time.Millisecond)
						if (i*7+w)%5 < 3 {
							return outcomeFailure, 0
						}
						return outcomeSuccess, 0
					})
					time.Sleep(100 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		if len(changes) < 10 {
			t.Fatalf("only %d changes", len(changes))
		}
		prev := CircuitClosed
		for i, ch := range changes {
			if ch.From != prev {
				t.Fatalf("change %d is %v→%v after a change to %v", i, ch.From, ch.To, prev)
			}
			prev = ch.To
		}
	})
}
