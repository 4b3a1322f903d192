// Command llmtransport-demo shows llmtransport at work, with no set-up.
//
// It starts two identical fake gateways on 127.0.0.1 (package
// llmtransporttest) serving five models: one healthy, one flaky (5xx, 529,
// HTML 502, connection resets, error-first streams), one rate-limited
// (429s with every kind of wait hint), one dead for the first half of the
// run, and one the account has no quota for (one call in 20). It then
// drives the same concurrent chat load through a small chat client twice
// at once: with llmtransport under it (the client's own retries off), and
// alone, retrying as openai-go v3.96.0 does by default (sdk.go). The demo
// does not use openai-go itself, whose compile alone takes ~45 s and
// 2.6 GB on a fresh machine; llmtransport with the real openai-go is
// tested in integration/. The transport has fallback
// chains: a call for the down or the flaky model that its model cannot
// answer (circuit open, retries spent) is answered by the healthy model. It
// prints progress while it runs, then the headline (answered, upstream
// requests per call, p50 and p95, requests wasted on retries of answers no
// retry can change, and the trade-off), the details per model and a
// legend.
//
// If OTEL_EXPORTER_OTLP_ENDPOINT is set (for instance to a local Jaeger,
// http://localhost:4318) and the demo is built with -tags otlp, the
// transport's spans are exported there over OTLP/HTTP, under service
// llmtransport-demo or OTEL_SERVICE_NAME. Otherwise the spans are kept in
// memory and the span tree of one retried call is printed. (The default
// build leaves the exporter out, which brings gRPC and protobuf, and the
// OpenTelemetry SDK too: it records the spans with a small in-memory
// tracer provider of its own, recorder.go, so that the first build is
// faster.)
//
// Usage:
//
//	cd cmd/llmtransport-demo && go run . [-duration 8s] [-concurrency 8] [-fault-rate 0.2] [-seed 1] [-retry-budget 0.2] [-breaker-open 1s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/llmtransport/llmtransport"
)

// config is what the flags set.
type config struct {
	duration    time.Duration // how long load is sent
	concurrency int           // callers per client, each starting a call per pace
	faultRate   float64       // fault probability of the flaky model (the rate-limited one gets 1.5×)
	seed        uint64        // seed of the fault sequences
	budgetRatio float64       // the transport's retry budget ratio (0 disables it)
	breakerOpen time.Duration // how long an open circuit stays open
	progress    time.Duration // interval of the progress lines
}

func main() {
	var cfg config
	flag.DurationVar(&cfg.duration, "duration", 8*time.Second, "how long to send load")
	flag.IntVar(&cfg.concurrency, "concurrency", 8, "callers per client, each starting a call every 100ms")
	flag.Float64Var(&cfg.budgetRatio, "retry-budget", llmtransport.DefaultBudgetRatio, "the transport's retry budget: tokens a call that needed no retry adds to the bucket (0 disables the budget)")
	flag.DurationVar(&cfg.breakerOpen, "breaker-open", time.Second, "how long an open circuit stays open before a probe (the library's default is 10s; shorter here so the demo shows recovery)")
	flag.Float64Var(&cfg.faultRate, "fault-rate", 0.2, "fault probability of the flaky model, 0 to 1 (the rate-limited model gets 1.5×)")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the fault sequences")
	flag.Parse()
	cfg.progress = time.Second

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "llmtransport-demo:", err)
		os.Exit(1)
	}
}

// run runs the demo with cfg, writing everything to w.
func run(ctx context.Context, cfg config, w io.Writer) error {
	_, err := simulate(ctx, cfg, w)
	return err
}

func (cfg config) validate() error {
	switch {
	case cfg.duration <= 0:
		return errors.New("-duration must be positive")
	case cfg.concurrency <= 0:
		return errors.New("-concurrency must be positive")
	case cfg.breakerOpen < 0:
		return errors.New("-breaker-open must not be negative")
	case cfg.budgetRatio < 0:
		return errors.New("-retry-budget must not be negative")
	case cfg.faultRate < 0 || cfg.faultRate > 1:
		return errors.New("-fault-rate must be between 0 and 1")
	}
	return nil
}
