package llmtransport

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Promises of "Running a fleet" that an audit found untested: a failed
// probe holds the fleet again, an absurd hint is capped fleet-wide, the
// options that turn cooldowns or circuits off turn their sharing off, and
// timeouts are never shared.

// TestFleetProbeFailureHoldsAgain: README "its server-classified
// failure holds the fleet again for the open period". A's circuit opened
// and was shared; when the hold ends, B (whose own circuit is closed) is
// granted the lease and its probe fails with a 503 overloaded asking
// Retry-After: 30. Only fleet.go's probed publish (HoldReopened) can hold A
// for those 30 s; without it A is held only for the lease's ~10 s.
func TestFleetProbeFailureHoldsAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fleetGW{}
		var mu sync.Mutex
		hint := false
		g.answer = func(model, key string) *http.Response {
			if model != "dead" {
				return nil
			}
			mu.Lock()
			h := hint
			mu.Unlock()
			if h {
				return response(503, `{"error":{"message":"The engine is currently overloaded","type":"server_error","code":"overloaded"}}`, "Retry-After", "30")
			}
			return overloaded()
		}
		a, b, _, fb, _ := newFleetPair(t, g)
		for range DefaultBreakerMinFailures {
			fleetCall(t, nil, a, "dead", "k")
		}
		synctest.Wait()
		time.Sleep(DefaultBreakerOpenTimeout + fleetJitterMax)
		mu.Lock()
		hint = true
		mu.Unlock()
		fleetCall(t, nil, b, "dead", "k") // B's probe (granted the lease), fails
		synctest.Wait()
		if n := len(g.sent("B", "dead", "")); n != 1 {
			t.Fatalf("B sent %d probes, want 1", n)
		}
		t.Logf("B published %d hold(s) after its failed probe", fb.published.Load())
		_, _, err := fleetCall(t, nil, a, "dead", "k")
		var coe *CircuitOpenError
		if !errors.As(err, &coe) {
			t.Fatalf("A after B's failed probe: %v, want ErrCircuitOpen", err)
		}
		t.Logf("A refused, RetryIn %v", coe.RetryIn)
		if coe.RetryIn < 25*time.Second {
			t.Errorf("A held %v more, want ~30 s (B's reopened hold, published)", coe.RetryIn)
		}
	})
}

// TestFleetAbsurdHintCapped: three 503s carrying Retry-After: 99999999
// open A's circuit; the hint lengthens the open period only up to a day
// (maxCircuitHint), for A and for the fleet it is shared with (it held
// them for 31 days, MaxSaneWait).
func TestFleetAbsurdHintCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fleetGW{}
		g.answer = func(model, key string) *http.Response {
			return response(503, `{"error":{"message":"The engine is currently overloaded","type":"server_error","code":"overloaded"}}`, "Retry-After", "99999999")
		}
		a, b, _, _, _ := newFleetPair(t, g)
		for range DefaultBreakerMinFailures {
			fleetCall(t, nil, a, "m", "k")
		}
		synctest.Wait()
		_, _, err := fleetCall(t, nil, b, "m", "k")
		var coe *CircuitOpenError
		if !errors.As(err, &coe) {
			t.Fatalf("B: %v, want ErrCircuitOpen", err)
		}
		t.Logf("B (never called the server) refused for %v", coe.RetryIn)
		if coe.RetryIn > maxCircuitHint+fleetJitterMax {
			t.Errorf("one replica's absurd hint holds the fleet open for %v (> the 120 s cap on hints)", coe.RetryIn)
		}
	})
}

// TestFleetWithoutCooldownsOrBreaker: options.go WithSharedState
// "With WithoutCooldowns, cooldowns are neither published nor applied;
// with WithoutCircuitBreaker, open holds are neither."
func TestFleetWithoutCooldownsOrBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fleetGW{}
		first := true
		g.answer = func(model, key string) *http.Response {
			if model == "rl" && first {
				first = false
				return rateLimited1500()
			}
			if model == "dead" {
				return overloaded()
			}
			return nil
		}
		f := newFakeFleet()
		fa, fb := f.member(), f.member()
		a := New(g.rt("A"), WithMaxRetries(0), WithSharedState(fa), WithoutCooldowns(), WithoutCircuitBreaker())
		b := New(g.rt("B"), WithMaxRetries(0), WithSharedState(fb), WithoutCooldowns(), WithoutCircuitBreaker())
		defer a.Close()
		defer b.Close()
		fleetCall(t, nil, a, "rl", "key-A")
		for range DefaultBreakerMinFailures {
			fleetCall(t, nil, a, "dead", "k")
		}
		synctest.Wait()
		if n := fa.published.Load(); n != 0 {
			t.Errorf("published %d holds with cooldowns and breaker off", n)
		}
		f.deliver(Hold{Kind: HoldCooldown, Host: "gw.test", Model: "x", Credential: fb.Fingerprint("Bearer key-A"), TTL: 5 * time.Second, Reason: "rate_limited"})
		f.deliver(Hold{Kind: HoldOpen, Host: "gw.test", Model: "y", TTL: 5 * time.Second, Reason: "overloaded"})
		synctest.Wait()
		if st, took, err := fleetCall(t, nil, b, "x", "key-A"); st != 200 || err != nil || took != 0 {
			t.Errorf("remote cooldown applied with WithoutCooldowns: %d %v after %v", st, err, took)
		}
		if st, _, err := fleetCall(t, nil, b, "y", "k"); st != 200 || err != nil {
			t.Errorf("remote open hold applied with WithoutCircuitBreaker: %d %v", st, err)
		}
	})
}

// TestFleetTimeoutsNotShared: README "never transport errors or timeouts,
// which may be one replica's own". A circuit opened by a gateway's 504s
// (class timeout, a response) is not published (breaker.go failureCause).
func TestFleetTimeoutsNotShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fleetGW{}
		g.answer = func(model, key string) *http.Response {
			return response(504, `{"error":{"message":"upstream request timeout","type":"timeout"}}`)
		}
		a, b, fa, _, _ := newFleetPair(t, g)
		for range DefaultBreakerMinFailures {
			fleetCall(t, nil, a, "m", "k")
		}
		synctest.Wait()
		if cs := a.Circuits(); len(cs) != 1 || cs[0].State != CircuitOpen {
			t.Fatalf("A's circuits = %+v, want open", cs)
		}
		if n := fa.published.Load(); n != 0 {
			t.Errorf("A published %d holds for 504 timeouts", n)
		}
		if st, _, err := fleetCall(t, nil, b, "m", "k"); st != 504 || err != nil {
			t.Errorf("B: %d %v, want its own 504 (nothing shared)", st, err)
		}
	})
}

// TestFleetJitterBounds: a remote hold's jitter is up to 20 % of the hold,
// at most 250 ms, and spreads the replicas (not one value).
func TestFleetJitterBounds(t *testing.T) {
	for _, d := range []time.Duration{100 * time.Millisecond, time.Second, time.Minute} {
		most := min(d/5, 250*time.Millisecond)
		seen := map[time.Duration]bool{}
		for range 1000 {
			j := fleetJitter(d)
			if j < 0 || j > most {
				t.Fatalf("jitter of a %v hold: %v, want within [0, %v]", d, j, most)
			}
			seen[j] = true
		}
		if len(seen) < 100 {
			t.Errorf("jitter of a %v hold took %d values in 1000, want them spread", d, len(seen))
		}
	}
}

// TestFleetEchoSlack: a remote hold that would end less than echoSlack
// after the one in place (this process's own coming back through the
// store, or one just as long) changes nothing, not even its jitter; one
// that ends later lengthens it. For open circuits and for cooldowns.
func TestFleetEchoSlack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeFleet()
		m := f.member()
		b := New((&fleetGW{}).rt("B"), WithSharedState(m))
		defer b.Close()
		cred := m.Fingerprint("Bearer key-A")
		open := func(ttl time.Duration) Hold {
			return Hold{Kind: HoldOpen, Host: "gw.test", Model: "m", TTL: ttl, Reason: "overloaded"}
		}
		cool := func(ttl time.Duration) Hold {
			return Hold{Kind: HoldCooldown, Host: "gw.test", Model: "m", Credential: cred, TTL: ttl, Reason: "rate_limited"}
		}
		left := func() (circuit, cooldown time.Duration) {
			st := b.State()
			if len(st.Circuits) != 1 || len(st.Cooldowns) != 1 {
				t.Fatalf("state: %+v", st)
			}
			return st.Circuits[0].RetryIn, st.Cooldowns[0].Remaining
		}
		f.deliver(open(10 * time.Second))
		f.deliver(cool(10 * time.Second))
		synctest.Wait()
		c1, d1 := left()
		// echoSlack is 50 ms: 40 ms later is within it, 60 ms is not.
		within, past := 40*time.Millisecond, 60*time.Millisecond
		f.deliver(open(c1 + within))
		f.deliver(cool(d1 + within))
		synctest.Wait()
		if c, d := left(); c != c1 || d != d1 {
			t.Errorf("holds ending %v after those in place changed them: circuit %v → %v, cooldown %v → %v",
				within, c1, c, d1, d)
		}
		f.deliver(open(c1 + past))
		f.deliver(cool(d1 + past))
		synctest.Wait()
		if c, d := left(); c < c1+past || d < d1+past {
			t.Errorf("holds ending %v after those in place did not lengthen them: circuit %v → %v, cooldown %v → %v",
				past, c1, c, d1, d)
		}
	})
}
