package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestRun runs the demo briefly, as CI's proof that it works.
func TestRun(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	cfg := config{duration: time.Second, concurrency: 2, faultRate: 0.2, seed: 1, budgetRatio: 0.1, progress: 250 * time.Millisecond}
	var out bytes.Buffer
	res, err := simulate(t.Context(), cfg, &out)
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, out.String())
	}
	for _, c := range []*client{res.with, res.without} {
		h := c.models[modelHealthy]
		if h.calls == 0 || h.ok != h.calls {
			t.Errorf("%s: healthy model got %d of %d calls ok, want all of at least one", c.name, h.ok, h.calls)
		}
		tot := c.totals()
		if tot.upstream < tot.calls-tot.refused {
			t.Errorf("%s: the gateway saw %d requests for %d calls", c.name, tot.upstream, tot.calls)
		}
	}
	// Both clients start calls on their own tickers: one call either way.
	a := res.with.totals().calls + int(res.with.skipped.Load())
	b := res.without.totals().calls + int(res.without.skipped.Load())
	if a < b-1 || a > b+1 {
		t.Errorf("the clients got different loads: %d and %d calls", a, b)
	}
	for _, want := range []string{"llmtransport demo:", "[", "== openai-go + llmtransport", "== openai-go alone", "== overall ==", modelDead} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := config{duration: time.Second, concurrency: 1, faultRate: 0.5, budgetRatio: 0.1}
	if err := good.validate(); err != nil {
		t.Errorf("valid config: got %v", err)
	}
	for _, bad := range []config{
		{duration: 0, concurrency: 1},
		{duration: time.Second, concurrency: 0},
		{duration: time.Second, concurrency: 1, faultRate: 1.5},
		{duration: time.Second, concurrency: 1, budgetRatio: -1},
	} {
		if err := bad.validate(); err == nil {
			t.Errorf("config %+v: got no error", bad)
		}
	}
}
