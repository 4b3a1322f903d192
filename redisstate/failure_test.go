package redisstate

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// ownServer starts a redis-server for t alone, killed at its end.
func ownServer(t *testing.T) *server {
	t.Helper()
	needBinary(t)
	srv, err := startServer(freePort())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.stop)
	return srv
}

// TestRestartRestoresHolds: Redis restarts empty (no persistence); the
// watchers reconnect, the publisher re-sends its live holds (its epoch
// token is gone), holds published while Redis was down are sent too, and
// a new subscriber backfills them all.
func TestRestartRestoresHolds(t *testing.T) {
	leakCheck(t)
	srv := ownServer(t)
	a := newState(t, newClient(t, srv.addr))
	b := newState(t, newClient(t, srv.addr))
	subscribe(t, a) // a's watcher restores a's holds
	got := subscribe(t, b)
	subscribed(t, b, got)

	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "before", TTL: 30 * time.Second, Reason: "overloaded"})
	got.wait(t, 5*time.Second, is(llmtransport.HoldOpen, "before"))

	srv.stop()
	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldCooldown, Host: "h", Model: "during", Credential: a.Fingerprint("k"),
		TTL: 30 * time.Second, Reason: "rate_limited"})
	srv2, err := startServer(srv.port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.stop)
	dumpOnFailure = func(t testing.TB) {
		rc := newClient(t, srv2.addr)
		t.Logf("keys %v", rc.Keys(context.Background(), "*").Val())
		a.mu.Lock()
		for k, o := range a.own {
			t.Logf("own %s %+v", k, *o)
		}
		t.Logf("paused %v sending %v queue %d", a.pausedTil, a.sending.Load(), len(a.queue))
		a.mu.Unlock()
	}
	defer func() { dumpOnFailure = nil }()

	// Both come back to b by push or backfill once the watchers reconnect.
	want := map[string]bool{"before": true, "during": true}
	for len(want) > 0 {
		h := got.wait(t, 10*time.Second, func(h llmtransport.Hold) bool { return want[h.Model] && h.TTL > 0 })
		if h.TTL > 30*time.Second || h.TTL < 20*time.Second {
			t.Fatalf("%s restored with TTL %v", h.Model, h.TTL)
		}
		delete(want, h.Model)
	}
	rc := newClient(t, srv2.addr)
	key := a.keys.holdKey(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "before"})
	if p := rc.PTTL(context.Background(), key).Val(); p <= 20*time.Second || p > 30*time.Second {
		t.Fatalf("restored PTTL %v", p)
	}
	// A replica started now backfills both.
	c := newState(t, newClient(t, srv2.addr))
	got3 := subscribe(t, c)
	got3.wait(t, 5*time.Second, is(llmtransport.HoldOpen, "before"))
	_ = c.Close()
	_ = a.Close()
	_ = b.Close()
}

// TestRedisKilled: Redis dies mid-run. Publish never blocks, Lease grants
// within the timeout, the failures are counted, and everything stops.
func TestRedisKilled(t *testing.T) {
	leakCheck(t)
	srv := ownServer(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	a := newState(t, newClient(t, srv.addr), WithMeterProvider(mp), WithTimeout(DefaultTimeout))
	b := newState(t, newClient(t, srv.addr))
	got := subscribe(t, b)
	subscribed(t, a, subscribe(t, a))
	subscribed(t, b, got)
	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m", TTL: 30 * time.Second})
	got.wait(t, 5*time.Second, is(llmtransport.HoldOpen, "m"))

	srv.stop()

	var leases, publishes []time.Duration
	for range 5 {
		start := time.Now()
		ok, _ := a.Lease(context.Background(), "h", "m", time.Second)
		leases = append(leases, time.Since(start))
		if !ok {
			t.Fatal("a dead Redis refused the lease")
		}
	}
	bounded(t, "Lease", leases, DefaultTimeout+slack())
	for range 10000 {
		start := time.Now()
		a.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m2", TTL: 10 * time.Second})
		publishes = append(publishes, time.Since(start))
	}
	bounded(t, "Publish", publishes, slack())
	start := time.Now()
	_ = a.Close()
	_ = b.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with Redis down", d)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	sums := counters(rm)
	if sums[MetricPublished] < 1 || sums[MetricErrors] < 1 || sums[MetricDropped] < 1 || sums[MetricReceived] < 1 {
		t.Fatalf("metrics %v", sums)
	}
	if sums[MetricDropped+" queue_full"] < 1 {
		t.Fatalf("10000 holds against a dead Redis and none dropped for a full queue: %v", sums)
	}
	if sums[MetricLag] < 1 {
		t.Fatalf("no propagation lag recorded: %v", sums)
	}
}

// errorCounted polls reader until MetricErrors counts an error, and fails
// t with msg when none is counted within limit. It returns how long that
// took.
func errorCounted(t *testing.T, reader *sdkmetric.ManualReader, limit time.Duration, msg string) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		if counters(rm)[MetricErrors] > 0 {
			return time.Since(start)
		}
		if time.Since(start) >= limit {
			t.Fatal(msg)
		}
		<-tick.C
	}
}

// counters sums every counter by name (and by name and llm.shared.reason),
// and counts histogram samples.
func counters(rm metricdata.ResourceMetrics) map[string]int64 {
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] += p.Value
					if r, ok := p.Attributes.Value(attribute.Key("llm.shared.reason")); ok {
						out[m.Name+" "+r.AsString()] += p.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] += int64(p.Count)
				}
			}
		}
	}
	return out
}

// TestServerFrozen: the real server stops answering mid-run (SIGSTOP: it
// still accepts connections, and answers nothing). Lease and Publish stay
// bounded, the subscriber's health check notices, and after SIGCONT the
// subscriber is back: it receives what is published.
func TestServerFrozen(t *testing.T) {
	leakCheck(t)
	srv := ownServer(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	a := newState(t, newClient(t, srv.addr), WithTimeout(DefaultTimeout))
	b := newState(t, newClient(t, srv.addr), WithMeterProvider(mp), WithHealthCheck(100*time.Millisecond))
	got := subscribe(t, b)
	subscribed(t, b, got)

	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = srv.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()

	var leases, publishes []time.Duration
	for range 5 {
		start := time.Now()
		ok, _ := a.Lease(context.Background(), "h", "m", time.Second)
		leases = append(leases, time.Since(start))
		if !ok {
			t.Fatal("a frozen Redis refused the lease")
		}
	}
	bounded(t, "Lease", leases, DefaultTimeout+slack())
	for range 1000 {
		start := time.Now()
		a.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "frozen", TTL: 10 * time.Second})
		publishes = append(publishes, time.Since(start))
	}
	bounded(t, "Publish", publishes, slack())

	// The subscriber's health check fails (bounded polling of its metrics).
	errorCounted(t, reader, 10*time.Second, "the subscriber did not notice a frozen server")
	resume()

	// Back: a new hold reaches b (and the frozen-time one, re-sent or
	// backfilled, may too).
	deadline := time.Now().Add(15 * time.Second)
	for {
		a.Publish(llmtransport.Hold{Kind: llmtransport.HoldCooldown, Host: "h", Model: "after", TTL: 10 * time.Second})
		select {
		case h := <-got.ch:
			if h.Model == "after" {
				return
			}
			continue
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the subscriber never came back after SIGCONT")
		}
	}
}

// TestReconnectKeepsReleases: a reconnection to a Redis that kept its data
// re-sends nothing already written — an open hold the fleet ended while
// this replica was not listening stays ended — while a Redis that lost its
// data (FLUSHALL) gets the live holds back.
func TestReconnectKeepsReleases(t *testing.T) {
	leakCheck(t)
	srv := ownServer(t)
	admin := newClient(t, srv.addr)
	ctx := context.Background()
	a := newState(t, newClient(t, srv.addr))
	got := subscribe(t, a)
	subscribed(t, a, got)
	open := llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m", TTL: 30 * time.Second}
	key := a.keys.holdKey(open)
	a.Publish(open)
	got.wait(t, 5*time.Second, is(llmtransport.HoldOpen, "m"))

	// Released behind a's back (a missed the message), then a's
	// subscription drops and comes back.
	admin.Del(ctx, key)
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	drain(got)
	subscribed(t, a, got) // reconnected, backfilled, resend done
	if n := admin.Exists(ctx, key).Val(); n != 0 {
		t.Fatal("a reconnection resurrected an open hold the fleet had ended")
	}

	// Redis loses everything: the next reconnection restores the hold a
	// still holds (its own record says it lives).
	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m2", TTL: 30 * time.Second})
	got.wait(t, 5*time.Second, is(llmtransport.HoldOpen, "m2"))
	admin.FlushAll(ctx)
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	h := got.wait(t, 10*time.Second, is(llmtransport.HoldOpen, "m2"))
	if h.TTL <= 20*time.Second {
		t.Fatalf("restored with TTL %v", h.TTL)
	}
	if p := admin.PTTL(ctx, a.keys.holdKey(h)).Val(); p <= 20*time.Second {
		t.Fatalf("restored PTTL %v", p)
	}
}

func drain(h *holds) {
	for {
		select {
		case <-h.ch:
		default:
			return
		}
	}
}
