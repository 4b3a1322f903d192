package redisstate

import (
	"context"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// The limiter's tests against the real redis-server: the script alone,
// then State.Reserve (the negative cache, failing open). Transports over
// the limiter are in limiter_it_test.go.

// commands counts the commands a go-redis client sends, by name.
type commands struct {
	mu sync.Mutex
	n  map[string]int
}

func countCommands(c *redis.Client) *commands {
	h := &commands{n: map[string]int{}}
	c.AddHook(h)
	return h
}

func (h *commands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.n[cmd.Name()]++
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (h *commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// count returns how many commands named name were sent ("" for all).
func (h *commands) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if name != "" {
		return h.n[name]
	}
	total := 0
	for _, n := range h.n {
		total += n
	}
	return total
}

// reserve runs the script once and returns its answer.
func reserve(t *testing.T, c redis.UniversalClient, key string, args ...any) time.Duration {
	t.Helper()
	us, err := reserveScript.Run(context.Background(), c, []string{key}, args...).Int64()
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(us) * time.Microsecond
}

// redisNow is the Redis server's clock, in microseconds.
func redisNow(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	now, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now.UnixMicro()
}

// TestReserveScript: the GCRA on Redis's clock. A whole window's limit
// goes at once, then the request after it waits one emission interval;
// a request's cost counts in each dimension; a dimension without room
// denies the request in all, storing nothing; the key lives as long as
// its furthest TAT is ahead; a TAT in the past counts from now; TATs are
// stored as whole microseconds of Redis's TIME.
func TestReserveScript(t *testing.T) {
	leakCheck(t)
	c := newClient(t, needRedis(t))
	key := newKeys(t.Name()).limitKey("h", "m", 1)
	c.Del(context.Background(), key)
	const second = int64(1e6)

	before := redisNow(t, c)
	for i := range 4 {
		if w := reserve(t, c, key, "r", 4, second, 1); w != 0 {
			t.Fatalf("request %d of 4 per second: wait %v", i, w)
		}
	}
	w := reserve(t, c, key, "r", 4, second, 1)
	elapsed := time.Duration(redisNow(t, c)-before) * time.Microsecond
	if w <= 250*time.Millisecond-elapsed || w > 250*time.Millisecond {
		t.Errorf("the fifth request of 4 per second waits %v, want 250 ms less the %v elapsed", w, elapsed)
	}
	tat, err := c.HGet(context.Background(), key, "r").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9]{16}$`).MatchString(tat) {
		t.Errorf("TAT stored as %q, want whole microseconds", tat)
	}
	if v, _ := strconv.ParseInt(tat, 10, 64); v < before+second || v > redisNow(t, c)+second {
		t.Errorf("TAT %d, want one second after the burst on Redis's clock (%d)", v, before+second)
	}
	if p := c.PTTL(context.Background(), key).Val(); p <= 0 || p > 1002*time.Millisecond {
		t.Errorf("the key lives %v, want about the second its TAT is ahead", p)
	}

	// Costs, and all or nothing: 600 tokens of 1,000 per second go; 600
	// more wait 200 ms, and their request dimension is not counted.
	key2 := newKeys(t.Name()).limitKey("h", "m", 2)
	c.Del(context.Background(), key2)
	if w := reserve(t, c, key2, "r", 100, second, 1, "t", 1000, second, 600); w != 0 {
		t.Fatalf("600 of 1,000 tokens: wait %v", w)
	}
	r1 := c.HGet(context.Background(), key2, "r").Val()
	w = reserve(t, c, key2, "r", 100, second, 1, "t", 1000, second, 600)
	if w <= 150*time.Millisecond || w > 200*time.Millisecond {
		t.Errorf("600 more tokens wait %v, want just under 200 ms", w)
	}
	if r2 := c.HGet(context.Background(), key2, "r").Val(); r2 != r1 {
		t.Errorf("a denied request was counted in its request dimension: %s then %s", r1, r2)
	}

	// A TAT long past counts from now.
	old := redisNow(t, c) - 10*second
	c.HSet(context.Background(), key2, "t", strconv.FormatInt(old, 10))
	if w := reserve(t, c, key2, "t", 1000, second, 1000); w != 0 {
		t.Errorf("a whole window after a TAT long past: wait %v", w)
	}
	if w := reserve(t, c, key2, "t", 1000, second, 1); w <= 0 {
		t.Errorf("one token past a whole window went at once")
	}
}

// limiterState returns a State with the limiter on its own client, whose
// commands are counted, with its metrics read by the reader returned.
func limiterState(t *testing.T, addr string, opts ...Option) (*State, *commands, *sdkmetric.ManualReader) {
	t.Helper()
	c := newClient(t, addr)
	cmds := countCommands(c)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	s := newState(t, c, append([]Option{WithLimiter(), WithMeterProvider(mp)}, opts...)...)
	return s, cmds, reader
}

// outcomes returns MetricReserves by outcome, and MetricErrors by op.
func outcomes(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			d, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, p := range d.DataPoints {
				switch m.Name {
				case MetricReserves:
					v, _ := p.Attributes.Value(attribute.Key("llm.shared.outcome"))
					out[v.AsString()] += p.Value
				case MetricErrors:
					v, _ := p.Attributes.Value(attribute.Key("llm.shared.op"))
					out["errors "+v.AsString()] += p.Value
				}
			}
		}
	}
	return out
}

// fakeClock is the limiter's local clock in a test: Redis keeps its own.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// useClock makes s's limiter read clk, from clk's time of now.
func useClock(s *State) *fakeClock {
	clk := &fakeClock{t: time.Now()}
	s.lim.clock = clk.now
	return clk
}

func twoPer10s(model string) llmtransport.Reservation {
	return llmtransport.Reservation{Host: "api.example.com", Model: model, Credential: 7,
		Requests: llmtransport.RateCost{Limit: 2, Window: 10 * time.Second, Cost: 1}}
}

// TestReserveNegativeCache: once Redis denies a key until T, the key's
// further reserves wait without a round trip, each one emission interval
// after the one before; when T has come (on the local clock), the next
// reserve asks Redis again. Other keys ask Redis as usual.
func TestReserveNegativeCache(t *testing.T) {
	leakCheck(t)
	s, cmds, reader := limiterState(t, needRedis(t))
	clk := useClock(s)
	ctx := context.Background()
	if err := reserveScript.Load(ctx, s.client).Err(); err != nil {
		t.Fatal(err)
	}
	r := twoPer10s("cached")
	for i := range 2 {
		if w := s.Reserve(ctx, r); w != 0 {
			t.Fatalf("reserve %d of 2 per 10 s: wait %v", i, w)
		}
	}
	denied := s.Reserve(ctx, r)
	if denied <= 4*time.Second || denied > 5*time.Second {
		t.Fatalf("the third of 2 per 10 s: wait %v, want just under 5 s", denied)
	}
	if n := cmds.count("evalsha"); n != 3 {
		t.Fatalf("%d round trips for 3 reserves", n)
	}
	sent := cmds.count("")
	prev := denied
	for i := range 10 {
		w := s.Reserve(ctx, r)
		if w != prev+5*time.Second {
			t.Errorf("cached reserve %d: wait %v, want %v (the one before, plus 10 s / 2)", i, w, prev+5*time.Second)
		}
		prev = w
	}
	if n := cmds.count(""); n != sent {
		t.Errorf("%d commands for 10 reserves of a denied key, want none", n-sent)
	}
	if w := s.Reserve(ctx, twoPer10s("other")); w != 0 || cmds.count("evalsha") != 4 {
		t.Errorf("another key: wait %v after %d round trips, want 0 after 4", w, cmds.count("evalsha"))
	}

	// The denial is over on the local clock: Redis is asked (and, its
	// own clock not having moved as far, denies again).
	clk.add(denied)
	if w := s.Reserve(ctx, r); w <= 0 || cmds.count("evalsha") != 5 {
		t.Errorf("at the end of the denial: wait %v after %d round trips, want a wait from Redis, the 5th", w, cmds.count("evalsha"))
	}
	got := outcomes(t, reader)
	want := map[string]int64{"allowed": 3, "denied": 2, "cached": 10}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("MetricReserves %s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

// TestReserveOff: without WithLimiter, Reserve answers 0 and asks Redis
// nothing; a reservation with no usable dimension asks nothing either.
func TestReserveOff(t *testing.T) {
	leakCheck(t)
	addr := needRedis(t)
	c := newClient(t, addr)
	cmds := countCommands(c)
	s := newState(t, c)
	for range 10 {
		if w := s.Reserve(context.Background(), twoPer10s("off")); w != 0 {
			t.Fatalf("wait %v without WithLimiter", w)
		}
	}
	on, cmdsOn, _ := limiterState(t, addr)
	for _, r := range []llmtransport.Reservation{
		{Host: "h", Model: "m"},
		{Host: "h", Model: "m", Requests: llmtransport.RateCost{Limit: 2, Window: time.Second, Cost: 3}},
		{Host: "h", Model: "m", Tokens: llmtransport.RateCost{Limit: 2, Window: 0, Cost: 1}},
		{Host: "h", Model: "m", Tokens: llmtransport.RateCost{Limit: 2, Window: 48 * time.Hour, Cost: 1}},
	} {
		if w := on.Reserve(context.Background(), r); w != 0 {
			t.Errorf("%+v: wait %v", r, w)
		}
	}
	if n := cmds.count("") + cmdsOn.count(""); n != 0 {
		t.Errorf("%d Redis commands", n)
	}
}

// silentServer accepts connections and never answers; it is closed at
// the end of t.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	conns.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		conns.Wait()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

// TestReserveFailsOpen: a Redis that refuses connections, or accepts them
// and never answers, lets every reserve go: the first within the timeout
// (counted as an error), the others at once, without a round trip, for
// DefaultPauseAfterError; then Redis is asked again.
func TestReserveFailsOpen(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr func(t *testing.T) string
	}{
		{"refused", func(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(freePort()) }},
		{"silent", silentServer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			addr := tc.addr(t)
			// Short reads, so that the calls abandoned at the timeout end
			// (and Close returns) soon.
			c := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: 200 * time.Millisecond, DialTimeout: 200 * time.Millisecond})
			cmds := countCommands(c)
			reader := sdkmetric.NewManualReader()
			s := New(c, WithNamespace(t.Name()), WithLimiter(), WithTimeout(DefaultTimeout),
				WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
			defer c.Close()
			defer s.Close()
			clk := useClock(s)
			r := twoPer10s("m")

			start := time.Now()
			if w := s.Reserve(context.Background(), r); w != 0 {
				t.Fatalf("wait %v from a Redis that fails", w)
			}
			bounded(t, "the first Reserve", []time.Duration{time.Since(start)}, DefaultTimeout+slack())
			sent := cmds.count("")
			var took []time.Duration
			for range 1000 {
				start := time.Now()
				if w := s.Reserve(context.Background(), r); w != 0 {
					t.Fatalf("wait %v during the pause", w)
				}
				took = append(took, time.Since(start))
			}
			bounded(t, "Reserve during the pause", took, time.Millisecond)
			if n := cmds.count(""); n != sent {
				t.Errorf("%d commands during the pause", n-sent)
			}
			clk.add(DefaultPauseAfterError)
			if w := s.Reserve(context.Background(), r); w != 0 || cmds.count("") == sent {
				t.Errorf("after the pause: wait %v, Redis asked: %v", w, cmds.count("") > sent)
			}
			got := outcomes(t, reader)
			if got["error"] != 2 || got["errors reserve"] != 2 || got["unavailable"] != 1000 || got["allowed"]+got["denied"] != 0 {
				t.Errorf("MetricReserves and MetricErrors: %v, want 2 errors and 1000 unavailable", got)
			}
		})
	}
}

// TestReserveClosed: after Close, Reserve answers 0 without Redis; a
// Reserve running when Close is called ends before Close returns.
func TestReserveClosed(t *testing.T) {
	leakCheck(t)
	s, cmds, _ := limiterState(t, needRedis(t))
	var wg sync.WaitGroup
	var stop atomic.Bool
	for range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				s.Reserve(context.Background(), twoPer10s("closing-"+strconv.Itoa(i)))
			}
		})
	}
	for cmds.count("evalsha") < 20 { // bounded: every reserve is a round trip
		time.Sleep(time.Millisecond)
	}
	_ = s.Close()
	stop.Store(true)
	wg.Wait()
	n := cmds.count("")
	if w := s.Reserve(context.Background(), twoPer10s("after")); w != 0 || cmds.count("") != n {
		t.Errorf("after Close: wait %v, %d commands", w, cmds.count("")-n)
	}
}

// TestLimiterKeys: the limiter's key is in the namespace's slot, names
// the credential by its keyed fingerprint only, and holds nothing else.
func TestLimiterKeys(t *testing.T) {
	leakCheck(t)
	addr := needRedis(t)
	const secret = "sk-proj-LIVESECRETabcdefghijklmnopqrstuvwxyz0123456789"
	s, _, _ := limiterState(t, addr, WithSecret([]byte("fleet secret")))
	rc := newClient(t, addr)
	r := twoPer10s("gpt-4o")
	r.Credential = s.Fingerprint(secret)
	if w := s.Reserve(context.Background(), r); w != 0 {
		t.Fatalf("wait %v", w)
	}
	want := "llmt:{" + escape(t.Name(), true) + "}:rl:api.example.com:gpt-4o:" + credHex(r.Credential)
	keys := rc.Keys(context.Background(), "llmt:{"+escape(t.Name(), true)+"}:rl:*").Val()
	if len(keys) != 1 || keys[0] != want {
		t.Fatalf("limiter keys %q, want [%q]", keys, want)
	}
	if hashTag(want) != hashTag(s.keys.index) {
		t.Errorf("the limiter key is not in the namespace's slot")
	}
	fields := rc.HGetAll(context.Background(), want).Val()
	if len(fields) != 1 || fields["r"] == "" {
		t.Errorf("limiter hash %v, want one TAT", fields)
	}
	for _, v := range append(keys, fields["r"]) {
		if strings.Contains(v, secret[8:24]) {
			t.Errorf("%q holds the key", v)
		}
	}
}
