package redisstate_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/redisstate"
	"github.com/redis/go-redis/v9"
)

// Two replicas of one application share a namespace: a rate limit one of
// them meets reaches the other, and one of them at a time probes a model
// the fleet holds open. (The test binary runs it against the
// redis-server it starts, at REDIS_ADDR.)
func Example() {
	client := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer client.Close()

	// Every replica: one State per process, the same namespace and
	// secret. (The Transport does the Publish and Subscribe calls below
	// when given WithSharedState(a).)
	a := redisstate.New(client, redisstate.WithNamespace("example"), redisstate.WithSecret([]byte("from your secret store")))
	defer a.Close()
	b := redisstate.New(client, redisstate.WithNamespace("example"), redisstate.WithSecret([]byte("from your secret store")))
	defer b.Close()

	received := make(chan llmtransport.Hold, 16)
	stop := b.Subscribe(func(h llmtransport.Hold) {
		if h.Model == "gpt-4o" {
			received <- h
		}
	})
	defer stop()

	// Replica a meets a 429 with retry-after-ms: 1500; it tells the fleet
	// until b hears it (the first publishes may precede b's subscription).
	hold := llmtransport.Hold{Kind: llmtransport.HoldCooldown, Host: "api.openai.com", Model: "gpt-4o",
		Credential: a.Fingerprint("sk-..."), TTL: 1500 * time.Millisecond, Reason: "rate_limited"}
	var h llmtransport.Hold
	for h.Model == "" {
		a.Publish(hold)
		select {
		case h = <-received:
		case <-time.After(100 * time.Millisecond):
		}
	}
	fmt.Println(h.Kind, h.Host, h.Model, h.Reason, h.Credential == b.Fingerprint("sk-..."))

	// One replica probes a recovering model.
	okA, _ := a.Lease(context.Background(), "api.openai.com", "dead-model", 10*time.Second)
	okB, held := b.Lease(context.Background(), "api.openai.com", "dead-model", 10*time.Second)
	fmt.Println(okA, okB, held > 9*time.Second)
	// Output:
	// cooldown api.openai.com gpt-4o rate_limited true
	// true false true
}

// The fleet's rate limiter: each replica's Transport, with pacing, asks
// its State before every attempt once pacing has learned the rate from the
// rate-limit headers — one Redis round trip per attempt — and the
// replicas of a namespace together keep within it. Here the two replicas'
// reserves are made by hand, for a key whose headers said 2 requests per
// minute.
func ExampleWithLimiter() {
	client := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer client.Close()
	ns := fmt.Sprint("example-limiter-", time.Now().UnixNano()) // one namespace per quota; here, per run

	a := redisstate.New(client, redisstate.WithNamespace(ns), redisstate.WithLimiter())
	defer a.Close()
	b := redisstate.New(client, redisstate.WithNamespace(ns), redisstate.WithLimiter())
	defer b.Close()
	rt := llmtransport.New(http.DefaultTransport, llmtransport.WithPacing(), llmtransport.WithSharedState(a))
	defer rt.Close() // replica a's Transport: it calls a.Reserve itself

	ctx := context.Background()
	r := llmtransport.Reservation{Host: "api.openai.com", Model: "gpt-4o", Credential: a.Fingerprint("sk-..."),
		Requests: llmtransport.RateCost{Limit: 2, Window: time.Minute, Cost: 1}}
	fmt.Println(a.Reserve(ctx, r), b.Reserve(ctx, r)) // the limit's two requests, one from each replica
	w := a.Reserve(ctx, r)                            // the third waits for the rate: half a minute
	fmt.Println(w > 29*time.Second && w <= 30*time.Second)
	// Output:
	// 0s 0s
	// true
}
