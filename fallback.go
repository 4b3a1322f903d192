package llmtransport

import (
	"context"
	"errors"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmtransport/llmtransport/internal/circuit"
	"github.com/llmtransport/llmtransport/internal/reqmodel"
)

// The response headers a [Transport] sets on a response that a fallback
// target answered ([WithFallbacks]). They are not set on a response the
// requested model gave, nor on one handed back after every target failed.
const (
	// HeaderModel names the model that answered.
	HeaderModel = "X-Llmtransport-Model"
	// HeaderFallbackFrom names the model the call asked for.
	HeaderFallbackFrom = "X-Llmtransport-Fallback-From"
	// HeaderFallbackReason says why the requested model did not answer:
	// the class of its last attempt ("overloaded", "rate_limited"…),
	// "circuit_open" when its circuit refused the call, or "cooldown"
	// when a rate limit's wait was still running for it.
	HeaderFallbackReason = "X-Llmtransport-Fallback-Reason"
)

// The fallback reasons that are not a [Class].
const (
	reasonCircuitOpen = "circuit_open"
	reasonCooldown    = "cooldown"
)

// DefaultFallbackRetries is how many times at most each fallback target is
// retried (see [WithFallbackRetries]).
const DefaultFallbackRetries = 1

// Fallback says which model answered a response, and why: see [FallbackOf].
type Fallback struct {
	// Model is the model that answered, From the one the call asked for.
	Model, From string
	// Reason is the fallback reason of [HeaderFallbackReason].
	Reason string
}

// FallbackOf reports whether resp was answered by a fallback target of
// [WithFallbacks] rather than by the model the request asked for, and if
// so which and why. It reads the headers the transport set.
func FallbackOf(resp *http.Response) (Fallback, bool) {
	if resp == nil || resp.Header == nil {
		return Fallback{}, false
	}
	f := Fallback{
		Model:  resp.Header.Get(HeaderModel),
		From:   resp.Header.Get(HeaderFallbackFrom),
		Reason: resp.Header.Get(HeaderFallbackReason),
	}
	return f, f.Model != ""
}

// FallbackEvent describes one step down a fallback chain. [WithOnFallback]
// receives it before the target's first attempt.
type FallbackEvent struct {
	// Host and From name the circuit the call leaves; ToHost and To the
	// target it tries next (ToHost differs from Host only for a target
	// with a route, see [WithFallbackRoute]).
	Host, From, ToHost, To string
	// Reason is why From did not answer: a class name, "circuit_open" or
	// "cooldown" (see [HeaderFallbackReason]).
	Reason string
	// Classification is that of From's last attempt (zero when none was
	// sent); Err its transport error or refusal, if any.
	Classification Classification
	Err            error
}

// fallbackConfig holds the fallback options.
type fallbackConfig struct {
	chains  map[string][]string
	on      uint32 // opt-in classes, a bit per Class
	retries int    // per target
	routes  map[string]fallbackRoute
	hook    func(FallbackEvent)
}

// fallbackRoute is a target of WithFallbackRoute.
type fallbackRoute struct {
	model    string
	redirect func(*http.Request)
}

// chain returns the fallback targets of model, or nil.
func (fc *fallbackConfig) chain(model string) []string {
	if fc.chains == nil {
		return nil
	}
	return fc.chains[model]
}

// reason returns why a call whose model ended with cl (and err) should
// fall back, or ok false when it should not: triggers go by class, never
// by status.
func (fc *fallbackConfig) reason(ctx context.Context, cl *Classification, err error) (string, bool) {
	if ctx.Err() != nil {
		return "", false // the caller's cancellation or deadline
	}
	if errors.Is(err, ErrCircuitOpen) {
		return reasonCircuitOpen, true
	}
	switch cl.Class {
	case ClassRateLimited, ClassOverloaded, ClassUpstreamTransient, ClassTimeout, ClassModelNotFound:
		return cl.Class.String(), true
	case ClassQuotaExhausted:
		// A quota that is the model's (a Google per-day or zero limit,
		// which counts against the model's circuit) is not the account's.
		if cl.BreakerFailure || fc.on&(1<<ClassQuotaExhausted) != 0 {
			return cl.Class.String(), true
		}
	case ClassSuccess, ClassInvalidRequest, ClassAuth, ClassPermission:
	default:
		if cl.Class <= ClassUnknown && fc.on&(1<<cl.Class) != 0 {
			return cl.Class.String(), true
		}
	}
	return "", false
}

// fallbackRun is the state of a call's fallback chain.
type fallbackRun struct {
	cfg     *fallbackConfig
	targets []string
	next    int  // index in targets of the next target
	onPrim  bool // the call is on its primary model
	used    int  // retry budget tokens the earlier targets of the chain took
	orig    []byte
	origOK  bool // orig holds the caller's body (nil for none)
}

// mayRetry reports whether the chain lets attempt n of the current target
// be retried (decide asks, after its own limits): a fallback target is
// retried at most cfg.retries times, the whole chain at most
// [WithMaxRetries] times, and a first-byte timeout goes to the next target
// at once.
func (c *call) mayRetry(n int, a *attemptResult) bool {
	fb := c.fb
	if fb.next < len(fb.targets) && a.cl.Class == ClassTimeout && a.cl.Message == errFirstByteTimeout.Error() {
		return false
	}
	if !fb.onPrim && n >= fb.cfg.retries {
		return false
	}
	return fb.used+c.retries < c.maxRetries()
}

// wantsKept reports whether the response of class cl, which run is about
// to hand back, may be followed by a fallback: run then reads what is left
// of its body (as it does before a retry), so that it can still be handed
// back after the targets were tried.
func (c *call) wantsKept(cl *Classification) bool {
	if c.fb == nil || c.fb.next >= len(c.fb.targets) {
		return false
	}
	_, ok := c.fb.cfg.reason(c.ctx, cl, nil)
	return ok
}

// runChain is run, then down the model's fallback chain when it has one
// and the model did not answer for a reason that triggers a fallback.
func (c *call) runChain() (*http.Response, Classification, int, error) {
	fc := &c.t.cfg.fallback
	targets := fc.chain(c.key.model)
	if len(targets) == 0 || c.prefix != nil || !c.replayable || c.ro != nil && c.ro.noFallbacks {
		return c.run()
	}
	fb := &fallbackRun{cfg: fc, targets: targets, onPrim: true}
	c.fb = fb
	defer func() { c.fb = nil }()

	primReq, primKey, primBuf := c.req, c.key, c.buffered
	var (
		resp     *http.Response
		cl       Classification
		err      error
		attempts int
		reason   string
		deferred bool // the primary was skipped for its cooldown
	)
	if d := c.t.cooldowns.remaining(c.key, c.req); d > 0 {
		deferred, reason = true, reasonCooldown
	} else {
		var ok bool
		resp, cl, attempts, err = c.run()
		stripFallbackHeaders(resp)
		if err == nil && cl.Class == ClassSuccess {
			return resp, cl, attempts, nil
		}
		if reason, ok = fc.reason(c.ctx, &cl, err); !ok {
			return resp, cl, attempts, err
		}
	}
	c.countLast(attempts, &cl)
	// held is what goes back should no target answer: the primary's last
	// response when it gave one, else the last target's.
	held, heldCl, heldOnPrim := resp, cl, resp != nil
	heldKey := primKey
	firstErr, firstReason := err, reason
	from, fromHost, lastCl, lastErr := primKey.model, primKey.host, cl, err

	for fb.next < len(targets) && c.ctx.Err() == nil {
		name := targets[fb.next]
		fb.next++
		r, body, key, ok := c.target(primReq, name)
		if !ok {
			continue
		}
		if c.t.cooldowns.remaining(key, r) > 0 {
			c.fallbackSkipped(key, reasonCooldown)
			continue
		}
		c.switchTo(r, body, key)
		if c.rec.path == nil {
			c.rec.path, c.rec.fbReason = append(c.rec.path, primKey.model), firstReason
		}
		c.rec.path = append(c.rec.path, key.model)
		fb.onPrim = false
		c.fallbackEvent(FallbackEvent{Host: fromHost, From: from, ToHost: key.host, To: key.model,
			Reason: reason, Classification: lastCl, Err: lastErr})
		tr, tcl, n, terr := c.run()
		stripFallbackHeaders(tr)
		attempts += n
		c.countLast(attempts, &tcl)
		if terr == nil && tcl.Class == ClassSuccess {
			dropHeld(held)
			tr.Header.Set(HeaderModel, key.model)
			tr.Header.Set(HeaderFallbackFrom, primKey.model)
			tr.Header.Set(HeaderFallbackReason, firstReason)
			return tr, tcl, attempts, nil
		}
		switch {
		case tr == nil:
		case heldOnPrim:
			tr.Body.Close()
		default:
			dropHeld(held)
			held, heldCl, heldKey = tr, tcl, key
		}
		lastCl, lastErr = tcl, terr
		var more bool
		if reason, more = fc.reason(c.ctx, &tcl, terr); !more {
			break
		}
		from, fromHost = key.model, key.host
	}
	if c.ctx.Err() != nil {
		dropHeld(held)
		if lastErr == nil || !errors.Is(lastErr, c.ctx.Err()) {
			lastErr = context.Cause(c.ctx)
		}
		return nil, lastCl, attempts, lastErr
	}
	if deferred {
		// No target answered: the primary, skipped for its cooldown, is
		// tried after all (run waits the cooldown out), and what it says
		// goes back; should it get no response at all, the last target's
		// response (held) goes back instead: a response came, so no error.
		c.switchTo(primReq, primBuf, primKey)
		if c.rec.path != nil {
			c.rec.path = append(c.rec.path, primKey.model)
		}
		fb.onPrim = true
		r, rcl, n, rerr := c.run()
		if r == nil && held != nil {
			return c.handBackHeld(held, &heldKey), heldCl, attempts + n, nil
		}
		dropHeld(held)
		stripFallbackHeaders(r)
		return r, rcl, attempts + n, rerr
	}
	if held != nil {
		return c.handBackHeld(held, &heldKey), heldCl, attempts, nil
	}
	if firstErr != nil {
		return nil, lastCl, attempts, firstErr
	}
	return nil, lastCl, attempts, lastErr
}

// dropHeld closes the body of a response that will not go back.
func dropHeld(resp *http.Response) {
	if resp != nil {
		resp.Body.Close()
	}
}

// target returns the request for the fallback target name: a copy of
// prim asking for the target's model where prim names its own (see
// [reqmodel.Rewrite]), redirected by the target's route if it has one,
// with its body and circuit. ok is false when the model cannot be
// rewritten, or the body not read again.
func (c *call) target(prim *http.Request, name string) (r *http.Request, body []byte, key circuitKey, ok bool) {
	fb := c.fb
	model := name
	route, routed := fb.cfg.routes[name]
	if routed {
		model = route.model
	}
	if !fb.origOK {
		b, err := c.originalBody()
		if err != nil {
			return nil, nil, key, false
		}
		fb.orig, fb.origOK = b, true
	}
	r, nb, where := reqmodel.Rewrite(prim, fb.orig, model)
	if where == reqmodel.Nowhere {
		return nil, nil, key, false
	}
	if nb == nil {
		nb = fb.orig // the path or query named the model
	}
	if routed && route.redirect != nil {
		r = r.Clone(r.Context())
		route.redirect(r)
		if r.URL == nil {
			return nil, nil, key, false
		}
	}
	return r, nb, circuitKey{host: r.URL.Host, model: model}, true
}

// originalBody returns the caller's whole body: the transport's buffer,
// or a copy read through GetBody (nil for no body).
func (c *call) originalBody() ([]byte, error) {
	if c.buffered != nil {
		return c.buffered, nil
	}
	req := c.req
	if req.Body == nil || req.Body == http.NoBody || req.GetBody == nil {
		return nil, nil
	}
	rc, err := req.GetBody()
	if err != nil || rc == nil {
		return nil, errors.New("llmtransport: GetBody failed")
	}
	defer rc.Close()
	return readAllInto(make([]byte, 0, max(req.ContentLength, 512)+1), rc)
}

// switchTo settles the call's current target (its circuit, its host's
// retry budget) and makes r, with body and the circuit key, the call's
// request for the next run.
func (c *call) switchTo(r *http.Request, body []byte, key circuitKey) {
	c.settle()
	c.t.budgets.of(c.key.host).settle(false, c.retries)
	c.fb.used += c.retries
	c.retries = 0
	c.circ = circuit.Ticket{}
	c.out, c.hint = outcomeExcluded, 0
	c.req, c.buffered, c.key = r, body, key
	c.sec = c.sec.next(r)
	c.trace.host, c.trace.model = key.host, key.model
	c.pacePrepare() // a route may change the API key, and the body's length
}

// handBackHeld hands back held, the response of key kept while the chain
// went on, when no later one came: marked not to be retried again, named as
// the one that answered (outcome.go), and watched by the call's span.
func (c *call) handBackHeld(held *http.Response, key *circuitKey) *http.Response {
	held.Header.Set("X-Should-Retry", "false")
	c.rec.answered = key
	c.trace.rewatch(held, &c.sec)
	return held
}

// countLast counts the last attempt of a target in the attempts metric,
// with its class: the call's span counts the others as they are retried.
func (c *call) countLast(total int, cl *Classification) {
	if total > c.trace.counted {
		c.trace.t.m.attempt(c.trace.ctx, c.trace.host, c.trace.model, cl.Class)
		c.trace.counted = total
	}
}

// The fallback span events, metric and attributes.
const (
	eventFallback        = "fallback"
	eventFallbackSkipped = "fallback skipped"

	// MetricFallbacks counts the steps down fallback chains, by the model
	// left (llm.fallback.from), the target (llm.fallback.to) and the
	// reason (llm.error.class: a class name, "circuit_open" or
	// "cooldown").
	MetricFallbacks = "llm.client.fallbacks"

	keyFallbackFrom = attribute.Key("llm.fallback.from")
	keyFallbackTo   = attribute.Key("llm.fallback.to")
)

// fallbackEvent records a step down the chain: a span event, the metric,
// and the hook of WithOnFallback.
func (c *call) fallbackEvent(ev FallbackEvent) {
	attrs := []attribute.KeyValue{keyFallbackFrom.String(ev.From), keyFallbackTo.String(ev.To), keyClass.String(ev.Reason)}
	if m := c.t.tracer.m.fallbacks; m != nil && m.Enabled(c.ctx) {
		m.Add(c.ctx, 1, metric.WithAttributes(attrs...))
	}
	if s := c.trace.st; s != nil {
		if ev.ToHost != ev.Host {
			attrs = append(attrs, keyServerAddress.String(hostName(ev.ToHost)))
		}
		s.AddEvent(eventFallback, trace.WithAttributes(attrs...))
	}
	if h := c.fb.cfg.hook; h != nil {
		h(ev)
	}
}

// fallbackSkipped records that a target was skipped before any attempt.
func (c *call) fallbackSkipped(key circuitKey, reason string) {
	if s := c.trace.st; s != nil {
		s.AddEvent(eventFallbackSkipped, trace.WithAttributes(keyFallbackTo.String(key.model), keyClass.String(reason)))
	}
}

// stripFallbackHeaders removes the headers FallbackOf reads from resp, a
// response as the upstream sent it: on a call with fallbacks, only the
// transport says which model answered, and an upstream (or a gateway in
// front of another llmtransport) cannot make FallbackOf report a fallback
// that did not happen here.
func stripFallbackHeaders(resp *http.Response) {
	if resp == nil {
		return
	}
	for _, k := range [...]string{HeaderModel, HeaderFallbackFrom, HeaderFallbackReason} {
		resp.Header.Del(k)
	}
}
