package redisstate

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
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

// benchReservation is a request's reservation against limits it never reaches.
func benchReservation(model string) llmtransport.Reservation {
	return llmtransport.Reservation{Host: "api.openai.com", Model: model, Credential: 0x5eed,
		Requests: llmtransport.RateCost{Limit: 1 << 40, Window: time.Minute, Cost: 1},
		Tokens:   llmtransport.RateCost{Limit: 1 << 50, Window: time.Minute, Cost: 700}}
}

// BenchmarkReserve is the limiter's cost to a request: one EVALSHA of the
// GCRA script (two dimensions), one at a time ("serial") and from many
// goroutines ("parallel"); "cached" is a reserve of a denied key answered
// from memory, "off" one without WithLimiter; "ping" is a PING of the
// same client, for comparison.
func BenchmarkReserve(b *testing.B) {
	addr := needRedis(b)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	s := New(c, WithNamespace("bench-reserve"), WithLimiter(), WithTimeout(time.Second))
	defer s.Close()
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if s.Reserve(ctx, benchReservation("serial")) != 0 {
				b.Fatal("denied")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.Reserve(ctx, benchReservation("parallel"))
			}
		})
	})
	b.Run("cached", func(b *testing.B) {
		r := benchReservation("cached")
		r.Requests = llmtransport.RateCost{Limit: 1, Window: 24 * time.Hour, Cost: 1}
		s.Reserve(ctx, r)
		if s.Reserve(ctx, r) == 0 {
			b.Fatal("not denied")
		}
		b.ReportAllocs()
		for b.Loop() {
			s.Reserve(ctx, r)
		}
	})
	b.Run("ping", func(b *testing.B) { // for comparison: a round trip of the client alone
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("off", func(b *testing.B) {
		off := New(c, WithNamespace("bench-reserve"))
		defer off.Close()
		b.ReportAllocs()
		for b.Loop() {
			off.Reserve(ctx, benchReservation("off"))
		}
	})
}

// BenchmarkLimiterTransport is a chat call through a Transport with pacing
// and shared state, over loopback to llmtransporttest's gateway (whose
// limit is never reached), without and with the limiter: the difference
// is the limiter's round trip as a request sees it.
func BenchmarkLimiterTransport(b *testing.B) {
	addr := needRedis(b)
	gw := llmtransporttest.NewServer(llmtransporttest.WithRateLimit(llmtransporttest.RateLimit{Requests: 1 << 30, Tokens: 1 << 30, Window: time.Minute}))
	defer gw.Close()
	body := `{"model":"gpt-4o-mini","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`
	for _, limiter := range []bool{false, true} {
		name := "pacing"
		opts := []Option{WithNamespace("bench-transport"), WithTimeout(time.Second)}
		if limiter {
			name, opts = "pacing+limiter", append(opts, WithLimiter())
		}
		b.Run(name, func(b *testing.B) {
			c := redis.NewClient(&redis.Options{Addr: addr})
			defer c.Close()
			s := New(c, opts...)
			defer s.Close()
			base := http.DefaultTransport.(*http.Transport).Clone()
			defer base.CloseIdleConnections()
			rt := llmtransport.New(base, llmtransport.WithPacing(), llmtransport.WithSharedState(s))
			defer rt.Close()
			send := func() {
				req, _ := http.NewRequest(http.MethodPost, gw.URL+"/v1/chat/completions", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer sk-bench")
				resp, err := rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			send() // pacing learns the rate
			b.ReportAllocs()
			for b.Loop() {
				send()
			}
		})
	}
}
