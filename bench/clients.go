package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/llmtransport/llmtransport"
)

// The retry settings every client that retries gets: 3 retries (4 attempts)
// with exponential backoff from 1 ms to 8 ms, so that the dead-upstream runs
// take milliseconds. They do not matter on the success path.
const (
	maxRetries = 3
	waitMin    = time.Millisecond
	waitMax    = 8 * time.Millisecond
)

// client is one contender: a RoundTripper built on a base transport.
type client struct {
	name string
	wrap func(base http.RoundTripper, tp *sdktrace.TracerProvider) http.RoundTripper
}

// clients are the contenders, bare first: every ratio is to bare.
var clients = []client{
	{"bare", func(base http.RoundTripper, _ *sdktrace.TracerProvider) http.RoundTripper {
		return base
	}},
	{"pass-through", func(base http.RoundTripper, _ *sdktrace.TracerProvider) http.RoundTripper {
		// A wrapper that does nothing: the noise floor of every ratio.
		return passThrough{base}
	}},
	{"llmtransport", func(base http.RoundTripper, _ *sdktrace.TracerProvider) http.RoundTripper {
		// Tracing off: the global provider, a no-op unless set.
		return llmtransport.New(base, llmtransport.WithBackoff(waitMin, waitMax))
	}},
	{"llmtransport +tracing", func(base http.RoundTripper, tp *sdktrace.TracerProvider) http.RoundTripper {
		return llmtransport.New(base, llmtransport.WithBackoff(waitMin, waitMax), llmtransport.WithTracerProvider(tp))
	}},
	{"otelhttp", func(base http.RoundTripper, tp *sdktrace.TracerProvider) http.RoundTripper {
		return otelhttp.NewTransport(base, otelhttp.WithTracerProvider(tp))
	}},
	{"go-retryablehttp", func(base http.RoundTripper, _ *sdktrace.TracerProvider) http.RoundTripper {
		return retryable(base)
	}},
	{"failsafe-go", func(base http.RoundTripper, _ *sdktrace.TracerProvider) http.RoundTripper {
		return failsafeRetry(base)
	}},
	{"hand-built", func(base http.RoundTripper, tp *sdktrace.TracerProvider) http.RoundTripper {
		// What a user would assemble for the same features: spans
		// (otelhttp), a breaker per model found by decoding the body
		// (gobreaker), retries (go-retryablehttp).
		return otelhttp.NewTransport(&modelBreakers{next: retryable(base)}, otelhttp.WithTracerProvider(tp))
	}},
}

// retryable returns go-retryablehttp's RoundTripper over base, quiet, with
// the common retry settings.
func retryable(base http.RoundTripper) http.RoundTripper {
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{Transport: base}
	c.Logger = nil
	c.RetryMax = maxRetries
	c.RetryWaitMin = waitMin
	c.RetryWaitMax = waitMax
	return &retryablehttp.RoundTripper{Client: c}
}

// failsafeRetry returns failsafe-go's RoundTripper over base with its HTTP
// retry policy, the common retry settings, the last failure handed back, and
// the retried responses closed (failsafe-go leaves them open).
func failsafeRetry(base http.RoundTripper) http.RoundTripper {
	rp := failsafehttp.NewRetryPolicyBuilder().
		WithMaxRetries(maxRetries).
		WithBackoff(waitMin, waitMax).
		ReturnLastFailure().
		OnRetryScheduled(func(e failsafe.ExecutionScheduledEvent[*http.Response]) {
			if r := e.LastResult(); r != nil {
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
		}).
		Build()
	return failsafehttp.NewRoundTripper(base, rp)
}

// errUpstream marks a response that counts as a breaker failure.
var errUpstream = errors.New("upstream failure")

// modelBreakers keeps a gobreaker circuit breaker (default settings: open
// after more than 5 consecutive failures, for 60 s) per model, the model
// read by decoding the request's JSON body.
type modelBreakers struct {
	next http.RoundTripper

	mu       sync.Mutex
	breakers map[string]*gobreaker.CircuitBreaker[*http.Response]
}

func (m *modelBreakers) RoundTrip(req *http.Request) (*http.Response, error) {
	model, req, err := decodeModel(req)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.breakers == nil {
		m.breakers = make(map[string]*gobreaker.CircuitBreaker[*http.Response])
	}
	cb, ok := m.breakers[model]
	if !ok {
		cb = gobreaker.NewCircuitBreaker[*http.Response](gobreaker.Settings{Name: model})
		m.breakers[model] = cb
	}
	m.mu.Unlock()
	resp, err := cb.Execute(func() (*http.Response, error) {
		resp, err := m.next.RoundTrip(req)
		if err == nil && (resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests) {
			return resp, errUpstream
		}
		return resp, err
	})
	if errors.Is(err, errUpstream) {
		return resp, nil
	}
	return resp, err
}

// decodeModel reads req's body (through GetBody when it has one) and
// decodes its JSON to find "model". It returns a request whose body is
// still unread.
func decodeModel(req *http.Request) (string, *http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return "", req, nil
	}
	var b []byte
	var err error
	if req.GetBody != nil {
		var rc io.ReadCloser
		if rc, err = req.GetBody(); err == nil {
			b, err = io.ReadAll(rc)
			rc.Close()
		}
	} else {
		b, err = io.ReadAll(req.Body)
		req.Body.Close()
		req = req.Clone(req.Context())
		body := b
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	if err != nil {
		return "", req, err
	}
	var v struct {
		Model string `json:"model"`
	}
	json.Unmarshal(b, &v)
	return v.Model, req, nil
}

// discardExporter is a span exporter that drops every span.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// newProvider returns a real SDK tracer provider that samples every span and
// exports them through a batch processor to nowhere.
func newProvider() *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(discardExporter{}),
	)
}

// experiments are contenders left out of the table unless named with
// -clients: probes of the measurement itself.
var experiments = []client{
	{"llmtransport-nobreaker", func(base http.RoundTripper, _ *sdktrace.TracerProvider) http.RoundTripper {
		return llmtransport.New(base, llmtransport.WithBackoff(waitMin, waitMax), llmtransport.WithoutCircuitBreaker())
	}},
	{"llmtransport-noretry", func(base http.RoundTripper, _ *sdktrace.TracerProvider) http.RoundTripper {
		return llmtransport.New(base, llmtransport.WithMaxRetries(0))
	}},
	{"llmtransport +pacing", func(base http.RoundTripper, _ *sdktrace.TracerProvider) http.RoundTripper {
		// Pacing on: it learns from the rate-limit headers of every
		// answer, far from the limit, so it never waits.
		return llmtransport.New(base, llmtransport.WithBackoff(waitMin, waitMax), llmtransport.WithPacing())
	}},
	{"llmtransport +fleet", func(base http.RoundTripper, _ *sdktrace.TracerProvider) http.RoundTripper {
		// Shared state through a real Redis (see fleet.go): no hold is
		// live, so no request asks it anything.
		return llmtransport.New(base, llmtransport.WithBackoff(waitMin, waitMax), llmtransport.WithSharedState(sharedState()))
	}},
	{"spin-300ns", func(base http.RoundTripper, _ *sdktrace.TracerProvider) http.RoundTripper {
		return spinRT{next: base, d: 300 * time.Nanosecond}
	}},
	{"spin-1us", func(base http.RoundTripper, _ *sdktrace.TracerProvider) http.RoundTripper {
		return spinRT{next: base, d: time.Microsecond}
	}},
	{"spin-2us", func(base http.RoundTripper, _ *sdktrace.TracerProvider) http.RoundTripper {
		return spinRT{next: base, d: 2 * time.Microsecond}
	}},
	{"spin-3us", func(base http.RoundTripper, _ *sdktrace.TracerProvider) http.RoundTripper {
		return spinRT{next: base, d: 3 * time.Microsecond}
	}},
}

// passThrough is a RoundTripper that does nothing but call the next one:
// the cost of being a wrapper at all, and the noise floor of a ratio.
type passThrough struct{ next http.RoundTripper }

func (p passThrough) RoundTrip(req *http.Request) (*http.Response, error) {
	return p.next.RoundTrip(req)
}

// spinRT burns about d of CPU before each request, without allocating or
// touching the scheduler: what a fixed per-request cost shows as.
type spinRT struct {
	next http.RoundTripper
	d    time.Duration
}

func (s spinRT) RoundTrip(req *http.Request) (*http.Response, error) {
	for t0 := time.Now(); time.Since(t0) < s.d; {
	}
	return s.next.RoundTrip(req)
}

func experimentNames() string {
	var names []string
	for _, c := range experiments {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

// selectClients keeps bare and the contenders named in list (all of the
// table's when list is empty), in the order named.
func selectClients(list string) error {
	if list == "" {
		return nil
	}
	all := append(slices.Clone(clients[1:]), experiments...)
	kept := clients[:1:1]
	for _, name := range strings.Split(list, ",") {
		i := slices.IndexFunc(all, func(c client) bool { return c.name == strings.TrimSpace(name) })
		if i < 0 {
			return fmt.Errorf("no contender %q", name)
		}
		kept = append(kept, all[i])
	}
	clients = kept
	return nil
}
