package llmtransport

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport/internal/hint"
	"github.com/llmtransport/llmtransport/internal/workload"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

var pacingSimDuration = flag.Duration("pacing.duration", time.Second, "how long each run of TestPacingSimulation lasts")

// pacingScenario is a fake gateway's window limit and latency.
type pacingScenario struct {
	name            string
	limit           llmtransporttest.RateLimit
	latency, jitter time.Duration
}

// The scenarios of internal/pacing's TestSimulation, run through a
// Transport.
var pacingScenarios = []pacingScenario{
	// The token limit binds (≈ 40 requests of 100–400 tokens a window).
	{"tokens bind, 5 ms latency", llmtransporttest.RateLimit{Requests: 50, Tokens: 10000, Window: 250 * time.Millisecond}, 5 * time.Millisecond, 0},
	// Responses of concurrent calls cross.
	{"both bind, 20–300 ms latency", llmtransporttest.RateLimit{Requests: 30, Tokens: 7500, Window: 500 * time.Millisecond}, 20 * time.Millisecond, 280 * time.Millisecond},
}

// pacingModes are the transports compared: a plain loop (no retries, no
// cooldowns), the default transport (retries, 429 cooldowns), and the
// default transport with WithPacing.
var pacingModes = []struct {
	name string
	opts []Option
}{
	{"plain loop", []Option{WithMaxRetries(0), WithoutCooldowns()}},
	{"default", nil},
	{"WithPacing", []Option{WithPacing()}},
}

const pacingCallers = 16

type pacingResult struct {
	sent, limited, ok int // upstream requests, 429s, successes within the run
	calls, failed     int // calls made, calls that did not end in a 200
	util              float64
	stalled           time.Duration // the process stood still (see stallWatch)
}

// stallWatch measures how long the process stood still: a goroutine that
// asks to sleep 5 ms at a time adds up, less the 5 ms, every gap of more
// than 50 ms between its wake-ups, until stop is closed. A gap is the
// whole process stopped (SIGSTOP) or a machine so loaded that none of its
// goroutines ran. Throughput lost to such a stall is no
// fault of the transports': a run of WithPacing at 67 % of the limit,
// once, was 3 s of it (the test runs pacing last, so a load that starts
// late hits it alone). It returns the total, once stop is closed.
func stallWatch(stop <-chan struct{}) <-chan time.Duration {
	out := make(chan time.Duration, 1)
	go func() {
		var stalled time.Duration
		last := time.Now()
		for {
			select {
			case <-stop:
				out <- stalled
				return
			case <-time.After(5 * time.Millisecond):
			}
			now := time.Now()
			if gap := now.Sub(last); gap > 50*time.Millisecond {
				stalled += gap - 5*time.Millisecond
			}
			last = now
		}
	}()
	return out
}

// runPacing runs pacingCallers callers in a loop of chat calls through a
// Transport made with opts, against a gateway enforcing sc's limit, for
// whole windows lasting about d.
func runPacing(t *testing.T, sc pacingScenario, opts []Option, d time.Duration) pacingResult {
	const model = "gpt-4o-mini"
	jitter := func(n int) llmtransporttest.Fault {
		if sc.jitter <= 0 {
			return llmtransporttest.OK()
		}
		r := rand.New(rand.NewPCG(uint64(n), 18))
		return llmtransporttest.Delay(time.Duration(r.Int64N(int64(sc.jitter))), llmtransporttest.OK())
	}
	gw := llmtransporttest.NewServer(llmtransporttest.WithRateLimit(sc.limit), llmtransporttest.WithLatency(sc.latency),
		llmtransporttest.WithModel(model, jitter))
	defer gw.Close()
	base := gw.Client().Transport.(*http.Transport)
	base.MaxIdleConnsPerHost = pacingCallers
	tr := New(base, opts...)
	var bodies [][]byte
	var maxTokens []int
	for mt := 0; mt <= 300; mt += 25 {
		bodies = append(bodies, fmt.Appendf(nil, `{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":%q}]}`,
			model, mt, strings.Repeat("Summarise the report. ", 16)))
		maxTokens = append(maxTokens, mt)
	}

	// Start at the start of a window, found from a probe's reset.
	probe, err := base.RoundTrip(must(http.NewRequest(http.MethodPost, gw.URL+"/v1/chat/completions", strings.NewReader(`{"model":"probe"}`))))
	if err != nil {
		t.Fatal(err)
	}
	probe.Body.Close()
	reset, ok := hint.ParseDuration(probe.Header.Get("X-Ratelimit-Reset-Requests"))
	if !ok {
		t.Fatalf("probe: no reset in %v", probe.Header)
	}
	start := gw.Log()[0].Time.Add(reset)
	d = max(d.Truncate(sc.limit.Window), sc.limit.Window)
	stop := start.Add(d)
	time.Sleep(time.Until(start))

	var mu sync.Mutex
	var r pacingResult
	var wg sync.WaitGroup
	watchDone := make(chan struct{})
	stalled := stallWatch(watchDone)
	for g := range pacingCallers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 18))
			var calls, failed int
			for time.Now().Before(stop) {
				req, _ := http.NewRequest(http.MethodPost, gw.URL+"/v1/chat/completions", bytes.NewReader(bodies[rng.IntN(len(bodies))]))
				req.Header.Set("Content-Type", "application/json")
				calls++
				resp, err := tr.RoundTrip(req)
				if err != nil {
					failed++
					continue
				}
				if resp.StatusCode != http.StatusOK {
					failed++
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			mu.Lock()
			r.calls += calls
			r.failed += failed
			mu.Unlock()
		})
	}
	wg.Wait()
	close(watchDone)
	r.stalled = <-stalled
	okEnd := stop.Add(-time.Millisecond)
	var okTokens int
	for _, e := range gw.Log() {
		if e.Model != model {
			continue
		}
		r.sent++
		switch {
		case e.Status == http.StatusTooManyRequests:
			r.limited++
		case e.Status == http.StatusOK && !e.Time.Before(start) && e.Time.Before(okEnd):
			r.ok++
			okTokens += (len(e.Body) + 3) / 4
			for i, b := range bodies {
				if bytes.Equal(b, e.Body) {
					okTokens += maxTokens[i]
				}
			}
		}
	}
	windows := d.Seconds() / sc.limit.Window.Seconds()
	r.util = max(float64(r.ok)/(windows*float64(sc.limit.Requests)), float64(okTokens)/(windows*float64(sc.limit.Tokens)))
	if tr.pacer != nil {
		if n := tr.pacer.InFlight(); n != 0 {
			t.Errorf("WithPacing: %d tickets in flight after the run", n)
		}
	}
	return r
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestPacingSimulation measures, through a Transport against
// llmtransporttest's window limit with 16 concurrent callers, the share of
// upstream requests answered 429 and the throughput (successes within the
// run, as a share of the limit that binds) of a plain loop, of the default
// transport (retries, 429 cooldowns) and of the default transport with
// WithPacing, which must keep 429s at or under 1 % (asserted) with
// throughput at or above 90 % of the limit (logged: issue 18's goal, not
// a timed assertion). The figures in the README come from
//
//	go test -run TestPacingSimulation -v -pacing.duration 10s .
func TestPacingSimulation(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time simulation; skipped with -short")
	}
	for _, sc := range pacingScenarios {
		t.Run(sc.name, func(t *testing.T) {
			var results []pacingResult
			for _, m := range pacingModes {
				results = append(results, runPacing(t, sc, m.opts, *pacingSimDuration))
			}
			lat := sc.latency.String()
			if sc.jitter > 0 {
				lat += "–" + (sc.latency + sc.jitter).String()
			}
			t.Logf("limit %d requests and %d tokens per %v, %d callers, %s latency, %v per run",
				sc.limit.Requests, sc.limit.Tokens, sc.limit.Window, pacingCallers, lat, *pacingSimDuration)
			t.Logf("%-11s %8s %6s %9s %7s %7s %13s %14s %9s", "transport", "upstream", "429s", "429 share", "calls", "failed", "ok (in run)", "of the limit", "stalled")
			for i, r := range results {
				t.Logf("%-11s %8d %6d %8.2f%% %7d %7d %13d %13.1f%% %9v", pacingModes[i].name, r.sent, r.limited,
					100*float64(r.limited)/float64(max(r.sent, 1)), r.calls, r.failed, r.ok, 100*r.util, r.stalled.Round(time.Millisecond))
			}
			plain, paced := results[0], results[2]
			if share := float64(paced.limited) / float64(max(paced.sent, 1)); share > 0.01 {
				t.Errorf("WithPacing: %.2f%% of upstream requests got a 429, want ≤ 1%%", 100*share)
			}
			// Throughput is logged, not asserted: on a loaded machine a
			// stalled caller or server makes it fall without any fault
			// of the pacer's (the goal is ≥ 90 %); the stalled column
			// says when the process stood still.
			t.Logf("WithPacing: throughput %.1f%% of the limit (goal ≥ 90%%; process stalled %v), plain loop %.1f%%", 100*paced.util, paced.stalled.Round(time.Millisecond), 100*plain.util)
		})
	}
}

// cannedLimitRT is cannedRT whose answers carry OpenAI's rate-limit
// headers with plenty left, as every answer of a paced API does.
type cannedLimitRT struct{}

func (cannedLimitRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{
		"Content-Type":                   {"application/json"},
		"X-Ratelimit-Limit-Requests":     {"10000"},
		"X-Ratelimit-Remaining-Requests": {"9999"},
		"X-Ratelimit-Reset-Requests":     {"6ms"},
		"X-Ratelimit-Limit-Tokens":       {"30000000"},
		"X-Ratelimit-Remaining-Tokens":   {"29999000"},
		"X-Ratelimit-Reset-Tokens":       {"2ms"},
	}, Body: http.NoBody}, nil
}

// BenchmarkPacingOverhead is BenchmarkLayersOverhead over answers that
// carry rate-limit headers, without and with WithPacing: what pacing costs
// when it has something to learn from every response (parsing the headers,
// the admit and settle of each attempt, the scan of the body's whole top
// level).
//
//	go test -run '^$' -bench 'PacingOverhead$' .
func BenchmarkPacingOverhead(b *testing.B) {
	run := func(b *testing.B, rt http.RoundTripper) {
		b.ReportAllocs()
		for b.Loop() {
			overheadRoundTrip(rt)
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, cannedLimitRT{}) })
	b.Run("llmtransport", func(b *testing.B) { run(b, New(cannedLimitRT{})) })
	b.Run("pacing", func(b *testing.B) { run(b, New(cannedLimitRT{}, WithPacing())) })
}

// BenchmarkPacingOverhead1K is BenchmarkPacingOverhead with the bench's
// own request (workload.Chat1K, sent as workload.Send sends it: a bytes
// reader, a JSON type and an API key), the call bench/run.sh's "1 KB"
// workloads make over loopback, without and with WithPacing.
//
//	go test -run '^$' -bench 'PacingOverhead1K$' .
func BenchmarkPacingOverhead1K(b *testing.B) {
	run := func(b *testing.B, rt http.RoundTripper) {
		b.ReportAllocs()
		for b.Loop() {
			if err := workload.Send(rt, "http://gw.test/ok", workload.Chat1K); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, cannedLimitRT{}) })
	b.Run("llmtransport", func(b *testing.B) { run(b, New(cannedLimitRT{})) })
	b.Run("pacing", func(b *testing.B) { run(b, New(cannedLimitRT{}, WithPacing())) })
}

// BenchmarkPacingOverhead1KParallel is BenchmarkPacingOverhead1K with 32
// concurrent callers per core on one key, as bench/run.sh's "1 KB, c=64"
// on two cores: what contention on the pacer's state adds.
func BenchmarkPacingOverhead1KParallel(b *testing.B) {
	run := func(b *testing.B, rt http.RoundTripper) {
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := workload.Send(rt, "http://gw.test/ok", workload.Chat1K); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("bare", func(b *testing.B) { run(b, cannedLimitRT{}) })
	b.Run("llmtransport", func(b *testing.B) { run(b, New(cannedLimitRT{})) })
	b.Run("pacing", func(b *testing.B) { run(b, New(cannedLimitRT{}, WithPacing())) })
}

// BenchmarkPacingOverhead1KCold is BenchmarkPacingOverhead1K with the
// caches as a round trip leaves them, as at bench/run.sh's "1 KB, c=1":
// before each call, a line in every 64 bytes of 2 MiB is written. Only the
// call is timed, by the clock it reads: "ns/call" (ns/op is mostly the
// eviction). pacing's ns/call less llmtransport's is what pacing adds to a
// call in place, cold.
//
//	go test -run '^$' -bench 'PacingOverhead1KCold$' -count 6 .
func BenchmarkPacingOverhead1KCold(b *testing.B) {
	evict := make([]byte, workload.EvictSize)
	run := func(b *testing.B, rt http.RoundTripper) {
		var in time.Duration
		b.ReportAllocs()
		for b.Loop() {
			workload.Evict(evict)
			start := time.Now()
			if err := workload.Send(rt, "http://gw.test/ok", workload.Chat1K); err != nil {
				b.Fatal(err)
			}
			in += time.Since(start)
		}
		b.ReportMetric(float64(in.Nanoseconds())/float64(b.N), "ns/call")
	}
	b.Run("bare", func(b *testing.B) { run(b, cannedLimitRT{}) })
	b.Run("llmtransport", func(b *testing.B) { run(b, New(cannedLimitRT{})) })
	b.Run("pacing", func(b *testing.B) { run(b, New(cannedLimitRT{}, WithPacing())) })
}
