package llmtransport

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fleetGW is an in-memory gateway shared by the Transports of a test: it
// logs who sent what when, and answers each request with answer (200 when
// nil or when answer returns nil).
type fleetGW struct {
	mu     sync.Mutex
	log    []fleetReq
	answer func(model, key string) *http.Response
}

type fleetReq struct {
	client, model, key string
	at                 time.Time
}

// rt returns the base transport of the process named client.
func (g *fleetGW) rt(client string) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		var body struct{ Model string }
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		json.Unmarshal(b, &body)
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		g.mu.Lock()
		g.log = append(g.log, fleetReq{client, body.Model, key, time.Now()})
		answer := g.answer
		g.mu.Unlock()
		if answer != nil {
			if resp := answer(body.Model, key); resp != nil {
				return resp, nil
			}
		}
		return response(200, `{"choices":[]}`), nil
	})
}

// sent returns the requests client sent for model with key ("" for any).
func (g *fleetGW) sent(client, model, key string) []fleetReq {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []fleetReq
	for _, r := range g.log {
		if r.client == client && r.model == model && (key == "" || r.key == key) {
			out = append(out, r)
		}
	}
	return out
}

// fleetCall sends one request for model with key through tr, with ctx
// (t.Context() when nil), and returns its status (0 on error), how long
// it took and its error.
func fleetCall(t *testing.T, ctx context.Context, tr http.RoundTripper, model, key string) (int, time.Duration, error) {
	t.Helper()
	if ctx == nil {
		ctx = t.Context()
	}
	req := modelRequest(t, ctx, gw, model)
	req.Header.Set("Authorization", "Bearer "+key)
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	took := time.Since(start)
	if err != nil {
		return 0, took, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, took, nil
}

func rateLimited1500() *http.Response {
	return response(429, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`, "Retry-After-Ms", "1500")
}

func overloaded() *http.Response {
	return response(503, `{"error":{"message":"The engine is currently overloaded","type":"server_error","code":"overloaded"}}`)
}

// newFleetPair returns two Transports, A and B, over gw, connected by one
// fake fleet, closed at the end of the test.
func newFleetPair(t *testing.T, g *fleetGW, opts ...Option) (a, b *Transport, fa, fb *fakeMember, f *fakeFleet) {
	f = newFakeFleet()
	fa, fb = f.member(), f.member()
	a = New(g.rt("A"), append([]Option{WithMaxRetries(0), WithSharedState(fa)}, opts...)...)
	b = New(g.rt("B"), append([]Option{WithMaxRetries(0), WithSharedState(fb)}, opts...)...)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b, fa, fb, f
}

// TestFleetCooldown: a 429 with retry-after-ms 1500 seen by A holds B's
// requests for that model and key until the hold ends (B sends none
// before, waits within the jitter after), while B's requests for other
// models or keys go at once; A's own hold, come back from the store, does
// not lengthen A's wait.
func TestFleetCooldown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fleetGW{}
		first := true
		g.answer = func(model, key string) *http.Response {
			if first && model == "gpt-4o" && key == "key-A" {
				first = false
				return rateLimited1500()
			}
			return nil
		}
		tel := newTelemetry(t)
		a, b, fa, _, _ := newFleetPair(t, g, tel.options()...)
		start := time.Now()
		if st, _, err := fleetCall(t, nil, a, "gpt-4o", "key-A"); st != 429 || err != nil {
			t.Fatalf("A: %d %v, want the 429", st, err)
		}
		synctest.Wait() // the hold reached B (and came back to A)
		if n := fa.published.Load(); n != 1 {
			t.Errorf("A published %d holds, want 1", n)
		}
		for _, other := range [][2]string{{"gpt-4o", "key-B"}, {"gpt-4o-mini", "key-A"}} {
			if st, took, err := fleetCall(t, nil, b, other[0], other[1]); st != 200 || err != nil || took != 0 {
				t.Errorf("B %v: %d %v after %v, want 200 at once", other, st, err, took)
			}
		}
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				st, took, err := fleetCall(t, nil, b, "gpt-4o", "key-A")
				if st != 200 || err != nil || took < 1500*time.Millisecond || took > 1500*time.Millisecond+fleetJitterMax {
					t.Errorf("B held call: %d %v after %v, want 200 after 1.5s (+ jitter ≤ 75ms)", st, err, took)
				}
			})
		}
		wg.Go(func() {
			st, took, err := fleetCall(t, nil, a, "gpt-4o", "key-A")
			if st != 200 || err != nil || took != 1500*time.Millisecond {
				t.Errorf("A's own cooldown: %d %v after %v, want 200 after exactly 1.5s (no echo jitter)", st, err, took)
			}
		})
		wg.Wait()
		if !spanHasEvent(tel, eventRemoteHold, "cooldown", "rate_limited") {
			t.Error("no remote hold event on B's held calls")
		}
		held := g.sent("B", "gpt-4o", "key-A")
		if len(held) != 3 {
			t.Fatalf("B sent %d held requests, want 3", len(held))
		}
		for _, r := range held {
			if d := r.at.Sub(start); d < 1500*time.Millisecond {
				t.Errorf("B sent a request for the held model and key %v after the 429, inside the hold", d)
			}
		}
	})
}

// TestFleetCooldownWithoutFleet: the same scenario without shared state:
// B knows nothing and collects its own 429. (The control of the test
// above.)
func TestFleetCooldownWithoutFleet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fleetGW{}
		limited := 2
		g.answer = func(model, key string) *http.Response {
			if limited > 0 && model == "gpt-4o" {
				limited--
				return rateLimited1500()
			}
			return nil
		}
		a := New(g.rt("A"), WithMaxRetries(0))
		b := New(g.rt("B"), WithMaxRetries(0))
		fleetCall(t, nil, a, "gpt-4o", "key-A")
		if st, took, _ := fleetCall(t, nil, b, "gpt-4o", "key-A"); st != 429 || took != 0 {
			t.Errorf("B without a fleet: %d after %v, want its own 429 at once", st, took)
		}
		if err := a.Close(); err != nil {
			t.Errorf("Close without shared state: %v", err)
		}
	})
}

// TestFleetCircuit: a model failing every call is cut off on B as soon as
// A's circuit opens (B sends it nothing, its calls fail fast with
// ErrCircuitOpen, its span says why), while B's other models go; when the
// hold ends only one of A and B probes (the lease), the other keeps
// holding; the probe's success releases both.
func TestFleetCircuit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fleetGW{}
		var mu sync.Mutex
		dead, probed := true, false
		probeIn, probeOut := make(chan struct{}), make(chan struct{})
		g.answer = func(model, key string) *http.Response {
			if model != "dead" {
				return nil
			}
			mu.Lock()
			d, first := dead, !probed
			probed = probed || !dead
			mu.Unlock()
			if d {
				return overloaded()
			}
			if first {
				probeIn <- struct{}{}
				<-probeOut
			}
			return nil
		}
		tel := newTelemetry(t)
		a, b, fa, fb, f := newFleetPair(t, g, tel.options()...)
		opened := time.Time{}
		for i := 0; i < DefaultBreakerMinFailures; i++ {
			fleetCall(t, nil, a, "dead", "k")
		}
		opened = time.Now()
		synctest.Wait()
		if n := fa.published.Load(); n != 1 {
			t.Errorf("A published %d holds, want 1 (the open circuit)", n)
		}
		cs := b.Circuits()
		if len(cs) != 1 || cs[0].State != CircuitOpen || cs[0].Fleet == nil || !cs[0].Fleet.Remote || cs[0].Fleet.Reason != "overloaded" {
			t.Fatalf("B's circuits = %+v, want dead held open by the fleet for overloaded", cs)
		}
		if fl := cs[0].Fleet; fl.Until.Before(opened.Add(DefaultBreakerOpenTimeout)) || fl.Until.After(opened.Add(DefaultBreakerOpenTimeout+fleetJitterMax)) {
			t.Errorf("B's hold ends %v after the opening, want the open period (+ jitter)", fl.Until.Sub(opened))
		}
		if ac := a.Circuits(); len(ac) != 1 || ac[0].Fleet == nil || ac[0].Fleet.Remote || !ac[0].Fleet.Until.Equal(opened.Add(DefaultBreakerOpenTimeout)) {
			t.Errorf("A's circuits = %+v, want its own hold on dead for exactly the open period (its echo not applied)", ac)
		}
		_, took, err := fleetCall(t, nil, b, "dead", "k")
		var coe *CircuitOpenError
		if !errors.Is(err, ErrCircuitOpen) || !errors.As(err, &coe) || coe.RetryIn < DefaultBreakerOpenTimeout || took != 0 {
			t.Errorf("B on dead: %v after %v, want ErrCircuitOpen at once, retry in ≥ 10s", err, took)
		}
		if n := len(g.sent("B", "dead", "")); n != 0 {
			t.Errorf("B sent %d requests to the dead model", n)
		}
		if st, _, err := fleetCall(t, nil, b, "alive", "k"); st != 200 || err != nil {
			t.Errorf("B on another model: %d %v", st, err)
		}
		if !spanHasEvent(tel, eventRemoteHold, "open", "overloaded") {
			t.Error("no remote hold event on B's refused call")
		}

		// The open period ends on both; the model is back.
		time.Sleep(DefaultBreakerOpenTimeout + fleetJitterMax)
		mu.Lock()
		dead = false
		mu.Unlock()
		var wg sync.WaitGroup
		wg.Go(func() {
			if st, _, err := fleetCall(t, nil, a, "dead", "k"); st != 200 || err != nil {
				t.Errorf("A's probe: %d %v", st, err)
			}
		})
		<-probeIn // A's probe is out
		if _, took, err := fleetCall(t, nil, b, "dead", "k"); !errors.Is(err, ErrCircuitOpen) || took != 0 {
			t.Errorf("B while A probes: %v after %v, want ErrCircuitOpen at once", err, took)
		}
		if n := f.leaseCalls.Load(); n != 2 {
			t.Errorf("%d lease calls, want 2 (A granted, B refused)", n)
		}
		close(probeOut)
		wg.Wait()
		synctest.Wait() // the release reaches B
		if n := len(g.sent("B", "dead", "")); n != 0 {
			t.Errorf("B probed too: %d requests", n)
		}
		for name, tr := range map[string]*Transport{"A": a, "B": b} {
			if cs := tr.Circuits(); cs[0].Model == "dead" && (cs[0].Fleet != nil || cs[0].State != CircuitClosed) {
				t.Errorf("%s's circuit after the release: %+v", name, cs[0])
			}
		}
		if st, took, err := fleetCall(t, nil, b, "dead", "k"); st != 200 || err != nil || took != 0 {
			t.Errorf("B after the release: %d %v after %v", st, err, took)
		}
		if fb.published.Load() != 0 {
			t.Errorf("B published %d holds, want none", fb.published.Load())
		}
	})
}

// TestFleetTransportErrorsNotShared: a circuit opened by transport errors
// (which may be this process's alone) is not shared.
func TestFleetTransportErrorsNotShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeFleet()
		fa, fb := f.member(), f.member()
		a := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return nil, errors.New("connection refused here")
		}), WithMaxRetries(0), WithSharedState(fa))
		b := New((&fleetGW{}).rt("B"), WithSharedState(fb))
		defer a.Close()
		defer b.Close()
		for range DefaultBreakerMinFailures {
			fleetCall(t, nil, a, "m", "k")
		}
		if cs := a.Circuits(); len(cs) != 1 || cs[0].State != CircuitOpen || cs[0].Fleet != nil {
			t.Fatalf("A's circuits = %+v, want open by itself", cs)
		}
		if n := fa.published.Load(); n != 0 {
			t.Errorf("A published %d holds for transport errors", n)
		}
		synctest.Wait()
		if cs := b.Circuits(); len(cs) != 0 {
			t.Errorf("B's circuits = %+v, want none", cs)
		}
	})
}

// TestFleetHoldsOnlyExtend: a shorter hold never shortens a longer one,
// for cooldowns and open circuits, even when a store hands it over.
func TestFleetHoldsOnlyExtend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fleetGW{}
		_, b, _, fb, f := newFleetPair(t, g)
		cred := fb.Fingerprint("Bearer key-A")
		f.deliver(Hold{Kind: HoldCooldown, Host: "gw.test", Model: "gpt-4o", Credential: cred, TTL: 5 * time.Second, Reason: "rate_limited"})
		f.deliver(Hold{Kind: HoldOpen, Host: "gw.test", Model: "dead", TTL: 20 * time.Second, Reason: "overloaded"})
		synctest.Wait()
		f.deliver(Hold{Kind: HoldCooldown, Host: "gw.test", Model: "gpt-4o", Credential: cred, TTL: time.Second, Reason: "rate_limited"})
		f.deliver(Hold{Kind: HoldOpen, Host: "gw.test", Model: "dead", TTL: 2 * time.Second, Reason: "overloaded"})
		synctest.Wait()
		if _, took, _ := fleetCall(t, nil, b, "gpt-4o", "key-A"); took < 5*time.Second || took > 5*time.Second+fleetJitterMax {
			t.Errorf("B waited %v, want the longer hold's 5s (+ jitter)", took)
		}
		cs := b.Circuits()
		if len(cs) != 2 || cs[0].Model != "dead" || cs[0].State != CircuitOpen || cs[0].RetryIn < 15*time.Second-fleetJitterMax {
			t.Errorf("B's circuits = %+v, want dead held ~15s more", cs)
		}
	})
}

// TestFleetLeaseHangs: a store whose Lease never answers delays no normal
// request: other models go at once, the held model's other calls are
// refused at once while one call asks, and that call is bounded by its
// context (or by leaseTimeout), then probes (fail open).
func TestFleetLeaseHangs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fleetGW{}
		_, b, _, _, f := newFleetPair(t, g)
		f.hangLease.Store(true)
		f.deliver(Hold{Kind: HoldOpen, Host: "gw.test", Model: "dead", TTL: time.Second, Reason: "overloaded"})
		synctest.Wait()
		time.Sleep(time.Second + fleetJitterMax)
		var wg sync.WaitGroup
		asking := make(chan struct{})
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			go func() { synctest.Wait(); close(asking) }()
			_, took, _ := fleetCall(t, ctx, b, "dead", "k")
			if took != 300*time.Millisecond {
				t.Errorf("the call asking a hung store took %v, want its context's 300ms", took)
			}
		})
		<-asking
		if st, took, err := fleetCall(t, nil, b, "alive", "k"); st != 200 || err != nil || took != 0 {
			t.Errorf("another model while the lease hangs: %d %v after %v", st, err, took)
		}
		if _, took, err := fleetCall(t, nil, b, "dead", "k"); !errors.Is(err, ErrCircuitOpen) || took != 0 {
			t.Errorf("the held model while the lease hangs: %v after %v, want ErrCircuitOpen at once", err, took)
		}
		wg.Wait()
		// Without a deadline, the lease is bounded by leaseTimeout; the
		// store then counts as granting.
		f.deliver(Hold{Kind: HoldOpen, Host: "gw.test", Model: "dead2", TTL: time.Second, Reason: "overloaded"})
		synctest.Wait()
		time.Sleep(time.Second + fleetJitterMax)
		st, took, err := fleetCall(t, nil, b, "dead2", "k")
		if st != 200 || err != nil || took != leaseTimeout {
			t.Errorf("a call without deadline asking a hung store: %d %v after %v, want 200 after %v", st, err, took, leaseTimeout)
		}
	})
}

// TestFleetClose: Close stops the watcher (no goroutine left), is
// idempotent, and the transport keeps working on its own.
func TestFleetClose(t *testing.T) {
	checkLeaks(t)
	f := newFakeFleet()
	m := f.member()
	tr := New(cannedRT{}, WithSharedState(m))
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	n := len(f.subs)
	f.mu.Unlock()
	if n != 0 {
		t.Errorf("%d subscriptions left after Close", n)
	}
	overheadRoundTrip(tr)
	if err := New(cannedRT{}).Close(); err != nil {
		t.Errorf("Close without shared state: %v", err)
	}
}

// spanHasEvent reports whether a span tel recorded has the event name with
// the hold kind and reason.
func spanHasEvent(tel *telemetry, name, kind, reason string) bool {
	for _, s := range tel.sr.Ended() {
		for _, e := range s.Events() {
			if e.Name != name {
				continue
			}
			var k, r string
			for _, a := range e.Attributes {
				switch a.Key {
				case keyHoldKind:
					k = a.Value.AsString()
				case keyHoldReason:
					r = a.Value.AsString()
				}
			}
			if k == kind && r == reason {
				return true
			}
		}
	}
	return false
}

// TestFleetCooldownLikeLocal: a remote cooldown is waited out by the local
// rules: one past B's WithMaxRetryWait, or past the request's deadline, is
// not waited for (the request goes at once, as with a local one).
func TestFleetCooldownLikeLocal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fleetGW{}
		f := newFakeFleet()
		fb := f.member()
		b := New(g.rt("B"), WithMaxRetries(0), WithSharedState(fb), WithMaxRetryWait(time.Second))
		defer b.Close()
		f.deliver(Hold{Kind: HoldCooldown, Host: "gw.test", Model: "gpt-4o", Credential: fb.Fingerprint("Bearer key-A"), TTL: 1500 * time.Millisecond, Reason: "rate_limited"})
		f.deliver(Hold{Kind: HoldCooldown, Host: "gw.test", Model: "gpt-4o", Credential: fb.Fingerprint("Bearer key-B"), TTL: 500 * time.Millisecond, Reason: "rate_limited"})
		synctest.Wait()
		if st, took, err := fleetCall(t, nil, b, "gpt-4o", "key-A"); st != 200 || err != nil || took != 0 {
			t.Errorf("a hold past the cap: %d %v after %v, want 200 at once", st, err, took)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if st, took, err := fleetCall(t, ctx, b, "gpt-4o", "key-B"); st != 200 || err != nil || took != 0 {
			t.Errorf("a hold past the deadline: %d %v after %v, want 200 at once", st, err, took)
		}
	})
}

// TestFleetRemoteHoldsChangeNoLocalState: a remote open hold refuses calls
// but is no state change of the local breaker: WithOnCircuitStateChange
// sees nothing, and the release leaves the circuit closed.
func TestFleetRemoteHoldsChangeNoLocalState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeFleet()
		var changes []CircuitStateChange
		b := New((&fleetGW{}).rt("B"), WithSharedState(f.member()), WithOnCircuitStateChange(func(ch CircuitStateChange) { changes = append(changes, ch) }))
		defer b.Close()
		f.deliver(Hold{Kind: HoldOpen, Host: "gw.test", Model: "m", TTL: time.Minute, Reason: "overloaded"})
		synctest.Wait()
		if _, _, err := fleetCall(t, nil, b, "m", "k"); !errors.Is(err, ErrCircuitOpen) {
			t.Errorf("held: %v", err)
		}
		f.deliver(Hold{Kind: HoldRelease, Host: "gw.test", Model: "m"})
		synctest.Wait()
		if st, _, err := fleetCall(t, nil, b, "m", "k"); st != 200 || err != nil {
			t.Errorf("released: %d %v", st, err)
		}
		if len(changes) != 0 {
			t.Errorf("state changes reported for remote holds: %+v", changes)
		}
	})
}

// TestFleetCooldownLengthenedDuringWait: a cooldown lengthened while a
// request waits it out is waited out too (the request does not go at the
// old end), within the cap.
func TestFleetCooldownLengthenedDuringWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fleetGW{}
		f := newFakeFleet()
		fb := f.member()
		b := New(g.rt("B"), WithMaxRetries(0), WithSharedState(fb), WithMaxRetryWait(10*time.Second))
		defer b.Close()
		cd := func(d time.Duration) Hold {
			return Hold{Kind: HoldCooldown, Host: "gw.test", Model: "gpt-4o", Credential: fb.Fingerprint("Bearer key-A"), TTL: d, Reason: "rate_limited"}
		}
		f.deliver(cd(2 * time.Second))
		synctest.Wait()
		start := time.Now()
		var wg sync.WaitGroup
		wg.Go(func() {
			if st, took, err := fleetCall(t, nil, b, "gpt-4o", "key-A"); st != 200 || err != nil || took < 5*time.Second || took > 5*time.Second+2*fleetJitterMax {
				t.Errorf("held call: %d %v after %v, want 200 after the lengthened 1s + 4s (+ jitter)", st, err, took)
			}
		})
		time.Sleep(time.Second)
		f.deliver(cd(4 * time.Second))
		wg.Wait()
		if r := g.sent("B", "gpt-4o", "key-A"); len(r) != 1 || r[0].at.Sub(start) < 5*time.Second {
			t.Errorf("B's requests: %+v, want one after 5s", r)
		}
	})
}
