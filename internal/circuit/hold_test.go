package circuit

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// admit1 admits one attempt of a new call on key; it returns the ticket and
// Admit's error.
func admit1(r *Registry, key Key) (*Ticket, error) {
	t := new(Ticket)
	_, err := r.Admit(t, key)
	return t, err
}

// TestHoldRefusesThenLeases: a hold refuses every attempt with a held
// *OpenError until its end, whatever the circuit's own (closed) state; then
// exactly one call gets ErrLease, the others are refused while it asks; a
// lease denied holds for the time given, a lease granted lets one probe
// through, whose success releases the hold.
func TestHoldRefusesThenLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(testConfig())
		key := Key{"h", "m"}
		if !r.Hold(key, 2*time.Second, "overloaded", true) {
			t.Fatal("Hold on a new circuit reported no change")
		}
		_, err := admit1(r, key)
		var oe *OpenError
		if !errors.As(err, &oe) || !oe.Held || !oe.Remote || oe.Reason != "overloaded" || oe.RetryIn != 2*time.Second {
			t.Fatalf("held: Admit = %#v, want a remote held refusal for 2s", err)
		}
		if d := r.HeldFor(key); d != 2*time.Second {
			t.Errorf("HeldFor = %v, want 2s", d)
		}
		if s := r.Snapshot(); len(s) != 1 || s[0].State != Open || !s[0].Held || !s[0].HoldRemote || s[0].HoldReason != "overloaded" || s[0].RetryIn != 2*time.Second {
			t.Errorf("Snapshot = %+v", s)
		}
		time.Sleep(2 * time.Second)
		first, err := admit1(r, key)
		if err != ErrLease {
			t.Fatalf("after the hold: Admit = %v, want ErrLease", err)
		}
		if _, err := admit1(r, key); !errors.As(err, &oe) || !oe.Held {
			t.Fatalf("while the lease is asked: Admit = %v, want a held refusal", err)
		}
		// Denied for 1s: refused for that long, then asked again.
		if _, err := r.Leased(first, key, false, time.Second); !errors.As(err, &oe) || oe.RetryIn != time.Second {
			t.Fatalf("lease denied: %v, want a refusal for 1s", err)
		}
		time.Sleep(time.Second)
		probe, err := admit1(r, key)
		if err != ErrLease {
			t.Fatalf("after the lease's time: Admit = %v, want ErrLease", err)
		}
		if _, err := r.Leased(probe, key, true, 0); err != nil {
			t.Fatalf("lease granted: %v, want the probe admitted", err)
		}
		if _, err := admit1(r, key); !errors.As(err, &oe) || !oe.Held {
			t.Fatalf("while probing: Admit = %v, want a held refusal", err)
		}
		probe.Attempted(Success, 0)
		if e := probe.TakeHoldEnd(); e != HoldReleased {
			t.Errorf("probe success: hold end %v, want released", e)
		}
		probe.Done(Success, 0)
		if _, err := admit1(r, key); err != nil {
			t.Errorf("after the release: Admit = %v", err)
		}
		if s := r.Snapshot(); s[0].Held || s[0].State != Closed {
			t.Errorf("after the release: %+v", s[0])
		}
	})
}

// TestHoldProbeFailureHoldsAgain: a failing hold probe holds the circuit
// again for the open period (as a local hold, with its cause).
func TestHoldProbeFailureHoldsAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(testConfig())
		key := Key{"h", "m"}
		r.Hold(key, time.Second, "overloaded", true)
		time.Sleep(time.Second)
		probe, _ := admit1(r, key)
		if _, err := r.Leased(probe, key, true, 0); err != nil {
			t.Fatal(err)
		}
		probe.SetCause("model_not_found")
		probe.Attempted(Failure, 0)
		if e := probe.TakeHoldEnd(); e != HoldReopened {
			t.Errorf("probe failure: hold end %v, want reopened", e)
		}
		var oe *OpenError
		if _, err := admit1(r, key); !errors.As(err, &oe) || oe.Remote || oe.Reason != "model_not_found" || oe.RetryIn != testConfig().OpenTimeout {
			t.Errorf("after a failed probe: %#v", err)
		}
	})
}

// TestHoldOnlyExtends: a shorter hold never shortens a longer one; a
// longer one extends it; Release ends it at once; a hold's end is the
// latest asked.
func TestHoldOnlyExtends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(testConfig())
		key := Key{"h", "m"}
		r.Hold(key, 5*time.Second, "rate_limited", true)
		if r.Hold(key, time.Second, "overloaded", true) {
			t.Error("a shorter hold reported a change")
		}
		if d := r.HeldFor(key); d != 5*time.Second {
			t.Errorf("HeldFor = %v after a shorter hold, want 5s", d)
		}
		if !r.Hold(key, 8*time.Second, "overloaded", true) || r.HeldFor(key) != 8*time.Second {
			t.Errorf("a longer hold did not extend: %v", r.HeldFor(key))
		}
		if !r.Release(key) || r.HeldFor(key) != 0 || r.Release(key) {
			t.Error("Release did not end the hold once")
		}
		if _, err := admit1(r, key); err != nil {
			t.Errorf("after Release: %v", err)
		}
		if r.Release(Key{"h", "other"}) || r.HeldFor(Key{"h", "other"}) != 0 {
			t.Error("an unknown circuit had a hold")
		}
	})
}

// TestReleaseDuringProbe: a release while a call probes makes that probe's
// outcome the circuit's own again: it changes no hold.
func TestReleaseDuringProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(testConfig())
		key := Key{"h", "m"}
		r.Hold(key, time.Second, "overloaded", true)
		time.Sleep(time.Second)
		probe, _ := admit1(r, key)
		r.Leased(probe, key, true, 0)
		r.Release(key)
		probe.Attempted(Failure, 0)
		if e := probe.TakeHoldEnd(); e != HoldKept {
			t.Errorf("hold end %v, want kept", e)
		}
		if d := r.HeldFor(key); d != 0 {
			t.Errorf("HeldFor = %v, want 0", d)
		}
	})
}

// TestHeldProbeRefusedByOwnState: a hold whose period ends while the
// circuit's own open period runs on refuses as the circuit does, and asks
// for no lease until that ends; a granted probe that the circuit's own
// state refuses (it opened while the lease was asked) is given back: the
// hold waits for the open period, then asks again; Abandon gives back a
// probe a panic cut short.
func TestHeldProbeRefusedByOwnState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.MinFailures = 1
		r := New(cfg)
		key := Key{"h", "m"}
		r.guard(key, func() (Outcome, time.Duration) { return Failure, 0 }, nil) // opens for 10s
		r.Hold(key, time.Second, "overloaded", true)
		time.Sleep(time.Second)
		var oe *OpenError
		if _, err := admit1(r, key); !errors.As(err, &oe) || oe.Held || oe.RetryIn != 9*time.Second {
			t.Fatalf("hold over, own open period on: Admit = %v, want the circuit's own refusal for 9s", err)
		}
		time.Sleep(9*time.Second + 1)
		probe, err := admit1(r, key)
		if err != ErrLease {
			t.Fatalf("after both: Admit = %v, want ErrLease", err)
		}
		if _, err := r.Leased(probe, key, true, 0); err != nil {
			t.Fatalf("granted: %v, want the half-open probe admitted", err)
		}
		probe.Attempted(Success, 0)
		probe.Done(Success, 0)
		if e := probe.TakeHoldEnd(); e != HoldReleased {
			t.Errorf("hold end %v, want released", e)
		}

		// The circuit opens while the lease is asked: a call in flight
		// from before the hold fails.
		early, err := admit1(r, key)
		if err != nil {
			t.Fatal(err)
		}
		r.Hold(key, time.Second, "overloaded", true)
		time.Sleep(time.Second)
		asker, err := admit1(r, key)
		if err != ErrLease {
			t.Fatalf("Admit = %v, want ErrLease", err)
		}
		early.Done(Failure, 0) // opens for 10s
		if _, err := r.Leased(asker, key, true, 0); err == nil {
			t.Fatal("the circuit's own open period admitted the probe")
		}
		if d := r.HeldFor(key); d != 10*time.Second+1 {
			t.Errorf("HeldFor = %v, want the open period", d)
		}
		time.Sleep(10*time.Second + 1)
		p2, err := admit1(r, key)
		if err != ErrLease {
			t.Fatalf("Admit = %v, want ErrLease", err)
		}
		if _, err := r.Leased(p2, key, true, 0); err != nil {
			t.Fatalf("granted after the open period: %v", err)
		}
		p2.Abandon()
		if p3, err := admit1(r, key); err != ErrLease {
			t.Errorf("after an abandoned probe: %v, want ErrLease", err)
		} else {
			r.Leased(p3, key, false, time.Second)
		}
	})
}

// TestChangeReason: a change to Open carries the cause of the failure that
// opened the circuit ("" for a failure without one), and how long it stays
// open.
func TestChangeReason(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.MinFailures = 1
		for _, cause := range []string{"overloaded", ""} {
			r := New(cfg)
			var got []Change
			var tk Ticket
			r.Admit(&tk, Key{"h", "m"})
			tk.SetCause(cause)
			tk.Done(Failure, 20*time.Second).Report(func(c Change) { got = append(got, c) })
			if len(got) != 1 || got[0].To != Open || got[0].Reason != cause || got[0].OpenFor != 20*time.Second {
				t.Errorf("cause %q: changes %+v", cause, got)
			}
		}
	})
}

// TestHoldKeepsFastPathOff: a held closed circuit is not idle (never
// dropped while held), and a released one is closed for the fast path.
func TestHoldKeepsFastPathOff(t *testing.T) {
	r := New(testConfig())
	key := Key{"h", "m"}
	r.Hold(key, time.Hour, "rate_limited", false)
	c := r.find(key)
	if c.idle() || c.state.Load() == uint32(Closed) {
		t.Error("a held circuit looks closed and idle")
	}
	r.Release(key)
	if c.state.Load() != uint32(Closed) {
		t.Errorf("state word %#x after Release, want Closed", c.state.Load())
	}
}

// TestLeasedAfterReplacement: a hold replaced while a call asks for the
// lease, and over by the answer, makes Leased hand the decision to that
// call again (ErrLease); a refusal then settles it.
func TestLeasedAfterReplacement(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(testConfig())
		key := Key{"h", "m"}
		r.Hold(key, time.Second, "overloaded", true)
		time.Sleep(time.Second)
		tk, err := admit1(r, key)
		if err != ErrLease {
			t.Fatal(err)
		}
		r.Hold(key, time.Millisecond, "overloaded", true) // replaces the decision
		time.Sleep(time.Millisecond)
		if _, err := r.Leased(tk, key, true, 0); err != ErrLease {
			t.Fatalf("Leased after a replacement = %v, want ErrLease", err)
		}
		var oe *OpenError
		if _, err := r.Leased(tk, key, false, 100*time.Millisecond); !errors.As(err, &oe) || oe.RetryIn != 100*time.Millisecond {
			t.Fatalf("Leased refused = %v, want a refusal for 100ms", err)
		}
	})
}
