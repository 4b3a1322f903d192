package llmtransport

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/llmtransport/llmtransport/classify"
	"github.com/llmtransport/llmtransport/internal/redact"
)

// ScopeName is the instrumentation scope name of the tracer and the meter
// a [Transport] uses.
const ScopeName = "github.com/llmtransport/llmtransport"

// Version is the version of this module, recorded as the instrumentation
// scope version.
const Version = "0.1.0"

// The span attributes. The gen_ai.*, http.*, server.*, url.* and error.type
// keys follow the OpenTelemetry semantic conventions (HTTP: stable; GenAI:
// development, as of semconv 1.41). The llm.* keys are this package's own.
const (
	keyOperation     = attribute.Key("gen_ai.operation.name")
	keyProvider      = attribute.Key("gen_ai.provider.name")
	keyRequestModel  = attribute.Key("gen_ai.request.model")
	keyResponseModel = attribute.Key("gen_ai.response.model")
	keyServerAddress = attribute.Key("server.address")
	keyServerPort    = attribute.Key("server.port")
	keyMethod        = attribute.Key("http.request.method")
	keyMethodOrig    = attribute.Key("http.request.method_original")
	keyURLFull       = attribute.Key("url.full")
	keyStatusCode    = attribute.Key("http.response.status_code")
	keyResendCount   = attribute.Key("http.request.resend_count")
	keyErrorType     = attribute.Key("error.type")

	// keyClass is the [Class] of an attempt's outcome, or of the call's
	// final outcome on the call's span ("success" included).
	keyClass = attribute.Key("llm.error.class")
	// keyCode is the business error code of an error response, when the
	// body has one ([Classification.Code]).
	keyCode = attribute.Key("llm.error.code")
	// keyRequestID is the request ID the server or gateway assigned,
	// whichever header or body field carried it.
	keyRequestID = attribute.Key("llm.request_id")
	// keyAttempts is the number of attempts a call sent.
	keyAttempts = attribute.Key("llm.attempts")

	// Event attributes.
	keyRetryAttempt    = attribute.Key("llm.retry.attempt")     // the attempt that failed, from 0
	keyRetryWait       = attribute.Key("llm.retry.wait")        // seconds
	keyRetryWaitSource = attribute.Key("llm.retry.wait_source") // "backoff" or a header name
	keyCircuitFrom     = attribute.Key("llm.circuit.from")
	keyCircuitTo       = attribute.Key("llm.circuit.to")
	keyCircuitRetryIn  = attribute.Key("llm.circuit.retry_in") // seconds
	keyCooldownWait    = attribute.Key("llm.cooldown.wait")    // seconds
)

// The span events.
const (
	eventRetryScheduled  = "retry scheduled"
	eventCircuitRejected = "circuit rejected"
	eventCircuitChange   = "circuit state change"
	eventCooldownWait    = "cooldown wait"
	eventBudgetExhausted = "retry budget exhausted"
)

// tracer records the spans and metrics of the transport.
type tracer struct {
	tracer trace.Tracer
	off    bool // the tracer provider is the no-op one: start no spans
	// global says that tracer is the global provider's (no
	// WithTracerProvider). idle is then the global provider that was last
	// seen to start spans that do nothing (see startCall): OTel's stand-in
	// before an SDK is installed, or a no-op provider. While
	// otel.GetTracerProvider still returns it, no span is started;
	// installing a provider replaces the global, and spans start flowing.
	global bool
	idle   atomic.Pointer[providerRef]
	prop   propagation.TextMapPropagator
	m      metrics

	// spanOpts caches the call spans' options; it is copied on write, under
	// mu, and read without a lock.
	spanOpts atomic.Pointer[map[callSpanKey]*callSpanOptions]
	mu       sync.Mutex
}

// providerRef holds a tracer provider whose type is comparable.
type providerRef struct{ tp trace.TracerProvider }

func newTracer(cfg tracingConfig) *tracer {
	global := cfg.tp == nil
	if global {
		cfg.tp = otel.GetTracerProvider()
	}
	if cfg.mp == nil {
		cfg.mp = otel.GetMeterProvider()
	}
	if cfg.prop == nil {
		cfg.prop = otel.GetTextMapPropagator()
	}
	_, off := cfg.tp.(noop.TracerProvider)
	return &tracer{
		off:    off,
		global: global,
		tracer: cfg.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version)),
		prop:   cfg.prop,
		m:      newMetrics(cfg.mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version))),
	}
}

// callTrace is the logical span of one call, covering every attempt and wait,
// and the call's metrics.
type callTrace struct {
	t           *tracer
	ctx         context.Context
	st          *callSpan // nil when the span is not recording
	host, model string
	counted     int // attempts already counted in the attempts metric
}

// callSpan is the recording span of a call, which the call passes to its
// attempts and to whatever records on the call's span; it ends when the
// call has ended and the body of the response handed back has been read to
// its end or closed, whichever is later.
type callSpan struct {
	trace.Span
	// last, lastResp and lastID are the body, the response and the
	// (masked) request ID of the latest response; they are set and read by
	// the calling goroutine only.
	last     *spanBody
	lastResp *http.Response
	lastID   string
	ended    atomic.Bool
}

func (s *callSpan) finish() {
	if s.ended.CompareAndSwap(false, true) {
		s.End()
	}
}

// spansOff reports whether no span would be started: the tracer provider
// is the no-op one, or the global provider is still the one seen to start
// spans that do nothing.
func (t *tracer) spansOff() bool {
	if t.off {
		return true
	}
	p := t.idle.Load()
	return p != nil && otel.GetTracerProvider() == p.tp
}

// sawIdle records that a span started while tp was the global provider did
// nothing: not recording, and with no identity of its own. OTel documents
// the global provider as a no-op until one is installed
// (otel.GetTracerProvider), and installing one is what changes the global,
// so while tp is still the global, later spans would do nothing too. A
// provider of a type that cannot be compared is not remembered.
func (t *tracer) sawIdle(tp trace.TracerProvider) {
	if tp == nil || !reflect.TypeOf(tp).Comparable() {
		return
	}
	if p := t.idle.Load(); p == nil || p.tp != tp {
		t.idle.Store(&providerRef{tp})
	}
}

// injectable reports whether ctx carries what propagators inject: a trace
// context or baggage.
func injectable(ctx context.Context) bool {
	return trace.SpanContextFromContext(ctx).IsValid() || baggage.FromContext(ctx).Len() > 0
}

// startCall starts the logical span of req, whose model is model ("" when
// unknown). The returned context carries the span.
func (t *tracer) startCall(ctx context.Context, req *http.Request, model string) (context.Context, callTrace) {
	c := callTrace{t: t, ctx: ctx, host: req.URL.Host, model: model}
	if t.spansOff() {
		return ctx, c
	}
	var global trace.TracerProvider
	if t.global {
		// Read before the span starts: a provider installed meanwhile is
		// then never taken for one whose spans do nothing.
		global = otel.GetTracerProvider()
	}
	so := t.spanOptions(req.URL, model)
	sctx, span := t.tracer.Start(ctx, so.name, so.opts...)
	switch {
	case span.IsRecording():
		c.st = &callSpan{Span: span}
		ctx = sctx
	case !span.SpanContext().Equal(trace.SpanContextFromContext(ctx)):
		// A span that is not recorded but has an identity of its own.
		ctx = sctx
	default:
		// A span that does nothing: keep the caller's context, so that
		// attempts need not copy the request to carry another, and start
		// none while the global provider stays the same.
		if t.global {
			t.sawIdle(global)
		}
	}
	c.ctx = ctx
	return ctx, c
}

// callSpanOptions are the name and start options of the span of the calls
// to one (scheme, host, operation, model).
type callSpanOptions struct {
	name string
	opts []trace.SpanStartOption
}

type callSpanKey struct {
	scheme, host, op, model string
}

// maxSpanOptions bounds the cache of span options; calls beyond it build
// theirs each time.
const maxSpanOptions = 256

var clientKind = trace.WithSpanKind(trace.SpanKindClient)

// spanOptions returns the span name and options of a call to u for model,
// from the cache when it has them: they depend only on the scheme, host,
// operation and model, which an application has few of.
func (t *tracer) spanOptions(u *url.URL, model string) *callSpanOptions {
	op := operationName(u.Path)
	k := callSpanKey{u.Scheme, u.Host, op, model}
	if m := t.spanOpts.Load(); m != nil {
		if so := (*m)[k]; so != nil {
			return so
		}
	}
	name := op
	if model != "" {
		name = op + " " + model
	}
	addr, port := serverAddrPort(u)
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, keyOperation.String(op))
	if p := providerName(addr); p != "" {
		attrs = append(attrs, keyProvider.String(p))
	}
	if model != "" {
		attrs = append(attrs, keyRequestModel.String(model))
	}
	attrs = append(attrs, keyServerAddress.String(addr), keyServerPort.Int(port))
	so := &callSpanOptions{name: name, opts: []trace.SpanStartOption{clientKind, trace.WithAttributes(attrs...)}}

	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.spanOpts.Load()
	if old == nil || len(*old) < maxSpanOptions {
		m := make(map[callSpanKey]*callSpanOptions, 1+lenOf(old))
		if old != nil {
			maps.Copy(m, *old)
		}
		m[k] = so
		t.spanOpts.Store(&m)
	}
	return so
}

func lenOf(m *map[callSpanKey]*callSpanOptions) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// retryScheduled records that the call will retry after ev.Wait.
func (c *callTrace) retryScheduled(ev *RetryEvent) {
	c.counted++
	c.t.m.attempt(c.ctx, c.host, c.model, ev.Classification.Class)
	c.t.m.retry(c.ctx, ev)
	if c.st == nil {
		return
	}
	c.st.AddEvent(eventRetryScheduled, trace.WithAttributes(
		keyRetryAttempt.Int(ev.Attempt),
		keyRetryWait.Float64(ev.Wait.Seconds()),
		keyRetryReason.String(ev.Reason),
		keyRetryWaitSource.String(ev.WaitSource),
		keyClass.String(ev.Classification.Class.String()),
	))
}

// circuitRejected records that an open circuit refused an attempt.
func (c *callTrace) circuitRejected(err *CircuitOpenError) {
	c.t.m.reject(c.ctx, err.Host, err.Model)
	if c.st == nil {
		return
	}
	c.st.AddEvent(eventCircuitRejected, trace.WithAttributes(
		keyServerAddress.String(hostName(err.Host)),
		keyRequestModel.String(err.Model),
		keyCircuitRetryIn.Float64(err.RetryIn.Seconds()),
	))
}

// cooldownWait records that the call waits d for its model's cooldown.
func (c *callTrace) cooldownWait(d time.Duration) {
	c.t.m.waited(c.ctx, c.host, c.model, d, "cooldown")
	if c.st == nil {
		return
	}
	c.st.AddEvent(eventCooldownWait, trace.WithAttributes(keyCooldownWait.Float64(d.Seconds())))
}

// budgetExhausted records that the retry budget refused a retry.
func (c *callTrace) budgetExhausted() {
	c.t.m.budget(c.ctx, c.host, c.model)
	if c.st == nil {
		return
	}
	c.st.AddEvent(eventBudgetExhausted)
}

// end ends the logical span with the final classification, the number of
// attempts made, and the error returned to the caller (nil when a response
// was returned: resp, whose request ID the span takes when cl has none,
// masked with sec).
func (c *callTrace) end(cl *Classification, attempts int, err error, resp *http.Response, sec *secrets) {
	if attempts > c.counted {
		c.t.m.attempt(c.ctx, c.host, c.model, cl.Class)
		c.counted = attempts
	}
	s := c.st
	if s == nil {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, keyAttempts.Int(attempts))
	if attempts > 0 {
		attrs = append(attrs, keyClass.String(cl.Class.String()))
		if cl.Status != 0 {
			attrs = append(attrs, keyStatusCode.Int(cl.Status))
		}
		if cl.Code != "" {
			attrs = append(attrs, keyCode.String(cl.Code))
		}
		id := cl.RequestID
		switch {
		case id != "" || err != nil || resp == nil:
		case resp == s.lastResp:
			id = s.lastID
		default:
			// The response handed back is not the latest attempt's (a
			// failed fallback chain hands back the primary's).
			id = sec.maskValues(headerRequestID(resp.Header))
		}
		if id != "" {
			attrs = append(attrs, keyRequestID.String(id))
		}
	}
	switch {
	case callerCanceled(c.ctx) && (err != nil || cl.Status < 400):
		// The caller gave up (before the response, or while the start
		// of a stream was read): not a failure of the call.
	case err != nil:
		attrs = append(attrs, keyErrorType.String(callErrorType(err, cl, attempts)))
		s.SetStatus(codes.Error, redact.Secrets(err.Error()))
	case cl.Class != ClassSuccess:
		attrs = append(attrs, keyErrorType.String(cl.Class.String()))
		s.SetStatus(codes.Error, describe(cl))
	}
	s.SetAttributes(attrs...)
	if b := s.last; err == nil && b != nil {
		// The response goes back to the caller: the span lasts until its
		// body is read or closed.
		b.endCall.Store(true)
		if !b.done.Load() {
			return
		}
	}
	s.finish()
}

// rewatch makes the call's span wait for resp, a response kept through the
// attempts after it and now handed back: its first body, which the call's
// span waited for, was closed when it was kept (its attempt's span has
// ended), so the body handed back gets a watch of its own, and the call's
// span ends when the caller has read it to its end or closed it.
func (c *callTrace) rewatch(resp *http.Response, sec *secrets) {
	if c.st == nil || resp == nil {
		return
	}
	c.st.last = wrapBody(resp, noSpan, c.st, *sec)
}

// noSpan is a span that records nothing: rewatch's, whose attempt span has
// ended.
var noSpan = trace.SpanFromContext(context.Background())

// callerCanceled reports whether the call's context ctx was cancelled,
// which makes the error that ended the call the caller's doing.
func callerCanceled(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.Canceled)
}

// callErrorType returns the error.type of a call that ended with err: the
// class of its last attempt when it has one, else a name for err.
func callErrorType(err error, cl *Classification, attempts int) string {
	switch {
	case errors.Is(err, ErrCircuitOpen):
		return "circuit_open"
	case errors.Is(err, context.DeadlineExceeded):
		return ClassTimeout.String()
	case attempts > 0 && cl.Class != ClassSuccess:
		return cl.Class.String()
	}
	var pe *PanicError
	if errors.As(err, &pe) {
		return "panic"
	}
	return "_OTHER"
}

// describe returns the status description of an error response: its
// message, secrets masked, at most 256 bytes.
func describe(cl *Classification) string {
	return redact.Truncate(redact.Secrets(cl.Message), 256)
}

// circuitChanged records a circuit's state change: a metric, and an event
// on cs, the span of the call that reports it (nil when not recording).
func (t *tracer) circuitChanged(ctx context.Context, cs *callSpan, ch CircuitStateChange) {
	t.m.circuit(ctx, ch)
	if cs == nil {
		return
	}
	cs.AddEvent(eventCircuitChange, trace.WithAttributes(
		keyServerAddress.String(hostName(ch.Host)),
		keyRequestModel.String(ch.Model),
		keyCircuitFrom.String(ch.From.String()),
		keyCircuitTo.String(ch.To.String()),
	))
}

// attemptTrace is the HTTP client span of one physical attempt. Its span is
// nil when the call's span is not recording.
type attemptTrace struct {
	t    *tracer
	span trace.Span
	call *callSpan
}

// startAttempt starts the span of attempt number attempt (0 for the first)
// of the call whose span is cs (nil when it is not recording: then neither
// is the attempt's).
func (t *tracer) startAttempt(ctx context.Context, cs *callSpan, req *http.Request, attempt int) (context.Context, attemptTrace) {
	if cs == nil {
		return ctx, attemptTrace{t: t}
	}
	addr, port := serverAddrPort(req.URL)
	method, known := normalizeMethod(req.Method)
	name := method
	if !known {
		name = "HTTP"
	}
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs,
		keyMethod.String(method),
		keyServerAddress.String(addr),
		keyServerPort.Int(port),
		keyURLFull.String(redact.URL(req.URL)),
	)
	if !known {
		attrs = append(attrs, keyMethodOrig.String(req.Method))
	}
	if attempt > 0 {
		attrs = append(attrs, keyResendCount.Int(attempt))
	}
	ctx, span := t.tracer.Start(ctx, name, clientKind, trace.WithAttributes(attrs...))
	return ctx, attemptTrace{t: t, span: span, call: cs}
}

// normalizeMethod returns the http.request.method of m: m itself when it is
// a known method, else "_OTHER".
func normalizeMethod(m string) (string, bool) {
	switch m {
	case "":
		return http.MethodGet, true
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead,
		http.MethodPatch, http.MethodOptions, http.MethodConnect, http.MethodTrace, "QUERY":
		return m, true
	}
	return "_OTHER", false
}

// inject returns req with the trace context injected into its headers. It
// returns req itself when there is nothing to inject, and never modifies req:
// it clones the headers it changes.
func (a attemptTrace) inject(req *http.Request) *http.Request {
	if a.t == nil || a.t.prop == nil {
		return req
	}
	ctx := req.Context()
	if !injectable(ctx) {
		// Propagators inject a trace context or baggage: there is none.
		return req
	}
	c := injectCarrier{req: req}
	a.t.prop.Inject(ctx, &c)
	return c.req
}

// injectCarrier is a [propagation.TextMapCarrier] over a request's headers
// that copies the request and its headers before the first change.
type injectCarrier struct {
	req    *http.Request
	cloned bool
}

func (c *injectCarrier) Get(key string) string { return c.req.Header.Get(key) }

func (c *injectCarrier) Set(key, value string) {
	if !c.cloned {
		r := new(http.Request)
		*r = *c.req
		r.Header = c.req.Header.Clone()
		if r.Header == nil {
			r.Header = make(http.Header, 2)
		}
		c.req, c.cloned = r, true
	}
	c.req.Header.Set(key, value)
}

func (c *injectCarrier) Keys() []string {
	keys := make([]string, 0, len(c.req.Header))
	for k := range c.req.Header {
		keys = append(keys, k)
	}
	return keys
}

// requestIDSpanHeaders are the response headers that carry a request ID
// (the classifier's, [classify.RequestIDHeaders], in its order of
// precedence), with their span attribute keys
// (http.response.header.<name in lower case>).
var requestIDSpanHeaders = func() []requestIDSpanHeader {
	names := classify.RequestIDHeaders()
	hs := make([]requestIDSpanHeader, len(names))
	for i, name := range names {
		hs[i] = requestIDSpanHeader{name, attribute.Key("http.response.header." + strings.ToLower(name))}
	}
	return hs
}()

type requestIDSpanHeader struct {
	name string
	key  attribute.Key
}

// response records resp and its classification and arranges for the span
// to end when resp.Body reaches EOF or is closed.
// canceled says that the caller gave up while the start of the body was
// read, which is not the server's error.
func (a attemptTrace) response(resp *http.Response, cl *Classification, sec *secrets, canceled bool) {
	if a.span == nil {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, keyStatusCode.Int(resp.StatusCode), keyClass.String(cl.Class.String()))
	if cl.Code != "" {
		attrs = append(attrs, keyCode.String(cl.Code))
	}
	// A response may echo the caller's key anywhere (judge masked
	// cl.RequestID; the headers are masked here).
	id := cl.RequestID
	for _, h := range requestIDSpanHeaders {
		if v := resp.Header.Values(h.name); len(v) > 0 {
			cloned := false
			for i := range v {
				if m := sec.maskValues(v[i]); m != v[i] {
					if !cloned {
						v, cloned = slices.Clone(v), true // not the response's
					}
					v[i] = m
				}
			}
			attrs = append(attrs, h.key.StringSlice(v))
			if id == "" {
				id = v[0]
			}
			break
		}
	}
	if id != "" {
		attrs = append(attrs, keyRequestID.String(id))
	}
	switch {
	case canceled && resp.StatusCode < 400:
	case resp.StatusCode >= 400 || resp.StatusCode < 100:
		attrs = append(attrs, keyErrorType.String(strconv.Itoa(resp.StatusCode)))
		a.span.SetStatus(codes.Error, describe(cl))
	case cl.Class != ClassSuccess:
		// An error delivered with a success status (an in-band error).
		attrs = append(attrs, keyErrorType.String(cl.Class.String()))
		a.span.SetStatus(codes.Error, describe(cl))
	}
	a.span.SetAttributes(attrs...)
	a.call.last = wrapBody(resp, a.span, a.call, *sec)
	a.call.lastResp, a.call.lastID = resp, id
}

// failed records a transport error and ends the span.
func (a attemptTrace) failed(err error, cl *Classification) {
	if a.span == nil {
		return
	}
	a.span.SetAttributes(keyClass.String(cl.Class.String()))
	if cl.Class == ClassTimeout || !errors.Is(err, context.Canceled) {
		// Not a cancellation by the caller.
		a.span.SetAttributes(keyErrorType.String(cl.Class.String()))
		a.span.SetStatus(codes.Error, redact.Secrets(err.Error()))
	}
	a.span.End()
}

// spanBody wraps a response body to end the attempt's span, and the call's
// when it is the response handed back, at EOF or Close, once.
type spanBody struct {
	rc      io.ReadCloser
	span    trace.Span
	call    *callSpan
	sec     secrets // to mask a read error's text
	done    atomic.Bool
	endCall atomic.Bool // the call has ended with this body's response
}

// spanBodyRW is a spanBody over an [io.ReadWriteCloser] (the body of a 101
// Switching Protocols response), keeping it writable.
type spanBodyRW struct{ *spanBody }

func (b spanBodyRW) Write(p []byte) (int, error) { return b.rc.(io.Writer).Write(p) }

func wrapBody(resp *http.Response, span trace.Span, call *callSpan, sec secrets) *spanBody {
	b := &spanBody{rc: resp.Body, span: span, call: call, sec: sec}
	if _, ok := resp.Body.(io.ReadWriteCloser); ok {
		resp.Body = spanBodyRW{b}
	} else {
		resp.Body = b
	}
	return b
}

func (b *spanBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(nil)
	} else if err != nil {
		b.finish(err)
	}
	return n, err
}

func (b *spanBody) Close() error {
	err := b.rc.Close()
	b.finish(nil)
	return err
}

// finish ends the span (with an error status when the body broke with
// readErr), and the call's span if the call has ended.
func (b *spanBody) finish(readErr error) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	if readErr != nil && !errors.Is(readErr, context.Canceled) {
		msg := b.sec.mask(readErr.Error()) // the request's credentials and key patterns
		b.span.SetAttributes(keyErrorType.String("body_read"))
		b.span.SetStatus(codes.Error, msg)
		if b.endCall.Load() {
			b.call.SetAttributes(keyErrorType.String("body_read"))
			b.call.SetStatus(codes.Error, msg)
		}
	}
	b.span.End()
	if b.endCall.Load() {
		b.call.finish()
	}
}
