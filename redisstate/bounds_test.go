package redisstate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/llmtransport/llmtransport"
)

// TestOwnAndDenialsBounded: the State's memory is bounded: its own holds
// remembered (to tell their echoes) at maxOwn, the limiter's negative
// cache at maxDenials, however many keys come.
func TestOwnAndDenialsBounded(t *testing.T) {
	s := New(nil)
	now := time.Now()
	s.mu.Lock()
	for i := range maxOwn + 100 {
		h := llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: fmt.Sprint("m", i), TTL: time.Minute}
		s.remember(s.keys.holdKey(h), h, now.Add(time.Minute))
	}
	n := len(s.own)
	s.mu.Unlock()
	if n != maxOwn {
		t.Errorf("own: %d entries, want %d", n, maxOwn)
	}
	l := &s.lim
	t0 := l.now()
	for i := range maxDenials + 100 {
		l.deny(limitKey{"h", fmt.Sprint("m", i), 1}, t0+int64(time.Minute), t0)
	}
	if len(l.denied) != maxDenials {
		t.Errorf("denied: %d entries, want %d", len(l.denied), maxDenials)
	}
}

// TestSubscribeHandshakeBounded: against a server that accepts connections
// and never answers, with go-redis's own reads of 3 s, a subscription
// gives up within twice the timeout (the handshake, then its
// confirmation), counted as an error, instead of waiting for go-redis.
func TestSubscribeHandshakeBounded(t *testing.T) {
	leakCheck(t)
	addr := silentServer(t)
	c := redis.NewClient(&redis.Options{Addr: addr}) // go-redis defaults: 3 s reads
	defer c.Close()
	reader := sdkmetric.NewManualReader()
	const timeout = 50 * time.Millisecond
	s := New(c, WithTimeout(timeout), WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	defer s.Close()

	stop := s.Subscribe(func(llmtransport.Hold) {})
	defer stop()
	took := errorCounted(t, reader, 2500*time.Millisecond, "no failed subscription in 2.5 s: the handshake waited for go-redis's reads")
	bounded(t, "the first failed subscription", []time.Duration{took}, 2*timeout+slack())
}

// TestBackfillBounded: with more live holds in a namespace than
// maxBackfill, a backfill reads maxBackfill of them, not all.
func TestBackfillBounded(t *testing.T) {
	c := newClient(t, needRedis(t))
	s := newState(t, c)
	ctx := context.Background()
	pipe := c.Pipeline()
	until := float64(time.Now().Add(time.Minute).UnixMilli())
	for i := range maxBackfill + 100 {
		h := llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: fmt.Sprint("m", i), TTL: time.Minute}
		k := s.keys.holdKey(h)
		pipe.Set(ctx, k, encodeValue(h), time.Minute)
		pipe.ZAdd(ctx, s.keys.index, redis.Z{Score: until, Member: k})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	vals, err := backfillScript.Run(ctx, c, []string{s.keys.index}, maxBackfill).Slice()
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 2*maxBackfill {
		t.Fatalf("a backfill read %d holds of %d, want %d", len(vals)/2, maxBackfill+100, maxBackfill)
	}
}
