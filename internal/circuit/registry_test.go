package circuit

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestEvictIdle: a full registry gives new keys no circuit, forced sweeps
// and periodic ones drop the closed circuits unused since the previous
// sweep (never an open one), and a dropped circuit is not found again.
func TestEvictIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.IdleAfter, cfg.MaxCircuits = time.Minute, 4
		r := New(cfg)
		use := func(model string, o Outcome) bool {
			called := false
			r.guard(Key{"h", model}, func() (Outcome, time.Duration) { called = true; return o, 0 }, nil)
			return called
		}
		models := func() string {
			var m []string
			for _, c := range r.Snapshot() {
				m = append(m, c.Key.Model)
			}
			return strings.Join(m, ",")
		}
		for _, m := range []string{"a", "b", "c", "d"} {
			use(m, Success)
		}
		for range cfg.MinFailures {
			use("d", Failure) // d is open: never dropped
		}
		// Full: a new model goes through without a circuit.
		if !use("e", Success) || models() != "a,b,c,d" {
			t.Fatalf("full registry: %s", models())
		}
		// A forced sweep drops nothing that was used since the last one.
		time.Sleep(2 * time.Second)
		if use("e", Success); models() != "a,b,c,d" {
			t.Fatalf("after a sweep of used circuits: %s", models())
		}
		time.Sleep(2 * time.Second)
		use("a", Success)
		if use("e", Success); models() != "a,d,e" {
			t.Fatalf("after a sweep with b and c idle: got %s, want a,d,e", models())
		}
		// Periodic sweeps drop the closed circuits unused since the
		// previous sweep.
		time.Sleep(cfg.IdleAfter)
		use("f", Success) // a is idle; e was used after the last sweep
		if got := models(); got != "d,e,f" {
			t.Fatalf("after an idle period: got %s, want d,e,f", got)
		}
		time.Sleep(cfg.IdleAfter)
		use("g", Success) // e is idle
		if got := models(); got != "d,f,g" {
			t.Fatalf("after another idle period: got %s, want d,f,g", got)
		}
		// A dropped circuit is not found again, even if it was the last
		// one found in its shard: e comes back as a new circuit.
		if use("e", Success); models() != "d,e,f,g" {
			t.Fatalf("after e came back: got %s, want d,e,f,g", models())
		}
		for _, m := range []string{"a", "b", "c", "e"} {
			if c := r.get(Key{"h", m}); c != nil && c.dropped.Load() {
				t.Errorf("get(%q) returned a dropped circuit", m)
			}
		}
	})
}

// TestConcurrentUse: calls to 300 models from 8 goroutines, with snapshots
// taken meanwhile, make 300 circuits (run with -race).
func TestConcurrentUse(t *testing.T) {
	r := New(testConfig())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				key := Key{"h", fmt.Sprintf("m%d", (i*7+w)%300)}
				r.guard(key, func() (Outcome, time.Duration) { return Outcome(i % 3), 0 }, nil)
			}
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 50 {
			r.Snapshot()
		}
	}()
	wg.Wait()
	if n := len(r.Snapshot()); n != 300 || r.count != 300 {
		t.Errorf("got %d circuits (count %d), want 300", n, r.count)
	}
}

// TestReportChangesInOrder: however many calls change a circuit's state
// concurrently, its changes are reported in order, one at a time, even by
// a report that takes longer than the open period.
func TestReportChangesInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.OpenTimeout = 3 * time.Second
		var (
			mu      sync.Mutex
			changes []Change
			inside  atomic.Int32
		)
		report := func(ch Change) {
			if inside.Add(1) != 1 {
				t.Error("report called concurrently for one circuit")
			}
			mu.Lock()
			changes = append(changes, ch)
			mu.Unlock()
			time.Sleep(5 * time.Second) // longer than the open period: others change the state meanwhile
			inside.Add(-1)
		}
		r := New(cfg)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := range 300 {
					r.guard(Key{"h", "m"}, func() (Outcome, time.Duration) {
						time.Sleep(time.Duration(w+1) * 10 * time.Millisecond)
						if (i*7+w)%5 < 3 {
							return Failure, 0
						}
						return Success, 0
					}, report)
					time.Sleep(100 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		if len(changes) < 10 {
			t.Fatalf("only %d changes", len(changes))
		}
		prev := Closed
		for i, ch := range changes {
			if ch.From != prev {
				t.Fatalf("change %d is %v→%v after a change to %v", i, ch.From, ch.To, prev)
			}
			prev = ch.To
		}
	})
}
