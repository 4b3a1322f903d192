// Command bench compares llmtransport with the bare http.Transport and with
// the alternatives (go-retryablehttp, otelhttp, failsafe-go, and a
// hand-built otelhttp + go-retryablehttp + gobreaker stack) on the same
// workloads, and prints one markdown table of ratios to bare.
//
// The upstream is this program again, run as a child process on loopback,
// so that the CPU time the measuring process reports (getrusage) is the
// clients' alone. The clients take turns, round after round, so that
// machine noise falls on all of them alike; each figure is the median over
// the rounds, and each ratio the median of the per-round ratios.
//
//	cd bench && go run .          # a few minutes on 2 cores
//	cd bench && go run . -quick   # well under a minute, noisier
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/llmtransport/llmtransport/internal/workload"
)

func main() {
	if os.Getenv(serverEnv) == "1" {
		serve()
		return
	}
	rounds := flag.Int("rounds", 12, "rounds of the interleaved measurements")
	segment := flag.Duration("segment", 50*time.Millisecond, "how long bare runs a workload per round; the others run as many requests")
	quick := flag.Bool("quick", false, "shorthand for -rounds 4 -segment 25ms")
	noDead := flag.Bool("nodead", false, "skip the dead-upstream runs")
	only := flag.String("clients", "", "comma-separated contenders to run besides bare (default: all of the table's; also: "+experimentNames()+")")
	onlyW := flag.String("workloads", "", "run only the workloads whose name contains this (e.g. \"1 KB\")")
	soloFor := flag.Duration("solo", 0, "run the last contender named by -clients alone on the first workload for this long (to profile from outside)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measurements to this file")
	flag.StringVar(&redisAddr, "redis", "", "the Redis of the llmtransport +fleet contender (default: a redis-server started on a free loopback port)")
	flag.Parse()
	defer func() { stopRedis() }()
	if *quick {
		*rounds, *segment = 4, 25*time.Millisecond
	}
	if err := selectClients(*only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if *onlyW != "" {
		workloads = slices.DeleteFunc(workloads, func(w job) bool { return !strings.Contains(w.name, *onlyW) })
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if *soloFor > 0 {
		if err := solo(*soloFor); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			stopRedis()
			os.Exit(1)
		}
		return
	}
	if err := run(*rounds, *segment, !*noDead); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		stopRedis()
		os.Exit(1)
	}
}

// job is one kind of request, sent by conc goroutines at once.
type job struct {
	name string
	body []byte
	conc int
}

var workloads = []job{
	{"1 KB, c=1", workload.Chat1K, 1},
	{"1 KB, c=64", workload.Chat1K, 64},
	{"1 MB model last, c=1", workload.Chat1M, 1},
	{"1 MB model last, c=64", workload.Chat1M, 64},
}

// sample is one measurement of one client on one workload, per request.
type sample struct {
	wall, cpu time.Duration
	allocs    float64
	bytes     float64
}

// pair is a client's sample and bare's neighbouring one.
type pair struct{ bare, x sample }

func run(rounds int, segment time.Duration, dead bool) error {
	// Real deployments propagate trace context; both llmtransport and
	// otelhttp inject through the global propagator.
	otel.SetTextMapPropagator(propagation.TraceContext{})

	up, err := startUpstream()
	if err != nil {
		return err
	}
	defer up.stop()

	tp := newProvider()
	defer tp.Shutdown(context.Background())

	rts := make([]http.RoundTripper, len(clients))
	for i, c := range clients {
		rts[i] = c.wrap(newBase(), tp)
	}
	url := up.url + "/ok"

	// Warm up every client on every workload (connections, pools, JIT-free
	// but cache-cold paths), and size each workload so that bare takes
	// about one segment.
	ops := make([]int, len(workloads))
	for wi, w := range workloads {
		for i := range clients {
			if _, err := measure(rts[i], url, w, max(64, 4*w.conc)); err != nil {
				return fmt.Errorf("%s on %s: %w", clients[i].name, w.name, err)
			}
		}
		ops[wi] = calibrate(rts[0], url, w, segment)
		fmt.Fprintf(os.Stderr, "%s: %d requests per client per round\n", w.name, ops[wi])
	}

	// pairs[w][c] holds, for each round, client c's sample on workload w
	// and bare's sample taken right before or after it (the order
	// alternates), so that each ratio compares two neighbouring segments.
	pairs := make([][][]pair, len(workloads))
	for wi := range pairs {
		pairs[wi] = make([][]pair, len(clients))
	}
	order := rand.New(rand.NewPCG(1, 2))
	for r := range rounds {
		start := time.Now()
		for wi, w := range workloads {
			// The first segment after a change of workload costs more
			// (more connections or goroutines wake up, other caches are
			// cold): an unmeasured one of bare's takes it.
			if _, err := measure(rts[0], url, w, max(1, ops[wi]/4)); err != nil {
				return fmt.Errorf("bare on %s: %w", w.name, err)
			}
			// The clients run in a shuffled order each round (from a
			// fixed seed), so that none is always next to the same
			// neighbours; bare runs first in a pair in even rounds,
			// second in odd ones.
			for _, k := range order.Perm(len(clients) - 1) {
				i := 1 + k
				var p pair
				var errB, errX error
				if r%2 == 0 {
					p.bare, errB = measure(rts[0], url, w, ops[wi])
					p.x, errX = measure(rts[i], url, w, ops[wi])
				} else {
					p.x, errX = measure(rts[i], url, w, ops[wi])
					p.bare, errB = measure(rts[0], url, w, ops[wi])
				}
				if err := cmp.Or(errX, errB); err != nil {
					return fmt.Errorf("%s or bare on %s: %w", clients[i].name, w.name, err)
				}
				pairs[wi][i] = append(pairs[wi][i], p)
			}
		}
		fmt.Fprintf(os.Stderr, "round %d/%d: %v\n", r+1, rounds, time.Since(start).Round(time.Millisecond))
	}

	var burst, paced []int
	if dead {
		for _, c := range clients {
			b, err := deadRun(up, c, tp, true)
			if err != nil {
				return err
			}
			p, err := deadRun(up, c, tp, false)
			if err != nil {
				return err
			}
			burst, paced = append(burst, b), append(paced, p)
			fmt.Fprintf(os.Stderr, "dead upstream, %s: %d attempts in a burst, %d paced\n", c.name, b, p)
		}
	}

	printTable(os.Stdout, rounds, segment, pairs, burst, paced)
	return nil
}

// newBase returns a fresh base transport with room for every connection the
// workloads open.
func newBase() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 1024
	return tr
}

// calibrate returns how many requests of w bare sends in about d.
func calibrate(rt http.RoundTripper, url string, w job, d time.Duration) int {
	n := max(16, w.conc)
	for {
		s, err := measure(rt, url, w, n)
		if err != nil {
			return n
		}
		total := s.wall * time.Duration(n)
		if total >= d/4 {
			return max(w.conc*2, int(float64(n)*float64(d)/float64(total)))
		}
		n *= 2
	}
}

// measure sends n requests of w through rt, w.conc at a time, and returns
// the wall time, the process's CPU time (user + system), and the
// allocations, per request.
func measure(rt http.RoundTripper, url string, w job, n int) (sample, error) {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	c0 := cpuTime()
	t0 := time.Now()

	var failed atomic.Pointer[error]
	if w.conc == 1 {
		for range n {
			if err := workload.Send(rt, url, w.body); err != nil {
				failed.Store(&err)
				break
			}
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range w.conc {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if err := workload.Send(rt, url, w.body); err != nil {
						failed.Store(&err)
						return
					}
				}
			})
		}
		wg.Wait()
	}

	wall := time.Since(t0)
	c1 := cpuTime()
	runtime.ReadMemStats(&m1)
	if err := failed.Load(); err != nil {
		return sample{}, *err
	}
	return sample{
		wall:   wall / time.Duration(n),
		cpu:    (c1 - c0) / time.Duration(n),
		allocs: float64(m1.Mallocs-m0.Mallocs) / float64(n),
		bytes:  float64(m1.TotalAlloc-m0.TotalAlloc) / float64(n),
	}, nil
}

// cpuTime returns the CPU time, user and system, used by this process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// median returns the median of xs (which it sorts).
func median[T int | float64 | time.Duration](xs []T) T {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}
