package redisstate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// latencies sends n requests for model through each replica in turn and
// returns how long each took; every one must succeed.
func latencies(t *testing.T, ctx context.Context, n int, model string, reps ...*replica) []time.Duration {
	t.Helper()
	var out []time.Duration
	for range n {
		for _, r := range reps {
			st, took, err := r.call(ctx, model, "k")
			if st != 200 || err != nil {
				t.Fatalf("%s on %s: %d %v", r.name, model, st, err)
			}
			out = append(out, took)
		}
	}
	return out
}

// TestFleetTransportsRedisKilled: the Redis server is killed mid-run. Both
// Transports keep working on their own, as fast as before (no request
// waits on Redis), keep the holds they had, and apply new local ones;
// Close returns at once. Redis restarted on the same port, empty: the
// holds still live come back — B receives the rate limit A met while Redis
// was down, and a replica started now backfills both holds.
func TestFleetTransportsRedisKilled(t *testing.T) {
	leakCheck(t)
	srv := ownServer(t)
	gw := llmtransporttest.NewServer(
		llmtransporttest.WithModel("dead", func(int) llmtransporttest.Fault { return llmtransporttest.Overloaded() }),
		llmtransporttest.WithModel("during", script429(30*time.Second)),
	)
	t.Cleanup(gw.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := []llmtransport.Option{llmtransport.WithMaxRetries(0), llmtransport.WithBreakerOpenTimeout(30 * time.Second)}
	a := newReplica(t, "A", gw.URL, srv.addr, t.Name(), nil, opts...)
	b := newReplica(t, "B", gw.URL, srv.addr, t.Name(), nil, opts...)
	c := newReplica(t, "C", gw.URL, srv.addr, t.Name(), nil, opts...) // closed while Redis is down
	live(t, a, b, c)

	for range llmtransport.DefaultBreakerMinFailures {
		_, _, _ = a.call(ctx, "dead", "k")
	}
	pollUntil(t, 5*time.Second, time.Millisecond, "B's fleet hold on dead", func() bool { return b.fleetHeld("dead") })
	latencies(t, ctx, 20, "fast", a, b) // warm the connections
	before := latencies(t, ctx, 200, "fast", a, b)

	leasesBefore := a.tap.leases.Load() + b.tap.leases.Load()
	srv.stop() // SIGKILL, and waited for

	after := latencies(t, ctx, 200, "fast", a, b)
	p50b, p99b, maxb := percentile(before, 50), percentile(before, 99), percentile(before, 100)
	p50a, p99a, maxa := percentile(after, 50), percentile(after, 99), percentile(after, 100)
	t.Logf("request latency, 400 requests each: Redis up p50 %v p99 %v max %v; Redis killed p50 %v p99 %v max %v",
		p50b, p99b, maxb, p50a, p99a, maxa)
	// No request asked Redis anything (Lease is the only call a request
	// may make, and none of these found a fleet hold ending), and none
	// got slower. On loopback a request takes about a millisecond; the
	// bounds leave room for -race on two shared cores (a scheduling stall
	// of 200 ms was seen), while a request that called the killed Redis
	// would take about the State's 1 s timeout (go-redis's own retries on
	// a refused dial take 1.7 s).
	if n := a.tap.leases.Load() + b.tap.leases.Load() - leasesBefore; n != 0 {
		t.Errorf("%d requests asked Redis for a lease", n)
	}
	if p99a > max(3*p99b, 25*time.Millisecond) || maxa > 500*time.Millisecond {
		t.Errorf("with Redis killed: p99 %v, max %v (before: %v, %v): requests wait", p99a, maxa, p99b, maxb)
	}
	// Holds stay: B still refuses dead at once; A's 429 is answered at
	// once (its publish is dropped, and remembered).
	for _, r := range []*replica{a, b} {
		if _, took, err := r.call(ctx, "dead", "k"); !errors.Is(err, llmtransport.ErrCircuitOpen) || took > 50*time.Millisecond {
			t.Errorf("%s on dead with Redis down: %v after %v, want ErrCircuitOpen at once", r.name, err, took)
		}
	}
	if st, took, err := a.call(ctx, "during", "key-A"); st != 429 || err != nil || took > 200*time.Millisecond {
		t.Fatalf("A on during: %d %v after %v, want a 429 at once", st, err, took)
	}
	start := time.Now()
	_ = c.tr.Close()
	_ = c.tap.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close with Redis down took %v", d)
	} else {
		t.Logf("Transport.Close and State.Close with Redis down: %v", d)
	}

	// Redis back on the same port, empty.
	srv2, err := startServer(srv.port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.stop)
	restarted := time.Now()
	h := awaitHold(t, b, 15*time.Second, is(llmtransport.HoldCooldown, "during"))
	t.Logf("B received A's rate limit from the Redis-down period %v after the restart (TTL %v)", time.Since(restarted), h.TTL)
	if h.TTL < 20*time.Second || h.TTL > 30*time.Second {
		t.Errorf("restored cooldown with TTL %v, want A's remaining ~30 s", h.TTL)
	}
	d := newReplica(t, "D", gw.URL, srv2.addr, t.Name(), nil, opts...)
	pollUntil(t, 10*time.Second, time.Millisecond, "D's backfill of dead", func() bool { return d.fleetHeld("dead") })
	awaitHold(t, d, 10*time.Second, is(llmtransport.HoldCooldown, "during"))
	if _, _, err := d.call(ctx, "dead", "k"); !errors.Is(err, llmtransport.ErrCircuitOpen) {
		t.Errorf("D on dead after the restart: %v, want ErrCircuitOpen", err)
	}
	if n := len(sent(gw, "D", "dead", "")) + len(sent(gw, "B", "dead", "")); n != 0 {
		t.Errorf("B and D sent %d requests to dead", n)
	}
}

// TestFleetTransportsShorterHold: a shorter hold never shortens a longer
// one, through the Transports. A's 429 holds (model, key) for 2 s; C,
// whose request cannot wait that long (its deadline is shorter, so it goes
// at once), gets a 429 asking for 300 ms; Redis keeps the longer hold and
// broadcasts nothing, and B's and C's next requests still wait out A's 2 s.
func TestFleetTransportsShorterHold(t *testing.T) {
	leakCheck(t)
	addr := needRedis(t)
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("gpt-4o", func(n int) llmtransporttest.Fault {
		switch n {
		case 0:
			return llmtransporttest.RateLimited(llmtransporttest.RetryAfterMs, 2*time.Second)
		case 1:
			return llmtransporttest.RateLimited(llmtransporttest.RetryAfterMs, 300*time.Millisecond)
		}
		return llmtransporttest.OK()
	}))
	t.Cleanup(gw.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := []llmtransport.Option{llmtransport.WithMaxRetries(0)}
	a := newReplica(t, "A", gw.URL, addr, t.Name(), nil, opts...)
	b := newReplica(t, "B", gw.URL, addr, t.Name(), nil, opts...)
	c := newReplica(t, "C", gw.URL, addr, t.Name(), nil, opts...)
	live(t, a, b, c)

	if st, _, err := a.call(ctx, "gpt-4o", "key-A"); st != 429 || err != nil {
		t.Fatalf("A: %d %v, want 429", st, err)
	}
	limitedAt := sent(gw, "A", "gpt-4o", "key-A")[0].Time
	long := awaitHold(t, b, 5*time.Second, is(llmtransport.HoldCooldown, "gpt-4o"))
	awaitHold(t, c, 5*time.Second, is(llmtransport.HoldCooldown, "gpt-4o"))

	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	st, _, err := c.call(short, "gpt-4o", "key-A")
	cancelShort()
	if st != 429 || err != nil {
		t.Fatalf("C with a short deadline: %d %v, want the 300 ms 429", st, err)
	}
	// C published its 300 ms hold; a marker published after it proves it
	// was handled: B must receive the marker and no shorter hold.
	marker := llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "marker", Model: "marker", TTL: time.Second, Reason: "overloaded"}
	c.tap.State.Publish(marker)
	awaitHold(t, b, 5*time.Second, func(h llmtransport.Hold) bool {
		if h.Kind == llmtransport.HoldCooldown && h.Model == "gpt-4o" {
			t.Errorf("B received a shorter hold: %+v", h)
		}
		return h.Host == "marker"
	})
	rc := newClient(t, addr)
	key := b.tap.keys.holdKey(long)
	if p := rc.PTTL(ctx, key).Val(); p < time.Second {
		t.Errorf("the hold's PTTL is %v after the shorter one, want what is left of 2 s", p)
	}
	for _, r := range []*replica{b, c} {
		if st, _, err := r.call(ctx, "gpt-4o", "key-A"); st != 200 || err != nil {
			t.Errorf("%s: %d %v, want 200 after the hold", r.name, st, err)
		}
		got := sent(gw, r.name, "gpt-4o", "key-A")
		if d := got[len(got)-1].Time.Sub(limitedAt); d < 2*time.Second {
			t.Errorf("%s's request reached the gateway %v after A's 429, inside the 2 s hold", r.name, d)
		}
	}
}
