package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// callTimeout bounds each chat call, so that the demo ends soon after its
// duration.
const callTimeout = 10 * time.Second

// client is one way of calling the gateway, with its statistics.
type client struct {
	name      string
	api       *sdk
	transport bool // calls go through llmtransport
	gw        *llmtransporttest.Server

	calls, ok atomic.Int64 // for the progress lines
	nextID    atomic.Int64 // numbers the calls, for the X-Demo-Call header
	skipped   atomic.Int64 // calls not started: too many in flight

	mu     sync.Mutex
	models map[string]*modelStats
}

// modelStats are the statistics of one model through one client.
type modelStats struct {
	calls, ok       int
	silent          int      // 200s whose body was an error: the SDK saw success
	refused         int      // refused by an open circuit, without a request
	circuit         []string // the circuit's states, in order of change
	retries         int      // retries the transport made
	hinted          int      // retries that waited for a server hint
	hintedWait      time.Duration
	hintSources     map[string]int
	classes         map[string]int // classes of retried attempts and of final failures
	fallbacks       int            // calls sent on to a fallback model
	fallbackReasons map[string]int
	latencies       []time.Duration
	upstream        int            // requests the gateway received
	wasted          int            // of them, sent after the same call got a non-retryable answer
	gatewayFault    map[string]int // what the gateway answered them with
}

// newClient returns a client of gw whose requests go through rt, retried as
// openai-go does up to maxRetries times.
func newClient(name string, gw *llmtransporttest.Server, transport bool, rt http.RoundTripper, maxRetries int) *client {
	c := &client{name: name, gw: gw, transport: transport, models: map[string]*modelStats{}}
	for _, m := range models {
		c.models[m] = &modelStats{classes: map[string]int{}, hintSources: map[string]int{}, gatewayFault: map[string]int{}, fallbackReasons: map[string]int{}}
	}
	c.api = &sdk{baseURL: gw.URL + "/v1", httpClient: &http.Client{Transport: rt}, maxRetries: maxRetries}
	return c
}

// withoutTransport returns the client that retries as openai-go does by
// default (2 retries), over http.DefaultTransport.
func withoutTransport(gw *llmtransporttest.Server) *client {
	return newClient("SDK alone", gw, false, http.DefaultTransport, sdkMaxRetries)
}

// withTransport returns the client that calls through llmtransport, with
// the SDK's own retries off, as the README's openai-go recipe says
// (option.WithMaxRetries(0)).
func withTransport(gw *llmtransporttest.Server, tr *tracing, cfg config) *client {
	var c *client
	t := llmtransport.New(nil,
		llmtransport.WithRetryBudget(cfg.budgetRatio, llmtransport.DefaultBudgetBurst),
		llmtransport.WithTracerProvider(tr.provider()),
		llmtransport.WithOnRetry(func(ev llmtransport.RetryEvent) { c.retried(ev) }),
		llmtransport.WithBreakerOpenTimeout(cfg.breakerOpen),
		llmtransport.WithOnCircuitStateChange(func(ch llmtransport.CircuitStateChange) { c.circuitChanged(ch) }),
		// A call for a model that cannot answer (its circuit open, its
		// retries spent on 5xx, 529 or resets) is answered by the
		// healthy model instead of failing.
		llmtransport.WithFallbacks(fallbacks),
		llmtransport.WithOnFallback(func(ev llmtransport.FallbackEvent) { c.fellBack(ev) }),
	)
	c = newClient("SDK + llmtransport", gw, true, t, 0)
	return c
}

// fallbacks are the chains of the llmtransport client: the down and the
// flaky model fall back to the healthy one.
var fallbacks = map[string][]string{
	modelDead:  {modelHealthy},
	modelFlaky: {modelHealthy},
}

// fellBack records a step down a fallback chain.
func (c *client) fellBack(ev llmtransport.FallbackEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.models[ev.From]; ok {
		m.fallbacks++
		m.fallbackReasons[ev.Reason]++
	}
}

// circuitChanged records a state change of a model's circuit.
func (c *client) circuitChanged(ch llmtransport.CircuitStateChange) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.models[ch.Model]; ok {
		if len(m.circuit) == 0 {
			m.circuit = append(m.circuit, ch.From.String())
		}
		m.circuit = append(m.circuit, ch.To.String())
	}
}

// retried records a retry of the transport.
func (c *client) retried(ev llmtransport.RetryEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.models[ev.Model]
	if !ok {
		return
	}
	m.retries++
	m.classes[ev.Classification.Class.String()]++
	if ev.WaitSource != "backoff" {
		m.hinted++
		m.hintedWait += ev.Wait
		m.hintSources[ev.WaitSource]++
	}
}

// pace is how often each of the cfg.concurrency callers starts a call.
// Calls start on schedule whether or not earlier ones have finished (open
// loop), so both clients get the same calls, in the same order, at the same
// times, whatever their latency.
const pace = 100 * time.Millisecond

// maxInFlight bounds the calls in flight per caller; a call that would
// exceed it is skipped and counted.
const maxInFlight = 16

// drive starts calls on schedule until ctx is done, then waits for the calls
// in flight (each ends within callTimeout of its start, or when parent is
// done).
func (c *client) drive(ctx, parent context.Context, cfg config) {
	tick := time.NewTicker(pace / time.Duration(cfg.concurrency))
	defer tick.Stop()
	sem := make(chan struct{}, maxInFlight*cfg.concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		model, stream := loadModels[k%len(loadModels)], k%3 == 0
		if k%quotaEvery == quotaEvery-1 {
			model = modelNoQuota
		}
		select {
		case sem <- struct{}{}:
		default:
			c.skipped.Add(1)
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			c.call(parent, model, stream)
		})
	}
}

// call makes one chat call and records its outcome.
func (c *client) call(parent context.Context, model string, stream bool) {
	ctx, cancel := context.WithTimeout(parent, callTimeout)
	defer cancel()
	if c.transport {
		// Names the model for the transport's circuit, cooldown, spans and
		// retry events without it reading the body.
		ctx = llmtransport.ContextWithModel(ctx, model)
	}
	start := time.Now()
	content, err := c.api.chat(ctx, model, stream, fmt.Sprintf("%s-%d", c.name, c.nextID.Add(1)))
	elapsed := time.Since(start)

	c.calls.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.models[model]
	m.calls++
	m.latencies = append(m.latencies, elapsed)
	switch {
	case err == nil && content == llmtransporttest.DefaultReply:
		m.ok++
		c.ok.Add(1)
	case err == nil:
		m.silent++
		m.classes["error_in_200"]++
	default:
		if errors.Is(err, llmtransport.ErrCircuitOpen) {
			m.refused++
		}
		m.classes[failureClass(err)]++
	}
}

// failureClass names what a failed call ended with.
func failureClass(err error) string {
	var (
		ae *apiError
		se *streamError
	)
	switch {
	case errors.Is(err, llmtransport.ErrCircuitOpen):
		return "circuit_open"
	case errors.As(err, &ae):
		return llmtransport.Classify(ae.Response, ae.Body).Class.String()
	case errors.As(err, &se):
		return "stream_error"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	}
	return "transport_error"
}

// collect adds what the gateway saw to the statistics.
func (c *client) collect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	doomed := map[string]bool{} // calls that got a non-retryable answer
	for _, r := range c.gw.Log() {
		m, ok := c.models[r.Model]
		if !ok {
			continue
		}
		m.upstream++
		m.gatewayFault[r.Fault]++
		call := r.Header.Get(callHeader)
		if doomed[call] {
			m.wasted++
		}
		if nonRetryable[r.Fault] {
			doomed[call] = true
		}
	}
}

// totals sums the statistics over the models.
func (c *client) totals() (t modelStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.models {
		t.calls += m.calls
		t.ok += m.ok
		t.silent += m.silent
		t.refused += m.refused
		t.retries += m.retries
		t.hinted += m.hinted
		t.upstream += m.upstream
		t.wasted += m.wasted
		t.fallbacks += m.fallbacks
		t.latencies = append(t.latencies, m.latencies...)
	}
	return t
}

func (m *modelStats) rate() string {
	if m.calls == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(m.ok)/float64(m.calls))
}

// percentile returns the p-th percentile (0 to 1) of the latencies.
func (m *modelStats) percentile(p float64) time.Duration {
	if len(m.latencies) == 0 {
		return 0
	}
	l := slices.Clone(m.latencies)
	slices.Sort(l)
	return l[min(len(l)-1, int(p*float64(len(l))))]
}
