package redisstate

import (
	"slices"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/redis/go-redis/v9"
)

// BenchmarkPublish is the cost of Publish to its caller: a queue send (the
// writes happen on the sender; holds the queue cannot take are dropped).
func BenchmarkPublish(b *testing.B) {
	addr := needRedis(b)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	s := New(c, WithNamespace("bench"))
	defer s.Close()
	h := llmtransport.Hold{Kind: llmtransport.HoldCooldown, Host: "api.example.com", Model: "gpt-4o",
		Credential: s.Fingerprint("sk-bench"), TTL: 10 * time.Second, Reason: "rate_limited"}
	b.ReportAllocs()
	for b.Loop() {
		s.Publish(h)
	}
}

// BenchmarkPropagation is the loopback lag from Publish on one State to
// delivery on another, one hold at a time; it reports p50 and p99.
func BenchmarkPropagation(b *testing.B) {
	addr := needRedis(b)
	ca := redis.NewClient(&redis.Options{Addr: addr})
	defer ca.Close()
	cb := redis.NewClient(&redis.Options{Addr: addr})
	defer cb.Close()
	a := New(ca, WithNamespace("bench-lag"))
	defer a.Close()
	r := New(cb, WithNamespace("bench-lag"))
	defer r.Close()
	got := &holds{ch: make(chan llmtransport.Hold, 16)}
	stop := r.Subscribe(func(h llmtransport.Hold) { got.ch <- h })
	defer stop()
	subscribed(b, r, got)
	var lags []time.Duration
	ttl := time.Minute
	for b.Loop() {
		ttl += time.Millisecond // longer each time: every publish is stored and pushed
		start := time.Now()
		a.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m", TTL: ttl})
		got.wait(b, 5*time.Second, is(llmtransport.HoldOpen, "m"))
		lags = append(lags, time.Since(start))
	}
	slices.Sort(lags)
	b.ReportMetric(float64(lags[len(lags)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds()), "p99-µs")
}
