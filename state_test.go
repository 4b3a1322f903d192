package llmtransport

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var credentialIDRe = regexp.MustCompile(`^[0-9a-f]{8}$`)

// stateCall sends one request for model with the API key key through tr
// and drains its response.
func stateCall(t *testing.T, tr http.RoundTripper, model, key string) {
	t.Helper()
	req := modelRequest(t, t.Context(), gw, model)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// TestStateCooldown: a 429 with a hint shows as a cooldown of its host,
// model and key, with its remaining time counting down, its reason, an
// opaque id of the key (the one Limits shows for the same key), never the
// key; it drops out when it expires, before any sweep.
func TestStateCooldown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(_ int, r *http.Request) (*http.Response, error) {
			if strings.HasSuffix(r.Header.Get("Authorization"), "key-A") {
				return response(429, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`,
					"Retry-After", "3",
					"X-Ratelimit-Limit-Requests", "60", "X-Ratelimit-Remaining-Requests", "0", "X-Ratelimit-Reset-Requests", "3s"), nil
			}
			return response(200, `{"choices":[]}`), nil
		}}
		tr := New(f, WithMaxRetries(0), WithPacing())
		if s := tr.State(); s.Cooldowns != nil || len(s.Circuits) != 0 || s.Limits != nil {
			t.Fatalf("fresh transport: %+v", s)
		}
		stateCall(t, tr, "gpt-4o", "key-A")
		stateCall(t, tr, "gpt-4o", "key-B") // no cooldown
		s := tr.State()
		if len(s.Cooldowns) != 1 {
			t.Fatalf("cooldowns: %+v, want key A's", s.Cooldowns)
		}
		cd := s.Cooldowns[0]
		if cd.Host != "gw.test" || cd.Model != "gpt-4o" || cd.Reason != "rate_limited" || cd.Remote ||
			cd.Remaining != 3*time.Second || !cd.Until.Equal(s.At.Add(3*time.Second)) {
			t.Errorf("cooldown: %+v, want gw.test gpt-4o rate_limited, local, 3s left", cd)
		}
		if !credentialIDRe.MatchString(cd.Credential) {
			t.Errorf("credential id %q, want 8 hex digits", cd.Credential)
		}
		if len(s.Limits) != 1 || s.Limits[0].Credential != cd.Credential || s.Limits[0].Requests.Limit != 60 {
			t.Errorf("limits: %+v, want key A's, with the cooldown's credential id %s", s.Limits, cd.Credential)
		}
		if all := fmt.Sprintf("%+v %#v", s, s); strings.Contains(all, "key-A") || strings.Contains(all, "key-B") {
			t.Errorf("a key in the snapshot: %s", all)
		}

		time.Sleep(time.Second)
		if s := tr.State(); len(s.Cooldowns) != 1 || s.Cooldowns[0].Remaining != 2*time.Second || s.Cooldowns[0].Credential != cd.Credential {
			t.Errorf("1s later: %+v, want the same cooldown, 2s left", s.Cooldowns)
		}
		time.Sleep(2 * time.Second)
		if s := tr.State(); s.Cooldowns != nil {
			t.Errorf("expired: %+v, want none", s.Cooldowns)
		}
		if tr.cooldowns.n.Load() != 1 {
			t.Fatalf("the table was swept (%d entries): the test no longer shows the snapshot skipping expired entries", tr.cooldowns.n.Load())
		}
	})
}

// TestStateCooldownsSorted: cooldowns come sorted by host, model and
// credential id; one per key; the same key has the same id.
func TestStateCooldownsSorted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(_ int, r *http.Request) (*http.Response, error) {
			return response(429, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`, "Retry-After", "5"), nil
		}}
		tr := New(f, WithMaxRetries(0))
		for _, m := range []string{"m-2", "m-1"} {
			for _, k := range []string{"k1", "k2", "k3", ""} {
				stateCall(t, tr, m, k)
			}
		}
		cds := tr.State().Cooldowns
		if len(cds) != 8 {
			t.Fatalf("%d cooldowns, want 8: %+v", len(cds), cds)
		}
		if !slices.IsSortedFunc(cds, func(a, b CooldownStatus) int {
			return strings.Compare(a.Model+" "+a.Credential, b.Model+" "+b.Credential)
		}) || cds[0].Model != "m-1" {
			t.Errorf("not sorted: %+v", cds)
		}
		ids := map[string]bool{}
		for _, cd := range cds[:4] {
			ids[cd.Credential] = true
		}
		if len(ids) != 4 || !ids[""] || cds[0].Credential != "" {
			t.Errorf("ids of m-1: %v, want 4 different ones, \"\" (no key) first", ids)
		}
		for i, cd := range cds[4:] {
			if cd.Credential != cds[i].Credential {
				t.Errorf("key %d: id %q for m-2, %q for m-1", i, cd.Credential, cds[i].Credential)
			}
		}
	})
}

// TestStateRemoteCooldown: with shared state, the cooldown a 429 on A
// starts shows on A as its own and on B as remote, with the hold's
// remaining time (plus B's jitter), and drops out of both when it ends.
func TestStateRemoteCooldown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fleetGW{}
		first := true
		g.answer = func(model, key string) *http.Response {
			if first {
				first = false
				return rateLimited1500()
			}
			return nil
		}
		a, b, _, _, _ := newFleetPair(t, g)
		if st, _, err := fleetCall(t, nil, a, "gpt-4o", "key-A"); st != 429 || err != nil {
			t.Fatalf("A: %d %v, want the 429", st, err)
		}
		synctest.Wait() // the hold reached B, and came back to A
		sa, sb := a.State(), b.State()
		if len(sa.Cooldowns) != 1 || sa.Cooldowns[0].Remote || sa.Cooldowns[0].Remaining != 1500*time.Millisecond {
			t.Errorf("A: %+v, want its own cooldown, 1.5s left (the echo changes nothing)", sa.Cooldowns)
		}
		if len(sb.Cooldowns) != 1 {
			t.Fatalf("B: %+v, want the remote cooldown", sb.Cooldowns)
		}
		cd := sb.Cooldowns[0]
		if !cd.Remote || cd.Reason != "rate_limited" || cd.Host != "gw.test" || cd.Model != "gpt-4o" ||
			cd.Remaining < 1500*time.Millisecond || cd.Remaining > 1500*time.Millisecond+fleetJitterMax+time.Nanosecond ||
			!credentialIDRe.MatchString(cd.Credential) {
			t.Errorf("B: %+v, want a remote rate_limited cooldown of gpt-4o, 1.5s (+ jitter) left", cd)
		}
		time.Sleep(1500*time.Millisecond + fleetJitterMax + time.Millisecond)
		if sa, sb := a.State(), b.State(); sa.Cooldowns != nil || sb.Cooldowns != nil {
			t.Errorf("after the hold: A %+v, B %+v, want none", sa.Cooldowns, sb.Cooldowns)
		}
	})
}

// TestStateCircuits: an opened circuit shows in the snapshot with the
// counts of the calls that opened it and the time to its probe; a circuit
// the fleet holds shows the hold, remote, with its reason and end.
func TestStateCircuits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fleetGW{answer: func(model, _ string) *http.Response {
			if model == "dead" {
				return overloaded()
			}
			return nil
		}}
		f := newFakeFleet()
		tr := New(g.rt("A"), WithMaxRetries(0), WithBreakerThreshold(0.5, 3), WithBreakerOpenTimeout(10*time.Second), WithSharedState(f.member()))
		defer tr.Close()
		for range 3 {
			stateCall(t, tr, "dead", "k")
		}
		stateCall(t, tr, "alive", "k")
		f.deliver(Hold{Kind: HoldOpen, Host: "gw.test", Model: "held", TTL: time.Minute, Reason: "model_not_found"})
		synctest.Wait()
		s := tr.State()
		if len(s.Circuits) != 3 {
			t.Fatalf("circuits: %+v, want alive, dead and held", s.Circuits)
		}
		alive, dead, held := s.Circuits[0], s.Circuits[1], s.Circuits[2]
		if alive.Model != "alive" || alive.State != CircuitClosed || alive.Requests != 1 || alive.Successes != 1 || alive.Fleet != nil {
			t.Errorf("alive: %+v", alive)
		}
		if dead.Model != "dead" || dead.State != CircuitOpen || dead.Requests != 3 || dead.Failures != 3 || dead.RetryIn != 10*time.Second {
			t.Errorf("dead: %+v, want open, 3 calls 3 failed, probe in 10s", dead)
		}
		if dead.Fleet == nil || dead.Fleet.Remote || dead.Fleet.Reason != "overloaded" || !dead.Fleet.Until.Equal(s.At.Add(10*time.Second)) {
			t.Errorf("dead's own hold, published to the fleet: %+v", dead.Fleet)
		}
		if held.Model != "held" || held.State != CircuitOpen || held.Fleet == nil || !held.Fleet.Remote || held.Fleet.Reason != "model_not_found" ||
			held.RetryIn < time.Minute || held.Fleet.Until.Before(s.At.Add(time.Minute)) {
			t.Errorf("held: %+v (fleet %+v), want open by a remote model_not_found hold for a minute", held, held.Fleet)
		}
	})
}

// TestStateOff: with the breaker, cooldowns and pacing off, the snapshot
// is empty.
func TestStateOff(t *testing.T) {
	f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
		return response(429, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`, "Retry-After", "3"), nil
	}}
	tr := New(f, WithMaxRetries(0), WithoutCooldowns(), WithoutCircuitBreaker())
	stateCall(t, tr, "gpt-4o", "key-A")
	if s := tr.State(); s.Circuits != nil || s.Cooldowns != nil || s.Limits != nil || s.At.IsZero() {
		t.Errorf("all off: %+v", s)
	}
}

// TestStateFullTable: a full cooldown table (65,536 live entries) comes
// out whole and sorted; the time it takes is logged.
func TestStateFullTable(t *testing.T) {
	tr := New(nil)
	c := tr.cooldowns
	until := c.now() + int64(time.Hour)
	for i := range maxCooldowns {
		c.setKey(cooldownKey{circuitKey{"gw.test", fmt.Sprintf("m-%05d", i%1000)}, uint64(i + 1)}, until)
	}
	start := time.Now()
	s := tr.State()
	took := time.Since(start)
	t.Logf("State() over %d cooldowns: %v", len(s.Cooldowns), took)
	if len(s.Cooldowns) != maxCooldowns {
		t.Fatalf("%d cooldowns, want %d", len(s.Cooldowns), maxCooldowns)
	}
	if !slices.IsSortedFunc(s.Cooldowns, func(a, b CooldownStatus) int {
		return strings.Compare(a.Model+" "+a.Credential, b.Model+" "+b.Credential)
	}) {
		t.Error("not sorted")
	}
}

// TestStateConcurrent: snapshots taken while requests set, wait out and
// sweep cooldowns and move circuits (for the race detector).
func TestStateConcurrent(t *testing.T) {
	f := &fakeRT{respond: func(n int, r *http.Request) (*http.Response, error) {
		if n%3 == 0 {
			return response(429, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`, "Retry-After-Ms", "2"), nil
		}
		return response(200, `{"choices":[]}`), nil
	}}
	tr := New(f, WithMaxRetries(1), WithPacing())
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				tr.State()
			}
		}
	})
	var calls sync.WaitGroup
	for g := range 4 {
		calls.Go(func() {
			for i := range 50 {
				stateCall(t, tr, fmt.Sprintf("m-%d", i%3), fmt.Sprintf("k-%d", g))
			}
		})
	}
	calls.Wait()
	close(stop)
	wg.Wait()
}
