package redisstate

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// The integration suite of issue 17 through Transports: replicas, each a
// llmtransport.Transport over its own State on its own go-redis client,
// send to one llmtransporttest gateway, which records who sent what when
// (the X-Client header names the replica).

// tap is a replica's SharedState: its State, observed. It reports every
// hold the State delivers, after the Transport applied it, so that a test
// can await a hold's arrival instead of sleeping.
type tap struct {
	*State
	applied   chan llmtransport.Hold
	onApply   func(llmtransport.Hold, time.Time) // set before the Transport starts
	onPublish func(llmtransport.Hold, time.Time)
	leases    atomic.Int32 // Lease calls: the one Redis round trip a request may make
}

func (p *tap) Lease(ctx context.Context, host, model string, ttl time.Duration) (bool, time.Duration) {
	p.leases.Add(1)
	return p.State.Lease(ctx, host, model, ttl)
}

func (p *tap) Publish(h llmtransport.Hold) {
	if p.onPublish != nil {
		p.onPublish(h, time.Now())
	}
	p.State.Publish(h)
}

func (p *tap) Subscribe(apply func(llmtransport.Hold)) func() {
	return p.State.Subscribe(func(h llmtransport.Hold) {
		apply(h)
		if p.onApply != nil {
			p.onApply(h, time.Now())
		}
		select {
		case p.applied <- h:
		default: // a test that does not drain it loses nothing it waits for
		}
	})
}

// replica is one process of the fleet: a Transport, with its own State
// and go-redis client, and its own connection pool to the gateway.
type replica struct {
	name string
	url  string // the gateway's
	tap  *tap   // nil without shared state
	tr   *llmtransport.Transport
	base *http.Transport
}

// asClient names the replica in the X-Client header of its requests.
type asClient struct {
	base http.RoundTripper
	name string
}

func (c asClient) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Client", c.name)
	return c.base.RoundTrip(r)
}

// newReplica starts the replica name on the gateway at url, sharing state
// through the Redis at addr in namespace ns (no shared state when addr is
// ""). setup, when not nil, sees the tap before the Transport subscribes.
func newReplica(t testing.TB, name, url, addr, ns string, setup func(*tap), opts ...llmtransport.Option) *replica {
	t.Helper()
	return newReplicaWith(t, name, url, addr, ns, nil, setup, opts...)
}

// newReplicaWith is newReplica with options of the State (after a
// namespace and a timeout of 1 s, which they may replace).
func newReplicaWith(t testing.TB, name, url, addr, ns string, stateOpts []Option, setup func(*tap), opts ...llmtransport.Option) *replica {
	t.Helper()
	r := &replica{name: name, url: url, base: http.DefaultTransport.(*http.Transport).Clone()}
	if addr != "" {
		st := New(newClient(t, addr), append([]Option{WithNamespace(ns), WithTimeout(time.Second)}, stateOpts...)...)
		t.Cleanup(func() { _ = st.Close() })
		r.tap = &tap{State: st, applied: make(chan llmtransport.Hold, 4096)}
		if setup != nil {
			setup(r.tap)
		}
		opts = append([]llmtransport.Option{llmtransport.WithSharedState(r.tap)}, opts...)
	}
	r.tr = llmtransport.New(asClient{r.base, name}, opts...)
	t.Cleanup(func() { _ = r.tr.Close() })
	t.Cleanup(r.base.CloseIdleConnections)
	return r
}

// call sends one chat completion for model with key, and returns its
// status (0 on error), how long it took and its error.
func (r *replica) call(ctx context.Context, model, key string) (int, time.Duration, error) {
	return r.send(ctx, `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`, key)
}

// send sends one chat completion of body with key; as call.
func (r *replica) send(ctx context.Context, body, key string) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", r.url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	start := time.Now()
	resp, err := r.tr.RoundTrip(req)
	if err != nil {
		return 0, time.Since(start), err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, time.Since(start), nil
}

// circuit returns r's circuit of model, if it has one.
func (r *replica) circuit(model string) (llmtransport.CircuitStatus, bool) {
	for _, c := range r.tr.Circuits() {
		if c.Model == model {
			return c, true
		}
	}
	return llmtransport.CircuitStatus{}, false
}

// fleetHeld reports whether the fleet holds r's circuit of model open.
func (r *replica) fleetHeld(model string) bool {
	c, ok := r.circuit(model)
	return ok && c.Fleet != nil && c.State == llmtransport.CircuitOpen
}

// pollUntil polls cond every interval until it holds, and returns how long
// that took; it fails t after limit (bounded polling of observable state).
func pollUntil(t testing.TB, limit, interval time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(interval)
	}
	return time.Since(start)
}

// live waits until every replica's subscription is live: each publishes a
// release of a model of its own until its own tap delivers it.
func live(t testing.TB, reps ...*replica) {
	t.Helper()
	for _, r := range reps {
		marker := llmtransport.Hold{Kind: llmtransport.HoldRelease, Host: "sync", Model: "sync-" + r.name}
		deadline := time.Now().Add(10 * time.Second)
	wait:
		for {
			r.tap.State.Publish(marker)
			timer := time.NewTimer(50 * time.Millisecond)
			for {
				select {
				case h := <-r.tap.applied:
					if h == marker {
						timer.Stop()
						break wait
					}
					continue
				case <-timer.C:
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's subscription never became live", r.name)
			}
		}
	}
}

// awaitHold returns the first hold r's tap delivers that matches, within d.
func awaitHold(t testing.TB, r *replica, d time.Duration, match func(llmtransport.Hold) bool) llmtransport.Hold {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case h := <-r.tap.applied:
			if match(h) {
				return h
			}
		case <-timer.C:
			t.Fatalf("%s: no matching hold within %v", r.name, d)
			return llmtransport.Hold{}
		}
	}
}

// sent returns the requests the gateway received from client for model
// with key ("" for any), oldest first.
func sent(gw *llmtransporttest.Server, client, model, key string) []llmtransporttest.Request {
	var out []llmtransporttest.Request
	for _, r := range gw.Log() {
		if r.Header.Get("X-Client") == client && r.Model == model &&
			(key == "" || strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") == key) {
			out = append(out, r)
		}
	}
	return out
}

// percentile returns the p-th percentile (0–100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// script429 answers a model's first request with a 429 asking, by
// retry-after-ms, to wait wait, and every later one 200.
func script429(wait time.Duration) func(int) llmtransporttest.Fault {
	return func(n int) llmtransporttest.Fault {
		if n == 0 {
			return llmtransporttest.RateLimited(llmtransporttest.RetryAfterMs, wait)
		}
		return llmtransporttest.OK()
	}
}

// TestFleetTransports: two Transports, each with its own State and client,
// over one gateway. A's 429 with retry-after-ms 1500 makes B send 0
// requests for that model and key until the hold ends, while B's requests
// for another model or key go at once; a model that fails every call is
// cut off on B within 50 ms of A's circuit opening (B's Circuits() shows
// the fleet's hold); A's probe succeeding releases it on both.
func TestFleetTransports(t *testing.T) {
	leakCheck(t)
	addr := needRedis(t)
	var alive atomic.Bool
	gw := llmtransporttest.NewServer(
		llmtransporttest.WithModel("gpt-4o", script429(1500*time.Millisecond)),
		llmtransporttest.WithModel("dead", func(int) llmtransporttest.Fault {
			if alive.Load() {
				return llmtransporttest.OK()
			}
			return llmtransporttest.Overloaded()
		}),
	)
	t.Cleanup(gw.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	opened := make(chan time.Time, 1)
	common := []llmtransport.Option{llmtransport.WithMaxRetries(0), llmtransport.WithBreakerOpenTimeout(time.Second)}
	a := newReplica(t, "A", gw.URL, addr, t.Name(), nil, append(common, llmtransport.WithOnCircuitStateChange(func(c llmtransport.CircuitStateChange) {
		if c.Model == "dead" && c.To == llmtransport.CircuitOpen {
			select {
			case opened <- time.Now():
			default:
			}
		}
	}))...)
	b := newReplica(t, "B", gw.URL, addr, t.Name(), nil, common...)
	live(t, a, b)

	// The rate limit.
	if st, _, err := a.call(ctx, "gpt-4o", "key-A"); st != 429 || err != nil {
		t.Fatalf("A: %d %v, want 429", st, err)
	}
	limitedAt := sent(gw, "A", "gpt-4o", "key-A")[0].Time
	awaitHold(t, b, 5*time.Second, is(llmtransport.HoldCooldown, "gpt-4o"))
	t.Logf("the cooldown reached B's Transport %v after A's request reached the gateway", time.Since(limitedAt))
	for _, other := range [][2]string{{"gpt-4o", "key-B"}, {"gpt-4o-mini", "key-A"}} {
		if st, took, err := b.call(ctx, other[0], other[1]); st != 200 || err != nil || took > 500*time.Millisecond {
			t.Errorf("B %v: %d %v after %v, want 200 at once", other, st, err, took)
		}
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if st, _, err := b.call(ctx, "gpt-4o", "key-A"); st != 200 || err != nil {
				t.Errorf("B held: %d %v, want 200 after the hold", st, err)
			}
		})
	}
	wg.Wait()
	held := sent(gw, "B", "gpt-4o", "key-A")
	if len(held) != 3 {
		t.Fatalf("B sent %d requests for the held model and key, want 3, after the hold", len(held))
	}
	for _, r := range held {
		if d := r.Time.Sub(limitedAt); d < 1500*time.Millisecond || d > 3*time.Second {
			t.Errorf("B's request for the held model and key reached the gateway %v after A's, want after the 1.5 s hold (and soon after)", d)
		}
	}

	// The dead model.
	for range llmtransport.DefaultBreakerMinFailures {
		_, _, _ = a.call(ctx, "dead", "k")
	}
	var openAt time.Time
	select {
	case openAt = <-opened:
	default:
		t.Fatalf("A's circuit of dead did not open: %+v", a.tr.Circuits())
	}
	pollUntil(t, 5*time.Second, 100*time.Microsecond, "B's fleet hold on dead", func() bool { return b.fleetHeld("dead") })
	lag := time.Since(openAt) // from A's opening, not from the poll's start
	t.Logf("propagation: B's Circuits() shows the fleet's hold %v after A's circuit opened", lag)
	if lag > 50*time.Millisecond {
		t.Errorf("B cut off %v after A's circuit opened, want within 50 ms", lag)
	}
	if c, _ := b.circuit("dead"); !c.Fleet.Remote || c.Fleet.Reason != "overloaded" {
		t.Errorf("B's circuit %+v, fleet %+v: want a remote hold for overloaded", c, *c.Fleet)
	}
	for range 5 {
		if _, took, err := b.call(ctx, "dead", "k"); !errors.Is(err, llmtransport.ErrCircuitOpen) || took > 50*time.Millisecond {
			t.Errorf("B on dead: %v after %v, want ErrCircuitOpen at once", err, took)
		}
	}
	if n := len(sent(gw, "B", "dead", "")); n != 0 {
		t.Errorf("B sent %d requests to the dead model", n)
	}

	// The release: the model is back, A's hold ends, A probes (granted the
	// lease) and succeeds; both circuits close.
	alive.Store(true)
	pollUntil(t, 5*time.Second, 5*time.Millisecond, "A's hold on dead to end", func() bool {
		c, _ := a.circuit("dead")
		return c.State != llmtransport.CircuitOpen
	})
	if st, _, err := a.call(ctx, "dead", "k"); st != 200 || err != nil {
		t.Fatalf("A's probe: %d %v", st, err)
	}
	probedAt := time.Now()
	pollUntil(t, 5*time.Second, 100*time.Microsecond, "B's release of dead", func() bool {
		c, _ := b.circuit("dead")
		return c.Fleet == nil && c.State == llmtransport.CircuitClosed
	})
	t.Logf("release: B's circuit closed %v after A's probe returned", time.Since(probedAt))
	for name, r := range map[string]*replica{"A": a, "B": b} {
		if c, _ := r.circuit("dead"); c.Fleet != nil || c.State != llmtransport.CircuitClosed {
			t.Errorf("%s's circuit after the release: %+v", name, c)
		}
		if st, _, err := r.call(ctx, "dead", "k"); st != 200 || err != nil {
			t.Errorf("%s on dead after the release: %d %v", name, st, err)
		}
	}
	if n := len(sent(gw, "B", "dead", "")); n != 1 {
		t.Errorf("B sent %d requests to dead, want 1 (after the release)", n)
	}
}
