package pacing_test

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport/internal/hint"
	"github.com/llmtransport/llmtransport/internal/pacing"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

var simDuration = flag.Duration("sim.duration", 3*time.Second, "how long each run of TestSimulation lasts")

// simScenario is a fake gateway's limit and latency.
type simScenario struct {
	name  string
	limit llmtransporttest.RateLimit
	// latency is the fixed latency of every answer, and jitter the most
	// added to it at random, so that responses come back out of order.
	latency, jitter time.Duration
}

var simScenarios = []simScenario{
	// 50 requests and 10,000 tokens per 250 ms window (200 requests/s,
	// 40,000 tokens/s), with requests of 100–400 tokens, so that the
	// token limit binds (≈ 40 requests a window) and requests of
	// different costs compete for it.
	{"tokens bind, 5 ms latency", llmtransporttest.RateLimit{Requests: 50, Tokens: 10000, Window: 250 * time.Millisecond}, 5 * time.Millisecond, 0},
	// 30 requests and 7,500 tokens per 500 ms window, and latencies of
	// 20–300 ms, so that responses of concurrent calls cross and the
	// callers can send not much more than the limit (≈ 100 requests/s
	// against 60): the limit is only reached if waits end on time.
	{"both bind, 20–300 ms latency", llmtransporttest.RateLimit{Requests: 30, Tokens: 7500, Window: 500 * time.Millisecond}, 20 * time.Millisecond, 280 * time.Millisecond},
}

const (
	simCallers = 16
	simModel   = "gpt-4o-mini"
)

// simMode is how the callers of the simulation decide when to send.
type simMode int

const (
	plainLoop simMode = iota // send, and send again: no waiting at all
	cooldown                 // wait out the reset a 429 reported, shared by all callers (today's transport)
	paced                    // the pacer
)

var simModeNames = [...]string{"plain loop", "429 cooldown", "pacer"}

type simResult struct {
	mode      simMode
	sent      int           // upstream requests
	limited   int           // of them answered 429
	ok        int           // successes that arrived within the run
	okTokens  int           // their tokens
	elapsed   time.Duration // the run
	maxWait   time.Duration // the longest single pacing wait
	utilReqs  float64       // ok / request capacity of the run
	utilToks  float64       // okTokens / token capacity of the run
	paceWaits int64
}

func (r simResult) share() float64 { return float64(r.limited) / float64(max(r.sent, 1)) }

// util is the utilisation of the limit that binds.
func (r simResult) util() float64 { return max(r.utilReqs, r.utilToks) }

// simBodies are request bodies of about 400 bytes asking for 0–300 output
// tokens, and their costs.
func simBodies() (bodies [][]byte, maxTokens []int64) {
	for mt := int64(0); mt <= 300; mt += 25 {
		b := fmt.Sprintf(`{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":%q}]}`,
			simModel, mt, strings.Repeat("Summarise the report. ", 16))
		bodies = append(bodies, []byte(b))
		maxTokens = append(maxTokens, mt)
	}
	return bodies, maxTokens
}

// simulate runs simCallers callers in a plain loop of requests against a
// fake gateway that enforces simLimit, for d, deciding when to send by
// mode.
func simulate(t *testing.T, sc simScenario, mode simMode, d time.Duration) simResult {
	simLimit := sc.limit
	jitter := func(n int) llmtransporttest.Fault {
		if sc.jitter <= 0 {
			return llmtransporttest.OK()
		}
		r := rand.New(rand.NewPCG(uint64(n), 18))
		return llmtransporttest.Delay(time.Duration(r.Int64N(int64(sc.jitter))), llmtransporttest.OK())
	}
	gw := llmtransporttest.NewServer(llmtransporttest.WithRateLimit(simLimit), llmtransporttest.WithLatency(sc.latency),
		llmtransporttest.WithModel(simModel, jitter))
	defer gw.Close()
	client := gw.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = simCallers
	bodies, maxTokens := simBodies()

	// Start at the start of a window, found from the reset a first
	// request reports, and run whole windows.
	probe, err := client.Post(gw.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"probe"}`))
	if err != nil {
		t.Fatal(err)
	}
	probe.Body.Close()
	reset, ok := hint.ParseDuration(probe.Header.Get("X-Ratelimit-Reset-Requests"))
	if !ok {
		t.Fatalf("probe: no reset in %v", probe.Header)
	}
	// The window began at most a millisecond before this (the reset is
	// rounded up); the log has when the probe arrived.
	start := gw.Log()[0].Time.Add(reset)
	d = d.Truncate(simLimit.Window)
	stop := start.Add(d)
	time.Sleep(time.Until(start))

	p := pacing.New[string](0)
	var until atomic.Int64 // cooldown: no request before this (UnixNano)
	var maxWait, waits atomic.Int64
	var wg sync.WaitGroup
	for g := range simCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 18))
			for time.Now().Before(stop) {
				i := rng.IntN(len(bodies))
				body := bodies[i]
				var tk pacing.Ticket
				switch mode {
				case paced:
					cost := pacing.Estimate(int64(len(body)), maxTokens[i], 1)
					for {
						w, tt := p.Admit(simModel, cost, time.Now())
						if w == 0 {
							tk = tt
							break
						}
						waits.Add(1)
						for m := maxWait.Load(); int64(w) > m && !maxWait.CompareAndSwap(m, int64(w)); m = maxWait.Load() {
						}
						time.Sleep(w)
					}
				case cooldown:
					if w := time.Duration(until.Load() - time.Now().UnixNano()); w > 0 {
						time.Sleep(w)
					}
				}
				req, _ := http.NewRequest(http.MethodPost, gw.URL+"/v1/chat/completions", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					tk.Forget(time.Now())
					continue
				}
				now := time.Now()
				tk.Observe(resp.StatusCode, resp.Header, now)
				if mode == cooldown && resp.StatusCode == http.StatusTooManyRequests {
					// What the transport's cooldown does with the 429's
					// hint: the reset of the exhausted dimension, else
					// "Please try again in <the time to the next window>"
					// of the message, which is the longest reset.
					var wait, longest time.Duration
					l := pacing.ParseHeaders(resp.Header, now)
					for _, w := range l {
						if w.Known() && w.Remaining == 0 {
							wait = max(wait, w.Reset)
						}
						longest = max(longest, w.Reset)
					}
					if wait == 0 {
						wait = longest
					}
					for u, v := until.Load(), now.Add(wait).UnixNano(); v > u && !until.CompareAndSwap(u, v); u = until.Load() {
					}
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	elapsed := d
	r := simResult{mode: mode, elapsed: elapsed, maxWait: time.Duration(maxWait.Load()), paceWaits: waits.Load()}
	// The run starts up to a millisecond after the window does: a success
	// counts when it arrived before the end of the run's last window for
	// sure.
	okEnd := stop.Add(-time.Millisecond)
	for _, e := range gw.Log() {
		if e.Model != simModel {
			continue
		}
		r.sent++
		switch {
		case e.Status == http.StatusTooManyRequests:
			r.limited++
		case e.Status == http.StatusOK && !e.Time.Before(start) && e.Time.Before(okEnd):
			r.ok++
			r.okTokens += (len(e.Body) + 3) / 4
			for i, b := range bodies {
				if bytes.Equal(b, e.Body) {
					r.okTokens += int(maxTokens[i])
				}
			}
		}
	}
	windows := elapsed.Seconds() / simLimit.Window.Seconds()
	r.utilReqs = float64(r.ok) / (windows * float64(simLimit.Requests))
	r.utilToks = float64(r.okTokens) / (windows * float64(simLimit.Tokens))
	return r
}

// TestSimulation measures, against the fake gateway's window limit with 16
// concurrent callers, the share of upstream requests answered 429 and the
// throughput, as a share of the limit that binds, for a plain loop of
// requests, the same loop waiting out each 429's hint in a cooldown shared
// by all callers (what the transport does today), and the loop driven by
// the pacer. The pacer must keep 429s at or under 1 % (asserted) with
// throughput at or above 90 % of the limit (logged; issue 18).
//
//	go test -run TestSimulation -v ./internal/pacing
func TestSimulation(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time simulation; skipped with -short")
	}
	for _, sc := range simScenarios {
		t.Run(sc.name, func(t *testing.T) {
			var results []simResult
			for _, mode := range []simMode{plainLoop, cooldown, paced} {
				results = append(results, simulate(t, sc, mode, *simDuration))
			}
			lat := sc.latency.String()
			if sc.jitter > 0 {
				lat += "–" + (sc.latency + sc.jitter).String()
			}
			t.Logf("limit %d requests and %d tokens per %v window, %d callers, %s upstream latency, %v per run",
				sc.limit.Requests, sc.limit.Tokens, sc.limit.Window, simCallers, lat, *simDuration)
			t.Logf("%-13s %9s %9s %9s %9s %14s %14s", "mode", "upstream", "429s", "429 share", "ok", "of req limit", "of tok limit")
			for _, r := range results {
				t.Logf("%-13s %9d %9d %8.2f%% %9d %13.1f%% %13.1f%%", simModeNames[r.mode], r.sent, r.limited, 100*r.share(), r.ok, 100*r.utilReqs, 100*r.utilToks)
			}
			pr := results[paced]
			t.Logf("pacer: %d waits, longest %v", pr.paceWaits, pr.maxWait)
			if pr.share() > 0.01 {
				t.Errorf("pacer: %.2f%% of upstream requests got a 429, want ≤ 1%%", 100*pr.share())
			}
			// Throughput is logged, not asserted: in real time on a
			// loaded machine (and under -race) it falls below the goal
			// without any fault of the pacer's, even when a plain loop
			// still reaches the limit (89.5 % once under -race on 2
			// shared cores). TestPacedMixedCosts asserts ≥ 90 % in fake
			// time.
			t.Logf("pacer: throughput %.1f%% of the limit (goal ≥ 90%%), plain loop %.1f%%", 100*pr.util(), 100*results[plainLoop].util())
		})
	}
}
