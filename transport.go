// Package llmtransport is an [net/http.RoundTripper] middleware for clients of
// LLM APIs (OpenAI-compatible gateways such as new-api, one-api, OpenRouter
// and LiteLLM, and the OpenAI, Azure, Anthropic and Gemini APIs themselves).
//
// A [Transport] classifies every response, by HTTP status and by the error
// code in the body, whatever its shape ([Classify]); retries what is worth
// retrying with jittered exponential backoff that honours the server's wait
// hints, within a retry budget and the caller's deadline; keeps one circuit
// breaker per (host, model), read from the request, so that one failing
// model fails fast while the others keep working; and records an
// OpenTelemetry span per call and per attempt.
//
// The layers run in this order for each call:
//
//	logical span → retry loop (budget, cooldown, backoff)
//	  → per-model circuit → attempt span → base transport → classify
//
// Successful bodies, streamed or not, flow through unbuffered: of a stream
// only its first event with data is peeked, of a JSON body only its first
// key, and those bytes are re-delivered. Error bodies (and a 2xx JSON body
// whose first key is "error") are read (at most 64 KiB) to classify them
// and handed back intact.
package llmtransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/llmtransport/llmtransport/internal/circuit"
)

// Transport is the LLM-aware [net/http.RoundTripper] built by [New].
//
// A request is retried when its response is classified retryable (see
// [Classification.Retryable]) or its transport error is safe to repeat
// (connection refused or reset, EOF before a response, a header timeout),
// at most [WithMaxRetries] times and within the retry budget. The wait
// before a retry is the server's hint (Retry-After, retry-after-ms, reset
// headers, hints in the body) lengthened by up to 20 %, or else full-jitter
// exponential backoff; neither ever waits longer than [WithMaxRetryWait].
// A hint above [WithMaxRetryWait], or a wait that would
// end after the request's deadline, is not waited for: the response goes
// back at once. After the last attempt the caller gets the real last
// response, body intact, with the header X-Should-Retry: false so that an
// SDK above does not retry it again.
//
// A Transport is safe for concurrent use by multiple goroutines and should
// be reused: its circuits, cooldowns and retry budgets are shared by its
// requests.
type Transport struct {
	base      http.RoundTripper
	cfg       config
	classify  func(*http.Response, []byte) Classification
	budgets   *budgets
	circuits  *circuit.Registry // nil: the breaker is off
	cooldowns *cooldowns
	tracer    *tracer

	stopWatch func()        // ends the fleet subscription (WithSharedState); nil: none
	closeOnce sync.Once     // Close
	pacer     *pacer        // nil: pacing is off (pacing.go)
	limiter   SharedLimiter // nil: none (pacing.go)
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns a Transport that sends requests through base, or through
// [net/http.DefaultTransport] when base is nil.
func New(base http.RoundTripper, opts ...Option) *Transport {
	if base == nil {
		base = http.DefaultTransport
	}
	cfg := newConfig(opts)
	t := &Transport{
		base:      base,
		cfg:       cfg,
		classify:  cfg.classifier,
		budgets:   newBudgets(cfg.budgetRatio, cfg.budgetBurst),
		cooldowns: newCooldowns(cfg.noCooldowns),
		tracer:    newTracer(cfg.tracing),
		circuits:  newCircuits(cfg.breaker),
		pacer:     newPacer(cfg.pacing),
	}
	if l, ok := cfg.shared.(SharedLimiter); ok && t.pacer != nil {
		t.limiter = l
	}
	if t.classify == nil {
		t.classify = Classify
	}
	t.startFleet() // fleet.go
	return t
}

// CloseIdleConnections closes the idle connections of the base transport,
// if it has such a method.
func (t *Transport) CloseIdleConnections() {
	type closeIdler interface{ CloseIdleConnections() }
	if ci, ok := t.base.(closeIdler); ok {
		ci.CloseIdleConnections()
	}
}

// Middleware runs req through the transport's retry, circuit and tracing
// layers, sending each attempt through next instead of the base transport.
// Its signature is that of openai-go's and anthropic-sdk-go's
// option.Middleware, so it plugs in as option.WithMiddleware(t.Middleware).
func (t *Transport) Middleware(req *http.Request, next func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	return t.roundTrip(req, roundTripFunc(next))
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// WrapClient returns a copy of c (or of [net/http.DefaultClient] when c is
// nil) whose Transport wraps c's with a Transport made by New. c itself is
// not modified.
func WrapClient(c *http.Client, opts ...Option) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	cc := *c
	cc.Transport = New(c.Transport, opts...)
	return &cc
}

// RoundTrip implements [net/http.RoundTripper].
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.roundTrip(req, t.base)
}

// call is the state of one logical call across its attempts.
type call struct {
	t     *Transport
	base  http.RoundTripper
	req   *http.Request // the caller's, never modified
	ctx   context.Context
	key   circuitKey
	trace callTrace
	circ  circuit.Ticket // the call's standing with its circuit
	out   outcome        // what the last attempt made says about the model
	hint  time.Duration  // the server's wait hint on the last attempt made
	sec   secrets        // the request's credentials, to mask what leaves the transport

	buffered   []byte       // the body, when the transport buffered it
	prefix     []byte       // the start of a body too large to buffer, sent once before the rest
	replayable bool         // later attempts can get a fresh body
	body       *watchedBody // the current attempt's body, when watched (see request)
	stream     *streamBody  // the event stream handed back, watched as it passes
	sent       bool         // req.Body has been handed to the base transport
	retries    int          // retry budget tokens taken
	fb         *fallbackRun // the fallback chain being run (fallback.go), or nil
	paced      pacedCall    // pacing.go

	ro  *requestOptions // the request's overrides (outcome.go), or nil
	rec outcomeRec      // what the call's Outcome needs (outcome.go)
}

func (t *Transport) roundTrip(req *http.Request, base http.RoundTripper) (*http.Response, error) {
	if req == nil || req.URL == nil {
		if req != nil && req.Body != nil {
			req.Body.Close()
		}
		return nil, errors.New("llmtransport: nil request or URL")
	}
	c := call{t: t, base: base, req: req, ctx: req.Context(), replayable: true, out: outcomeExcluded, sec: secrets{req: req}}
	c.ro = requestOptionsOf(c.ctx)
	if err := c.prepareBody(); err != nil {
		return nil, c.sec.maskErr(err)
	}
	model, shared, err := c.findModel()
	if shared != nil {
		model, err = c.takeShared(shared)
	}
	if err != nil {
		if !c.sent && req.Body != nil {
			req.Body.Close()
		}
		return nil, c.sec.maskErr(err)
	}
	c.key = circuitKey{host: req.URL.Host, model: model}
	c.pacePrepare()
	defer c.abandon() // a panic must not leave the call in flight, nor a probe out
	var start time.Time
	if timing(c.ctx, t.tracer.m.opDuration) {
		start = time.Now()
	}
	c.ctx, c.trace = t.tracer.startCall(c.ctx, req, c.key.model)
	resp, cl, attempts, err := c.runChain() // c.run() without fallbacks
	err = c.sec.maskErr(err)
	if err != nil && c.ctx.Err() != nil {
		// The caller cancelled, or its deadline passed: whatever the
		// attempts said, the call's ending says nothing about the model.
		c.out = outcomeExcluded
	}
	c.settle()
	if c.stream != nil {
		c.stream.circ = c.circ // for a late outcome (streamwatch.go)
	}
	t.budgets.of(c.key.host).settle(err == nil && cl.Class == ClassSuccess, c.retries)
	c.trace.end(&cl, attempts, err, resp, &c.sec)
	if !start.IsZero() {
		c.recordOperation(start, req, resp, &cl, attempts, err) // outcome.go
	}
	c.finish(resp, &cl, attempts, err) // outcome.go
	if !c.sent && req.Body != nil {
		req.Body.Close()
	}
	return resp, err
}

// prepareBody makes sure later attempts can replay the body: through
// GetBody, or by buffering a body without GetBody once, up to the limit.
func (c *call) prepareBody() error {
	req := c.req
	if req.Body == nil || req.Body == http.NoBody || req.GetBody != nil {
		return nil
	}
	limit := c.t.cfg.maxBufferedBody
	if c.maxRetries() == 0 && c.t.cfg.fallback.chains == nil || limit == 0 || req.ContentLength > limit {
		c.replayable = false
		return nil
	}
	b := make([]byte, 0, min(max(req.ContentLength, 512), limit)+1)
	b, err := readAllInto(b, io.LimitReader(req.Body, limit+1))
	if err != nil {
		req.Body.Close()
		c.sent = true
		return fmt.Errorf("llmtransport: reading request body: %w", err)
	}
	if int64(len(b)) > limit {
		// Too large to keep: send what was read and the rest, once.
		c.replayable = false
		c.buffered = nil
		c.prefix = b
		return nil
	}
	req.Body.Close()
	c.sent = true // the caller's body is closed; attempts read c.buffered
	c.buffered = b
	return nil
}

// takeShared reads the body from rc, which GetBody returned and which is
// req.Body itself (see [reqmodel.Find]): the bytes read are the ones sent, from
// the buffer when the body is within the buffering limit, else first and
// followed by the rest of req.Body, once. Retries replay the buffer, or go
// through GetBody. It returns the model found in what was read.
func (c *call) takeShared(rc io.ReadCloser) (string, error) {
	req := c.req
	limit := c.t.cfg.maxBufferedBody
	b := make([]byte, 0, min(max(req.ContentLength, 512), limit)+1)
	b, err := readAllInto(b, io.LimitReader(rc, limit+1))
	if err != nil {
		req.Body.Close()
		c.sent = true
		return "", fmt.Errorf("llmtransport: reading request body: %w", err)
	}
	if int64(len(b)) > limit {
		// Too large to keep: sent once, what was read and then the rest,
		// and not retried, as a body without GetBody (a GetBody that hands
		// back the same reader cannot be trusted to rewind it).
		c.prefix = b
		c.replayable = false
		return c.inBody(b, false), nil
	}
	req.Body.Close()
	c.sent = true
	c.buffered = b
	return c.inBody(b, true), nil
}

// readAllInto is io.ReadAll into b's spare capacity, which the caller sizes
// from the Content-Length so that a body of known length is read without
// regrowing.
func readAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
