package circuit

import (
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// testConfig is the transport's default policy.
func testConfig() Config {
	return Config{Ratio: 0.5, MinFailures: 3, Window: 30 * time.Second, OpenTimeout: 10 * time.Second, Probes: 1}
}

// guard makes a call of one attempt under the circuit of key, as the
// transport's retry loop does: admitted, made by attempt, reported by
// Attempted and settled by Done, each step's changes passed to report (nil:
// dropped).
func (r *Registry) guard(key Key, attempt func() (Outcome, time.Duration), report func(Change)) error {
	if report == nil {
		report = func(Change) {}
	}
	var t Ticket
	ch, err := r.Admit(&t, key)
	ch.Report(report)
	if err != nil {
		return err
	}
	out, hint := attempt()
	t.Attempted(out, hint).Report(report)
	t.Done(out, hint).Report(report)
	return nil
}

// TestNilRegistryAdmitsAll: with the breaker off, the transport has no
// registry, and every attempt goes.
func TestNilRegistryAdmitsAll(t *testing.T) {
	var r *Registry
	calls := 0
	if err := r.guard(Key{}, func() (Outcome, time.Duration) { calls++; return Failure, 0 }, nil); err != nil || calls != 1 {
		t.Errorf("nil registry: got %v after %d calls, want nil after 1", err, calls)
	}
	if s := r.Snapshot(); s != nil {
		t.Errorf("Snapshot() = %v, want nil", s)
	}
}

// TestDropsOutcomesOfAnEarlierState: an attempt admitted while the
// circuit was closed that ends after the circuit opened and closed again
// says nothing about the new closed state, and must not trip it.
func TestDropsOutcomesOfAnEarlierState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.MinFailures = 1
		r := New(cfg)
		key := Key{"h", "m"}
		release := make(chan struct{})
		var once sync.Once
		var wg sync.WaitGroup
		defer wg.Wait()
		defer once.Do(func() { close(release) })
		wg.Go(func() {
			r.guard(key, func() (Outcome, time.Duration) {
				<-release
				return Failure, 0
			}, nil)
		})
		synctest.Wait() // the slow attempt is admitted and waiting
		fail := func() (Outcome, time.Duration) { return Failure, 0 }
		ok := func() (Outcome, time.Duration) { return Success, 0 }
		if err := r.guard(key, fail, nil); err != nil {
			t.Fatal(err)
		}
		if s := r.Snapshot()[0].State; s != Open {
			t.Fatalf("after a failure: %v, want open", s)
		}
		time.Sleep(cfg.OpenTimeout + time.Millisecond)
		if err := r.guard(key, ok, nil); err != nil {
			t.Fatal(err)
		}
		if s := r.Snapshot()[0].State; s != Closed {
			t.Fatalf("after a successful probe: %v, want closed", s)
		}
		once.Do(func() { close(release) })
		wg.Wait()
		if st := r.Snapshot()[0]; st.State != Closed || st.Failures != 0 {
			t.Errorf("after the earlier attempt failed: %+v, want closed with no failure", st)
		}
	})
}

// TestFailuresLeaveTheWindow: failures further apart than the window never
// add up.
func TestFailuresLeaveTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		r := New(cfg)
		key := Key{"h", "m"}
		fail := func() (Outcome, time.Duration) { return Failure, 0 }
		for i := range 5 {
			r.guard(key, fail, nil)
			if st := r.Snapshot()[0]; st.State != Closed || st.Failures != 1 {
				t.Fatalf("failure %d, %v after the previous one: %+v, want closed, 1 in the window", i, cfg.Window, st)
			}
			time.Sleep(cfg.Window + cfg.Window/10)
		}
		for range cfg.MinFailures {
			r.guard(key, fail, nil)
		}
		if s := r.Snapshot()[0].State; s != Open {
			t.Errorf("after %d failures in the window: %v, want open", cfg.MinFailures, s)
		}
	})
}

// TestLateOutcomeAfterStateChange: a late outcome for a call put in flight
// before the circuit changed state is dropped, as Done drops outcomes; a
// second late outcome does nothing.
func TestLateOutcomeAfterStateChange(t *testing.T) {
	r := New(testConfig())
	key := Key{Host: "h", Model: "m"}
	var tk Ticket
	if !r.admitClosed(&tk, key) {
		t.Fatal("not admitted")
	}
	tk.Done(Success, 0)
	late := tk
	tk.c.gen.Add(1) // as a state change does
	late.Late(Failure, 0)
	if s, f, _ := tk.c.window(r.now()); s != 1 || f != 0 {
		t.Fatalf("window %d successes %d failures, want the success alone", s, f)
	}
	// Twice is once.
	tk.c.gen.Add(^uint32(0))
	late = tk
	late.Late(Failure, 0)
	late.Late(Failure, 0)
	if s, f, _ := tk.c.window(r.now()); s != 0 || f != 1 {
		t.Fatalf("window %d successes %d failures, want one failure", s, f)
	}
}

// TestAbandonFreesTheProbe: a call whose probe never reported (a panic
// between Admit and Attempted) gives the probe's place back when
// abandoned, and a call abandoned in flight stops counting as in flight.
func TestAbandonFreesTheProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.MinFailures = 1
		r := New(cfg)
		key := Key{"h", "m"}
		var inflight Ticket
		if _, err := r.Admit(&inflight, key); err != nil {
			t.Fatal(err)
		}
		if st := r.Snapshot()[0]; st.InFlight != 1 {
			t.Fatalf("admitted: %+v, want 1 in flight", st)
		}
		inflight.Abandon()
		if st := r.Snapshot()[0]; st.InFlight != 0 || st.Excluded != 1 {
			t.Fatalf("abandoned: %+v, want none in flight, 1 excluded", st)
		}
		r.guard(key, func() (Outcome, time.Duration) { return Failure, 0 }, nil)
		time.Sleep(cfg.OpenTimeout + time.Millisecond)
		var probe Ticket
		if _, err := r.Admit(&probe, key); err != nil {
			t.Fatalf("the probe: %v", err)
		}
		var other Ticket
		var oe *OpenError
		if _, err := r.Admit(&other, key); !errors.As(err, &oe) {
			t.Fatalf("a second attempt while the probe is out: %v, want refused", err)
		}
		probe.Abandon()
		if err := r.guard(key, func() (Outcome, time.Duration) { return Success, 0 }, nil); err != nil {
			t.Fatalf("after the probe was abandoned: %v, want a new probe admitted", err)
		}
		if s := r.Snapshot()[0].State; s != Closed {
			t.Errorf("after a successful probe: %v, want closed", s)
		}
	})
}

// TestProbeLateFailureReopens: a half-open probe whose success closed the
// circuit and whose stream then failed (a model that fails every stream
// after its first event) opens the circuit again at once; a late failure
// of a probe after the circuit changed state again is dropped.
func TestProbeLateFailureReopens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.MinFailures = 1
		r := New(cfg)
		key := Key{"h", "m"}
		fail := func() (Outcome, time.Duration) { return Failure, 0 }
		if err := r.guard(key, fail, nil); err != nil {
			t.Fatal(err)
		}
		probeCall := func() *Ticket {
			t.Helper()
			time.Sleep(cfg.OpenTimeout + time.Second) // the open period passes (fake time)
			var tk Ticket
			ch, err := r.Admit(&tk, key)
			if err != nil || tk.probe == nil {
				t.Fatalf("after the open period: %v, probe %v", err, tk.probe != nil)
			}
			ch.Report(func(Change) {})
			tk.Attempted(Success, 0).Report(func(Change) {})
			tk.Done(Success, 0).Report(func(Change) {})
			if s := r.Snapshot()[0].State; s != Closed {
				t.Fatalf("after a successful probe: %v, want closed", s)
			}
			return &tk
		}
		tk := probeCall()
		var changes []Change
		tk.Late(Failure, 0).Report(func(ch Change) { changes = append(changes, ch) })
		if s := r.Snapshot()[0].State; s != Open {
			t.Fatalf("after the probe's stream failed: %v, want open", s)
		}
		if len(changes) != 1 || changes[0].From != Closed || changes[0].To != Open {
			t.Errorf("changes %+v, want closed → open", changes)
		}
		tk.Late(Failure, 0) // twice is once
		// A probe's late failure after the circuit moved on says nothing.
		tk = probeCall()
		if err := r.guard(key, fail, nil); err != nil { // opens it again (MinFailures 1)
			t.Fatal(err)
		}
		time.Sleep(cfg.OpenTimeout + time.Second)
		tk2 := probeCall()
		tk.Late(Failure, 0)
		if s := r.Snapshot()[0].State; s != Closed {
			t.Fatalf("a stale probe's late failure changed the state to %v", s)
		}
		_ = tk2
	})
}
