package redisstate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// The limiter through Transports: replicas with WithPacing and a State
// with WithLimiter, against llmtransporttest's rate-limited gateway, on
// the real redis-server.

const limiterModel = "gpt-4o-mini"

// limitRun is what the gateway saw of one run.
type limitRun struct {
	sent, ok, limited int     // upstream requests, 200s within the run, 429s
	util              float64 // the 200s within the run, as a share of the limit
	reserves          int64   // the limiter's Redis round trips (EVALSHA calls)
}

// runFleet runs workers callers on each of n replicas (Transports with
// pacing and no retries, each with its own State and client in namespace
// ns, with the limiter when limiter is set) in a loop of chat calls on one
// API key, against a gateway enforcing l, for d rounded to whole windows
// from the start of one, after one request of each replica.
func runFleet(t *testing.T, addr, ns string, l llmtransporttest.RateLimit, limiter bool, n, workers int, d time.Duration) limitRun {
	t.Helper()
	gw := llmtransporttest.NewServer(llmtransporttest.WithRateLimit(l), llmtransporttest.WithLatency(5*time.Millisecond))
	defer gw.Close()
	var stateOpts []Option
	if limiter {
		stateOpts = []Option{WithLimiter(), WithTimeout(250 * time.Millisecond)} // room for -race on 2 shared cores
	}
	var reps []*replica
	for i := range n {
		r := newReplicaWith(t, "R"+strconv.Itoa(i), gw.URL, addr, ns, stateOpts, nil,
			llmtransport.WithPacing(), llmtransport.WithMaxRetries(0))
		r.base.MaxIdleConnsPerHost = workers
		reps = append(reps, r)
	}
	var bodies []string
	var maxTokens []int
	for mt := 0; mt <= 300; mt += 25 {
		bodies = append(bodies, fmt.Sprintf(`{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":%q}]}`,
			limiterModel, mt, strings.Repeat("Summarise the report. ", 4)))
		maxTokens = append(maxTokens, mt)
	}

	// Each replica learns the rate from one response (the requests sent
	// before any did are paced by nothing: unknown never paces).
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	for _, r := range reps {
		if st, _, err := r.send(ctx, bodies[0], "sk-fleet"); st != http.StatusOK || err != nil {
			t.Fatalf("%s's first request: %d %v", r.name, st, err)
		}
	}

	// Start at the start of a window, found from a probe's reset.
	probe, err := http.DefaultClient.Post(gw.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"probe"}`))
	if err != nil {
		t.Fatal(err)
	}
	probe.Body.Close()
	reset, err := time.ParseDuration(probe.Header.Get("X-Ratelimit-Reset-Requests")) // a Go duration, as OpenAI's
	if err != nil {
		t.Fatalf("probe: no reset in %v", probe.Header)
	}
	start := gw.Log()[len(gw.Log())-1].Time.Add(reset)
	d = max(d.Truncate(l.Window), l.Window)
	stop := start.Add(d)
	before := evalshaCalls(t, addr)
	time.Sleep(time.Until(start)) // the start of a window: not an assertion's timing

	var wg sync.WaitGroup
	for ri, r := range reps {
		for w := range workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(ri), uint64(w)))
				for time.Now().Before(stop) {
					if _, _, err := r.send(ctx, bodies[rng.IntN(len(bodies))], "sk-fleet"); err != nil {
						t.Errorf("%s: %v", r.name, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	var run limitRun
	if limiter {
		run.reserves = evalshaCalls(t, addr) - before
	}
	okEnd := stop.Add(-time.Millisecond)
	var okTokens int
	for _, e := range gw.Log() {
		if e.Model != limiterModel || e.Time.Before(start) {
			continue
		}
		run.sent++
		switch {
		case e.Status == http.StatusTooManyRequests:
			run.limited++
		case e.Status == http.StatusOK && !e.Time.Before(start) && e.Time.Before(okEnd):
			run.ok++
			okTokens += (len(e.Body) + 3) / 4
			for i, b := range bodies {
				if b == string(e.Body) {
					okTokens += maxTokens[i]
				}
			}
		}
	}
	windows := d.Seconds() / l.Window.Seconds()
	if l.Requests > 0 {
		run.util = float64(run.ok) / (windows * float64(l.Requests))
	}
	if l.Tokens > 0 {
		run.util = max(run.util, float64(okTokens)/(windows*float64(l.Tokens)))
	}
	return run
}

// evalshaCalls is how many EVALSHA the Redis server at addr has run:
// the limiter's round trips, counted by the server.
func evalshaCalls(t *testing.T, addr string) int64 {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:calls="); ok {
			n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			return n
		}
	}
	return 0
}

// TestFleetLimiterTransports: two Transports, each with its own State and
// client, share one API key's limit at llmtransporttest's gateway. Each
// one's pacing alone spends what the server said was left as if it were
// its own: together they overshoot, and collect 429s. With the limiter,
// the fleet keeps within the rate: far fewer 429s, at nearly the same
// throughput; the limiter's round trips are about one per request.
func TestFleetLimiterTransports(t *testing.T) {
	leakCheck(t)
	addr := needRedis(t)
	for _, sc := range []struct {
		name  string
		limit llmtransporttest.RateLimit
	}{
		{"requests", llmtransporttest.RateLimit{Requests: 20, Window: 500 * time.Millisecond}},
		{"tokens", llmtransporttest.RateLimit{Requests: 1000, Tokens: 4000, Window: 500 * time.Millisecond}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			leakCheck(t)
			const d = 4 * time.Second
			without := runFleet(t, addr, t.Name()+"/without", sc.limit, false, 2, 8, d)
			with := runFleet(t, addr, t.Name()+"/with", sc.limit, true, 2, 8, d)
			share := func(r limitRun) float64 { return 100 * float64(r.limited) / float64(max(r.sent, 1)) }
			t.Logf("without the limiter: %d upstream requests, %d 429s (%.1f %%), throughput %.1f %% of the limit",
				without.sent, without.limited, share(without), 100*without.util)
			t.Logf("with the limiter:    %d upstream requests, %d 429s (%.1f %%), throughput %.1f %% of the limit, %d Redis round trips (%.2f per request)",
				with.sent, with.limited, share(with), 100*with.util, with.reserves, float64(with.reserves)/float64(max(with.sent, 1)))
			if without.limited < 20 {
				t.Fatalf("without the limiter only %d 429s: the scenario shows nothing", without.limited)
			}
			// Measured: 5-8x fewer, 3.6x at worst under -race on two
			// shared cores; a limiter that did nothing would give as many.
			if with.limited*5 > without.limited*2 || share(with) > 10 {
				t.Errorf("with the limiter %d 429s (%.1f %%), without %d: want at most 40 %% of them, and 10 %% of the requests", with.limited, share(with), without.limited)
			}
			if with.util < 0.7 {
				t.Errorf("with the limiter the fleet used %.1f %% of the limit: it stalls", 100*with.util)
			}
			if with.reserves == 0 || with.reserves > 3*int64(with.sent) {
				t.Errorf("%d Redis round trips for %d requests", with.reserves, with.sent)
			}
		})
	}
}

// TestFleetLimiterRedisFails: Redis killed (refusing) or frozen (SIGSTOP:
// accepting, answering nothing) while two Transports with the limiter
// send: every request goes, none waits more than the State's 25 ms
// timeout, and only the first after each pause of DefaultPauseAfterError
// waits at all; the failures are counted.
func TestFleetLimiterRedisFails(t *testing.T) {
	for _, how := range []string{"killed", "frozen"} {
		t.Run(how, func(t *testing.T) {
			leakCheck(t)
			srv := ownServer(t)
			gw := llmtransporttest.NewServer(llmtransporttest.WithRateLimit(llmtransporttest.RateLimit{Requests: 1 << 20, Window: time.Minute}))
			t.Cleanup(gw.Close)
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			stateOpts := []Option{WithLimiter(), WithTimeout(DefaultTimeout), WithMeterProvider(mp)}
			opts := []llmtransport.Option{llmtransport.WithPacing(), llmtransport.WithMaxRetries(0)}
			a := newReplicaWith(t, "A", gw.URL, srv.addr, t.Name(), stateOpts, nil, opts...)
			b := newReplicaWith(t, "B", gw.URL, srv.addr, t.Name(), stateOpts, nil, opts...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			latencies(t, ctx, 20, "m", a, b) // learn the rate, warm the connections
			if got := outcomes(t, reader); got["allowed"] < 30 {
				t.Fatalf("the limiter allowed %d reserves with Redis up, want every request but the first of each", got["allowed"])
			}
			before := latencies(t, ctx, 100, "m", a, b)
			switch how {
			case "killed":
				srv.stop()
			case "frozen":
				if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = srv.cmd.Process.Signal(syscall.SIGCONT) })
			}
			after := latencies(t, ctx, 200, "m", a, b)
			slow := 0
			for _, d := range after {
				if d >= DefaultTimeout {
					slow++
				}
			}
			t.Logf("request latency with Redis up: p50 %v p99 %v max %v; %s: p50 %v p99 %v max %v, %d of %d at or over the 25 ms timeout",
				percentile(before, 50), percentile(before, 99), percentile(before, 100), how,
				percentile(after, 50), percentile(after, 99), percentile(after, 100), slow, len(after))
			bounded(t, "requests with Redis "+how, after, percentile(before, 50)+slack())
			if worst := percentile(after, 100); worst > DefaultTimeout+slack() {
				t.Errorf("a request took %v with Redis %s: over the timeout", worst, how)
			}
			got := outcomes(t, reader)
			if got["error"] < 1 || got["errors reserve"] != got["error"] || got["unavailable"] < 300 {
				t.Errorf("MetricReserves and MetricErrors: %v, want errors, and the rest unavailable", got)
			}
			// One timeout per replica per pause, and the 400 requests
			// took less than a pause: a few slow ones at most.
			if slow > 4 {
				t.Errorf("%d requests waited for the timeout, want about one per replica", slow)
			}
		})
	}
}
