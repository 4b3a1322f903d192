package llmtransport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmtransport/llmtransport/internal/wire"
)

// firstByteTimer starts the first-byte timer of an attempt: after d it
// cancels the attempt with errFirstByteTimeout, unless the returned stop
// was called first. stop reports whether it stopped the timer in time; the
// timer and stop agree on who won, so that a response whose headers came
// as the timer fired is either cancelled (stop reports false) or not at all.
func firstByteTimer(d time.Duration, cancel context.CancelCauseFunc) (stop func() bool) {
	var state atomic.Int32 // 0 running, 1 fired, 2 stopped
	timer := time.AfterFunc(d, func() {
		if state.CompareAndSwap(0, 1) {
			cancel(errFirstByteTimeout)
		}
	})
	return func() bool {
		if state.CompareAndSwap(0, 2) {
			timer.Stop()
			return true
		}
		if state.Load() == 2 {
			return true
		}
		// The timer won, and its cancel may not have run yet: cancel
		// now, so that the attempt's context says why (the first cause
		// is kept).
		cancel(errFirstByteTimeout)
		return false
	}
}

// errFirstByteTimeout is the cause of an attempt cancelled by
// [WithFirstByteTimeout].
var errFirstByteTimeout = errors.New("llmtransport: no first byte within the first-byte timeout")

// request returns the request of attempt n. It never modifies the caller's
// request: attempts after the first are shallow copies with a fresh body.
func (c *call) request(n int) (*http.Request, error) {
	req := c.req
	c.body = nil
	switch {
	case c.buffered != nil:
		r := req.WithContext(c.ctx)
		buf := c.buffered
		r.Body = io.NopCloser(bytes.NewReader(buf))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
		r.ContentLength = int64(len(buf))
		return r, nil
	case n == 0:
		c.sent = true
		if c.prefix != nil {
			r := req.WithContext(c.ctx)
			c.body = &watchedBody{ReadCloser: struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(c.prefix), req.Body), req.Body}}
			r.Body = c.body
			return r, nil
		}
		if c.ctx == req.Context() {
			return req, nil
		}
		return req.WithContext(c.ctx), nil
	case req.Body == nil || req.Body == http.NoBody:
		return req.WithContext(c.ctx), nil
	default:
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		if body == nil {
			return nil, errors.New("GetBody returned a nil body")
		}
		r := req.WithContext(c.ctx)
		c.body = &watchedBody{ReadCloser: body}
		r.Body = c.body
		return r, nil
	}
}

// watchedBody is a request body of the caller's that remembers the first
// error its Read returned, so that a transport error which is that error
// (net/http returns a request body's read error as the round trip's) is
// told from the server's: it is the caller's, not the model's. Only the
// bodies the transport makes an attempt from are watched (a body too large
// to buffer, GetBody's for a retry): a first attempt that sends the
// caller's own body as it is, the common case, is not, to keep its cost.
type watchedBody struct {
	io.ReadCloser
	mu  sync.Mutex // Read runs on the base transport's goroutines
	err error
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

// failed reports whether err is an error b's Read returned.
func (b *watchedBody) failed(err error) bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err != nil && errors.Is(err, b.err)
}

// attemptResult is what one attempt produced.
type attemptResult struct {
	resp *http.Response // nil when err is set
	err  error
	peek peek
	cl   Classification
	out  outcome
}

// attempt sends req, attempt number n, through the base transport inside its
// own span, and classifies what came back into a, which must be zero.
func (c *call) attempt(a *attemptResult, req *http.Request, n int) {
	ctx, span := c.t.tracer.startAttempt(c.ctx, c.trace.st, req, n)
	var stop func() bool
	var cancel context.CancelCauseFunc
	if d := c.t.cfg.firstByte; d > 0 {
		ctx, cancel = context.WithCancelCause(ctx)
		stop = firstByteTimer(d, cancel)
	}
	if ctx != req.Context() {
		req = req.WithContext(ctx)
	}
	req = span.inject(req)

	var start time.Time
	if timing(c.ctx, c.t.tracer.m.reqDuration) {
		start = time.Now()
	}
	fired := c.exchange(a, req, stop)
	if cancel != nil {
		if fired && a.err == nil && a.peek.err == nil && !a.peek.whole && a.resp.StatusCode < 300 {
			// The timer fired after the headers came: the body is cancelled.
			a.peek.err = context.Cause(ctx)
		}
		if fired && a.err == nil && a.peek.err != nil && a.resp.StatusCode >= 300 {
			// The timer fired as the headers of an error came, and cut
			// its body: what the error was is unknown, and the attempt
			// is the timeout the timer says.
			a.resp.Body.Close()
			a.peek.release()
			a.resp, a.err = nil, context.Cause(ctx)
		}
		if a.err != nil || a.peek.whole {
			cancel(nil)
		} else {
			a.resp.Body = &cancelBody{ReadCloser: a.resp.Body, cancel: cancel}
		}
	}

	if a.err != nil && cancel != nil && errors.Is(context.Cause(ctx), errFirstByteTimeout) && c.ctx.Err() == nil {
		a.cl = Classification{Class: ClassTimeout, Message: errFirstByteTimeout.Error(), Retryable: true, BreakerFailure: true}
		a.out = outcomeFailure
		a.err = c.sec.maskErr(a.err) // as judge does
	} else {
		c.judge(a)
	}
	if !start.IsZero() {
		c.t.tracer.m.request(c.ctx, start, req, a)
	}
	if a.err != nil {
		span.failed(a.err, &a.cl)
	} else {
		span.response(a.resp, &a.cl, &c.sec, a.peek.err != nil && callerCanceled(c.ctx))
	}
}

// exchange sends req through the base transport and, when the response's
// class depends on its body, peeks at it.
//
// stop, when not nil, stops the attempt's first-byte timer, and exchange
// reports whether the timer had fired by then. The timer bounds the
// response headers and, for a successful event stream, its first event:
// nothing else. It is stopped as soon as the headers of any other response
// are in (an error, a JSON completion whose head is looked at), so that an error body that comes after its headers is read whole
// and classified by its code, not cut by the timer. That peek (at most 64
// KiB) is bounded by the request's context, like any read of the body.
func (c *call) exchange(a *attemptResult, req *http.Request, stop func() bool) (fired bool) {
	a.resp, a.err = safeRoundTrip(c.base, req)
	c.paceSettle(a) // pacing.go: the headers are in, or none will come
	if a.err != nil {
		return stop != nil && !stop()
	}
	if stop != nil && (a.resp.StatusCode >= 300 || !isEventStream(a.resp)) {
		fired, stop = !stop(), nil
	}
	a.peek.take(req, a.resp)
	if stop != nil {
		fired = !stop()
	}
	return fired
}

// judge classifies what exchange got, and what it means to the circuit.
func (c *call) judge(a *attemptResult) {
	if a.err != nil {
		a.cl, a.out = classifyErr(c.ctx, a.err)
		if c.body.failed(a.err) && c.ctx.Err() == nil {
			// The caller's body failed: nothing about the model.
			a.cl = Classification{Class: ClassInvalidRequest, Message: a.cl.Message}
			a.out = outcomeExcluded
		}
		// What the error says goes to spans, hooks and the caller: the
		// request's credentials are masked (a *url.Error from an
		// http.Client's Do as Middleware's next holds the whole URL).
		a.err = c.sec.maskErr(a.err)
		a.cl.Message = c.sec.mask(a.cl.Message)
		return
	}
	a.cl = c.t.inspect(a.resp, &a.peek)
	if a.peek.err != nil && c.ctx.Err() != nil {
		// The caller gave up while the peek was reading (a user pressing
		// stop before the first token): that says nothing about the model.
		a.cl, a.out = classifyErr(c.ctx, a.peek.err)
		a.cl.Status = a.resp.StatusCode
		a.cl.Message = c.sec.mask(a.cl.Message)
		return
	}
	if a.cl.Class != ClassSuccess {
		// A gateway may echo the caller's key, in any shape.
		a.cl.Message = c.sec.mask(a.cl.Message)
		a.cl.Code = c.sec.maskValues(a.cl.Code)
		a.cl.Type = c.sec.maskValues(a.cl.Type)
	}
	// A success's request ID too: it is set only when its body was
	// classified (a stream), so the plain success pays nothing.
	a.cl.RequestID = c.sec.maskValues(a.cl.RequestID)
	switch {
	case a.cl.Class == ClassSuccess:
		a.out = outcomeSuccess
	case a.cl.BreakerFailure:
		a.out = outcomeFailure
	default:
		a.out = outcomeExcluded
	}
}

// inspect classifies resp with the bytes peeked from its body. A successful
// response whose body was not peeked (or only its JSON head, put back) is
// classified without reading it.
func (t *Transport) inspect(resp *http.Response, p *peek) Classification {
	var cl Classification
	switch {
	case p.buf == nil && resp.StatusCode < 400:
		cl = Classification{Class: ClassSuccess, Status: resp.StatusCode}
	case p.buf == nil:
		cl = t.classify(resp, nil)
	default:
		// A body the base did not decompress is decoded for the
		// classifier (ours or the caller's); the response keeps its bytes.
		b, buf := wire.Decode(resp.Header, p.verdict())
		cl = t.classify(resp, b)
		if buf != nil {
			peekPool.Put(buf)
		}
	}
	switch {
	case p.err != nil && resp.StatusCode < 300 && errors.Is(p.err, errFirstByteTimeout):
		// The first-byte timer fired before a success's first event (or
		// just as its headers came): whatever the few bytes before it
		// looked like (an event stream cut before any event reads as
		// broken), the attempt is the timeout, which a fallback chain
		// leaves at once.
		cl = Classification{Class: ClassTimeout, Status: resp.StatusCode, Message: errFirstByteTimeout.Error(), Retryable: true, BreakerFailure: true}
	case p.err != nil && cl.Class == ClassSuccess:
		// A stream broke before its first event reached the caller:
		// nothing was delivered, so it can be tried again.
		cl = Classification{Class: ClassUpstreamTransient, Status: resp.StatusCode, Message: p.err.Error(), Retryable: true, BreakerFailure: true}
	}
	return cl
}

// safeRoundTrip calls base.RoundTrip and turns a panic, or a nil response
// with a nil error, into an error.
func safeRoundTrip(base http.RoundTripper, req *http.Request) (resp *http.Response, err error) {
	defer func() {
		if v := recover(); v != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			resp, err = nil, newPanicError(v, req)
		}
	}()
	resp, err = base.RoundTrip(req)
	if err != nil {
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		return nil, err
	}
	if resp == nil {
		// The base broke its contract; it may not have closed the body.
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, ErrNilResponse
	}
	if resp.Body == nil {
		resp.Body = http.NoBody
	}
	if resp.Header == nil {
		resp.Header = make(http.Header)
	}
	return resp, nil
}

// cancelBody releases an attempt's first-byte timer context when the body
// is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}
