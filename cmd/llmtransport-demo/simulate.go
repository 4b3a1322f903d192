package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// results are the two clients after a run.
type results struct {
	with, without *client
	budgetRatio   float64 // the transport's retry budget ratio
}

// simulate runs the demo: two gateways, the same load through both clients
// at once, progress lines, then the summary.
func simulate(ctx context.Context, cfg config, w io.Writer) (*results, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tr, err := setupTracing(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	gwWith, gwWithout := newGateway(cfg, start), newGateway(cfg, start)
	defer gwWith.Close()
	defer gwWithout.Close()

	res := &results{
		with:        withTransport(gwWith, tr, cfg),
		without:     withoutTransport(gwWithout),
		budgetRatio: cfg.budgetRatio,
	}
	fmt.Fprintf(w, "llmtransport demo: %v of load, %d callers per client, each starting a call every %v, fault rate %.2f, seed %d, retry budget %.2f\n",
		cfg.duration, cfg.concurrency, pace, cfg.faultRate, cfg.seed, cfg.budgetRatio)
	fmt.Fprintf(w, "  %-18s healthy\n", modelHealthy)
	fmt.Fprintf(w, "  %-18s flaky: %.0f%% new-api 5xx, Anthropic 529, nginx 502, resets, error-first streams, slow 504s\n", modelFlaky, 100*cfg.faultRate)
	fmt.Fprintf(w, "  %-18s rate-limited: %.0f%% 429s with retry-after-ms, reset-tokens, Gemini retryDelay, message and Retry-After hints\n", modelRateLimited, 100*min(1, 1.5*cfg.faultRate))
	fmt.Fprintf(w, "  %-18s down (503 get_channel_failed) for the first %v, then healthy\n", modelDead, cfg.duration/2)
	fmt.Fprintf(w, "The transport's fallback chains: %s and %s → %s.\n", modelDead, modelFlaky, modelHealthy)
	fmt.Fprintf(w, "Two identical gateways: %s serves %q, %s serves %q.\n\n", gwWith.URL, res.with.name, gwWithout.URL, res.without.name)

	load, stop := context.WithTimeout(ctx, cfg.duration)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { res.with.drive(load, ctx, cfg) })
	wg.Go(func() { res.without.drive(load, ctx, cfg) })
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	progress(w, cfg, start, done, res)

	res.with.collect()
	res.without.collect()
	report(w, res)
	tr.printTree(w)
	if err := tr.shutdown(context.WithoutCancel(ctx)); err != nil {
		fmt.Fprintf(w, "warning: flushing the traces: %v\n", err)
	}
	return res, nil
}

// progress prints a line per interval until done is closed.
func progress(w io.Writer, cfg config, start time.Time, done <-chan struct{}, res *results) {
	interval := cfg.progress
	if interval <= 0 {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	line := func(c *client) string {
		n, ok := c.calls.Load(), c.ok.Load()
		rate := 0.0
		if n > 0 {
			rate = 100 * float64(ok) / float64(n)
		}
		return fmt.Sprintf("%s: %4d calls, %5.1f%% ok", c.name, n, rate)
	}
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			el := time.Since(start).Round(time.Second)
			note := ""
			if el > cfg.duration {
				note = " (finishing calls in flight)"
			}
			fmt.Fprintf(w, "[%3v] %s | %s%s\n", el, line(res.with), line(res.without), note)
		}
	}
}
