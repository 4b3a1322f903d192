package llmtransport

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/llmtransport/llmtransport/classify"
	"github.com/llmtransport/llmtransport/internal/reqmodel"
)

// Outcome is what a [Transport] made of one call, across its attempts and
// fallbacks: see [OutcomeOf], [WithOnOutcome] and [RequestOutcomeInto].
type Outcome struct {
	// Classification is that of the response handed back (the call's last
	// attempt's, but when a fallback chain failed: the requested model's,
	// whose response goes back): its class, code, status, request ID, the
	// server's wait hint. Retryable is the
	// server's verdict on that attempt, not the X-Should-Retry: false
	// the transport set on the response it handed back (which makes
	// [Classify], run again on that response, say false). It is the zero
	// Classification when no attempt was sent (the circuit refused the
	// call).
	Classification

	// Host and Model name the circuit that answered: the last one the
	// call tried, a fallback target's when one answered.
	Host, Model string
	// Requested is the model the call asked for ("" when the request
	// names none).
	Requested string
	// Attempts is how many attempts the call sent, over all the models it
	// tried.
	Attempts int
	// Waited is how long the call waited in all: the waits before its
	// retries, for a model's cooldown, and pacing's ([WithPacing]).
	Waited time.Duration
	// Path is the models the call tried, in order, when it went down a
	// fallback chain ([WithFallbacks]): Requested first, the model that
	// answered last. It is nil when the call stayed on Requested.
	Path []string
	// FallbackReason is why Requested did not answer when the call went
	// down its chain (see [HeaderFallbackReason]), "" otherwise.
	FallbackReason string
	// RequestIDs holds the request ID of each attempt, in order ("" for an
	// attempt that got no response or whose response carried none).
	RequestIDs []string
	// Err is the error the call returned, nil when a response went back.
	// [OutcomeOf] never reports one: a response came back. It matches
	// [ErrCircuitOpen] with errors.Is when the circuit refused the call.
	Err error
}

// Retried reports whether the call sent more than one attempt.
func (o *Outcome) Retried() bool { return o.Attempts > 1 }

// FellBack reports whether a model other than the one asked for answered.
func (o *Outcome) FellBack() bool { return o.Path != nil && o.Model != o.Requested }

// outcomeKey is the context key under which a response's request carries
// its Outcome.
type outcomeKey struct{}

// OutcomeOf returns what the transport made of the call that resp answers:
// the class and code of its last attempt (the server's verdict on whether
// it was worth retrying, see [Outcome]), how many attempts, how long it
// waited, which model answered and the fallback path. It works on the
// response a [Transport] returned and on the same response as an SDK hands
// it over: openai-go's apierror.Error.Response, option.WithResponseInto,
// anthropic-sdk-go's. A client whose errors keep no response (go-openai,
// langchaingo) gets the outcome through [WithOnOutcome] or
// [RequestOutcomeInto] instead.
//
// The outcome travels in the context of resp.Request, set by the
// transport when there is something to tell: the call was retried, waited,
// fell back or did not succeed. A call that succeeded at its first attempt
// carries nothing, so that the success path costs no allocation: OutcomeOf
// reports such a 2xx response as ClassSuccess in 1 attempt, with the model
// read again from resp.Request (its URL, or its body through GetBody) and
// the request ID from its headers. It therefore cannot tell a 2xx response
// that came through a Transport from one that did not; ok is false for a
// nil response and for a response that is not a success and carries no
// outcome (it did not come through a Transport).
func OutcomeOf(resp *http.Response) (Outcome, bool) {
	if resp == nil {
		return Outcome{}, false
	}
	if r := resp.Request; r != nil {
		if o, ok := r.Context().Value(outcomeKey{}).(*Outcome); ok {
			return o.clone(), true
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Outcome{}, false
	}
	o := Outcome{Classification: Classification{Class: ClassSuccess, Status: resp.StatusCode}, Attempts: 1}
	o.RequestID = headerRequestID(resp.Header)
	o.RequestIDs = []string{o.RequestID}
	if r := resp.Request; r != nil && r.URL != nil {
		o.Host = r.URL.Host
		o.Model = requestModel(r)
		o.Requested = o.Model
	}
	return o, true
}

// clone returns a copy of o whose slices are its own.
func (o *Outcome) clone() Outcome {
	c := *o
	c.Path = append([]string(nil), o.Path...)
	if o.Path == nil {
		c.Path = nil
	}
	c.RequestIDs = append([]string(nil), o.RequestIDs...)
	return c
}

// requestModel reads the model r names again, without taking its body: a
// body is read only through GetBody, its first MiB at most.
func requestModel(r *http.Request) string {
	// The context, the path and the query first, with no body to read.
	bare := (&http.Request{Method: r.Method, URL: r.URL, Header: r.Header}).WithContext(r.Context())
	if m, _, _ := reqmodel.Find(bare, nil); m != "" {
		return m
	}
	if r.GetBody == nil {
		return ""
	}
	rc, err := r.GetBody()
	if err != nil || rc == nil {
		return ""
	}
	defer rc.Close()
	const limit = 1 << 20
	b, _ := io.ReadAll(io.LimitReader(rc, limit+1))
	return reqmodel.InBody(b, len(b) <= limit)
}

// headerRequestID returns the request ID in h, as [Classify] finds it.
func headerRequestID(h http.Header) string {
	for _, k := range classify.RequestIDHeaders() {
		if v := strings.TrimSpace(h.Get(k)); v != "" {
			return v
		}
	}
	return ""
}

// WithOnOutcome sets a hook the transport calls once at the end of each
// call, with the call's context (the caller's, with the call's span when
// tracing) and what it made of the call, response or error. It is the way
// to the outcome for clients whose errors keep no response (go-openai,
// langchaingo): log it, count it, or keep errors.Is(o.Err,
// [ErrCircuitOpen]) that such a client flattens. For a streamed response
// it runs when the headers and first event came back: a stream that
// breaks later is not in it. The hook runs on the caller's goroutine and
// should be quick; building the Outcome it gets costs an allocation or
// two per call.
func WithOnOutcome(f func(ctx context.Context, o Outcome)) Option {
	return func(c *config) { c.onOutcome = f }
}

// RequestOption changes how a [Transport] treats the requests sent with a
// context: see [WithRequestOptions].
type RequestOption func(*requestOptions)

// requestOptions are the per-request overrides of a context.
type requestOptions struct {
	maxRetries   int // -1: the transport's
	maxRetryWait time.Duration
	noFallbacks  bool
	into         *Outcome
}

type requestOptionsKey struct{}

// WithRequestOptions returns a copy of ctx whose requests a [Transport]
// treats with opts over its own options ([RequestMaxRetries],
// [RequestMaxRetryWait], [RequestWithoutFallbacks],
// [RequestOutcomeInto]); options already in ctx are kept unless opts
// change them. Send the request with the context it returns: with an SDK,
// pass it as the call's context.
func WithRequestOptions(ctx context.Context, opts ...RequestOption) context.Context {
	ro := requestOptions{maxRetries: -1, maxRetryWait: -1}
	if p, ok := ctx.Value(requestOptionsKey{}).(*requestOptions); ok {
		ro = *p
	}
	for _, o := range opts {
		if o != nil {
			o(&ro)
		}
	}
	return context.WithValue(ctx, requestOptionsKey{}, &ro)
}

// RequestMaxRetries sets how many times at most the request is retried,
// in place of [WithMaxRetries]: 0 sends one attempt (the response then
// carries no X-Should-Retry: false, as with WithMaxRetries(0)). Negative
// values are ignored.
func RequestMaxRetries(n int) RequestOption {
	return func(ro *requestOptions) {
		if n >= 0 {
			ro.maxRetries = n
		}
	}
}

// RequestMaxRetryWait sets the longest wait the transport honours for the
// request, in place of [WithMaxRetryWait]. Values ≤ 0 are ignored.
func RequestMaxRetryWait(d time.Duration) RequestOption {
	return func(ro *requestOptions) {
		if d > 0 {
			ro.maxRetryWait = d
		}
	}
}

// RequestWithoutFallbacks keeps the request on the model it asks for: no
// fallback chain of [WithFallbacks] is followed.
func RequestWithoutFallbacks() RequestOption {
	return func(ro *requestOptions) { ro.noFallbacks = true }
}

// RequestOutcomeInto has the transport store the outcome of each call
// sent with the context in *o when the call ends, response or error (a
// call the circuit refused included: errors.Is(o.Err, ErrCircuitOpen)).
// With several calls on one context, *o holds the last one's; calls
// running at once must not share o.
func RequestOutcomeInto(o *Outcome) RequestOption {
	return func(ro *requestOptions) { ro.into = o }
}

// requestOptionsOf reads the per-request options of ctx, nil when none.
func requestOptionsOf(ctx context.Context) *requestOptions {
	ro, _ := ctx.Value(requestOptionsKey{}).(*requestOptions)
	return ro
}

// maxRetries is the call's retry limit: the request's, or the transport's.
func (c *call) maxRetries() int {
	if c.ro != nil && c.ro.maxRetries >= 0 {
		return c.ro.maxRetries
	}
	return c.t.cfg.maxRetries
}

// maxRetryWait is the call's longest honoured wait.
func (c *call) maxRetryWait() time.Duration {
	if c.ro != nil && c.ro.maxRetryWait > 0 {
		return c.ro.maxRetryWait
	}
	return c.t.cfg.maxRetryWait
}

// outcomeRec is what a call records for its Outcome as it goes; it costs
// nothing on a call that succeeds at its first attempt.
type outcomeRec struct {
	waited   time.Duration
	ids      []string // request IDs of the attempts, from the first that did not succeed on
	path     []string // the models tried, when the call left its first
	fbReason string
	answered *circuitKey // the circuit of the response handed back, when not the last tried
}

// noteAttempt records the request ID of attempt a. A first attempt that
// succeeded records nothing: its ID is read from its response if asked.
func (c *call) noteAttempt(a *attemptResult) {
	if c.rec.ids == nil && a.err == nil && a.cl.Class == ClassSuccess {
		return
	}
	id := a.cl.RequestID
	if id == "" && a.resp != nil {
		id = headerRequestID(a.resp.Header)
	}
	c.rec.ids = append(c.rec.ids, c.sec.maskValues(id)) // a success's too
}

// finish ends the call's outcome: it is attached to resp when there is
// something to tell, stored where the request asked, and given to the hook.
func (c *call) finish(resp *http.Response, cl *Classification, attempts int, err error) {
	hook := c.t.cfg.onOutcome
	var into *Outcome
	if c.ro != nil {
		into = c.ro.into
	}
	tell := resp != nil && (attempts > 1 || cl.Class != ClassSuccess || c.rec.path != nil || c.rec.waited > 0)
	if hook == nil && into == nil && !tell {
		return
	}
	o := Outcome{
		Classification: *cl,
		Host:           c.key.host, Model: c.key.model, Requested: c.key.model,
		Attempts: attempts, Waited: c.rec.waited,
		Path: c.rec.path, FallbackReason: c.rec.fbReason,
		RequestIDs: c.rec.ids, Err: err,
	}
	if attempts == 0 {
		o.Classification = Classification{}
	}
	if k := c.rec.answered; k != nil && resp != nil {
		o.Host, o.Model = k.host, k.model
	}
	if len(o.Path) > 0 {
		o.Requested = o.Path[0]
	}
	if resp != nil && o.RequestID == "" {
		o.RequestID = c.sec.maskValues(headerRequestID(resp.Header))
	}
	if o.RequestIDs == nil && attempts == 1 && resp != nil {
		o.RequestIDs = []string{o.RequestID}
	}
	if tell {
		rec := new(Outcome)
		*rec = o
		r := resp.Request
		if r == nil {
			r = c.req
		}
		resp.Request = r.WithContext(context.WithValue(r.Context(), outcomeKey{}, rec))
	}
	if into != nil {
		*into = o.clone()
	}
	if hook != nil {
		hook(c.ctx, o.clone())
	}
}

// recordOperation records the call's gen_ai.client.operation.duration.
func (c *call) recordOperation(start time.Time, req *http.Request, resp *http.Response, cl *Classification, attempts int, err error) {
	requested, answered := c.key.model, c.key.model
	if p := c.rec.path; len(p) > 0 {
		requested = p[0]
	}
	if k := c.rec.answered; k != nil {
		answered = k.model
	}
	if resp == nil || cl.Class != ClassSuccess {
		answered = requested // gen_ai.response.model is that of a response
	}
	var errType string
	switch {
	case err != nil && callerCanceled(c.ctx):
		errType = "canceled"
	case err != nil:
		errType = callErrorType(err, cl, attempts)
	case cl.Class != ClassSuccess:
		errType = cl.Class.String()
	}
	c.t.tracer.m.operation(c.ctx, start, operationName(req.URL.Path), req.URL.Host, requested, answered, errType)
}
