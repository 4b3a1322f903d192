package llmtransport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/llmtransport/llmtransport/internal/redact"
)

// RetryEvent describes one retry decision. [WithOnRetry] receives it before
// each wait, and [WithRetryPolicy] receives it to decide.
type RetryEvent struct {
	// Host and Model name the request's circuit (Model may be "").
	Host, Model string
	// Attempt is the number of the attempt that failed, from 0.
	Attempt int
	// Classification is what the failed attempt was classified as. For a
	// transport error, Status is 0.
	Classification Classification
	// Err is the transport error of the attempt, nil when a response came
	// back.
	Err error
	// Wait is how long the transport will wait before the next attempt.
	Wait time.Duration
	// WaitSource says where Wait came from: "backoff", or the
	// Classification's RetryAfterSource when the server asked for it.
	WaitSource string
	// Reason is a short word for why the attempt is retried: the class name,
	// or "x-should-retry".
	Reason string
	// Context is the call's context: the caller's, with the call's span
	// when tracing (for a trace ID in a log line, or a value the caller
	// put there to decide on).
	Context context.Context
	// Request is the request the call sends: the caller's, or the copy
	// sent to a fallback target. It is not to be modified; its body is
	// not to be read.
	Request *http.Request
}

// backoff returns the wait before retry n (from 0), never more than limit
// (the longest wait the transport honours, [WithMaxRetryWait]): the
// server's hint when it gave one, lengthened by up to 20 % so that callers
// it throttled do not return in step but never past limit, and otherwise
// full jitter over base·2ⁿ capped at max (and limit). A hint above limit is
// the caller's to refuse (decide does), not backoff's to shorten.
func backoff(n int, hint, base, max, limit time.Duration) time.Duration {
	if hint > 0 {
		return hint + jitter(min(hint/5, limit-hint))
	}
	d := min(max, limit)
	if n < 32 {
		if e := base << n; e > 0 && e < d {
			d = e
		}
	}
	return jitter(d)
}

// jitter returns a random duration in [0, d], or 0 when d ≤ 0.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	if d == math.MaxInt64 {
		return rand.N(d) // [0, d): d+1 would overflow
	}
	return rand.N(d + 1)
}

// classifyErr classifies a transport error: what the attempt means to the
// retry layer (c.Retryable) and to the circuit. A cancellation by the caller is
// neither retried nor counted. Errors are read by what they mean, whatever
// the protocol: a reset or a dropped connection before the response is
// retried over HTTP/2 as over HTTP/1.1, and a request the server says it
// did not process (REFUSED_STREAM, a GOAWAY before the stream, an idle
// connection it closed) is retried and says nothing about the model
// (see wireFaultOf).
func classifyErr(ctx context.Context, err error) (c Classification, o outcome) {
	c.Message = redact.Message(strings.ToValidUTF8(err.Error(), "\uFFFD"))
	if ctx.Err() != nil {
		c.Class = ClassTimeout
		if errors.Is(ctx.Err(), context.Canceled) {
			c.Class = ClassUnknown
		}
		return c, outcomeExcluded
	}
	var (
		certErr   *tls.CertificateVerificationError
		authErr   x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invErr    x509.CertificateInvalidError
		recordErr tls.RecordHeaderError
		urlErr    *url.Error
		netErr    net.Error
	)
	switch fault := wireFaultOf(err); {
	case errors.As(err, &certErr), errors.As(err, &authErr), errors.As(err, &hostErr),
		errors.As(err, &invErr), errors.As(err, &recordErr), fault == faultFinal:
		// The server is not who it says, or will not talk to us over
		// this protocol: repeating will not help.
		c.Class = ClassUnknown
		c.BreakerFailure = true
		return c, outcomeFailure
	case fault == faultUnprocessed:
		// The server did not process the request and said so: repeat it,
		// and count nothing against the model.
		c.Class = ClassUpstreamTransient
		c.Retryable = true
		return c, outcomeExcluded
	case fault != faultNone:
		// Before any byte of a response (else the error would be the
		// body's): the LLM call is repeated like a reset over HTTP/1.1.
		c.Class = ClassUpstreamTransient
		c.Retryable = true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		c.Class = ClassUpstreamTransient
		c.Retryable = true
	case errors.As(err, &netErr) && netErr.Timeout():
		c.Class = ClassTimeout
		c.Retryable = true
	case errors.As(err, &urlErr) && urlErr.Op == "parse", isDNSNotFound(err):
		c.Class = ClassInvalidRequest
		return c, outcomeExcluded
	default:
		c.Class = ClassUpstreamTransient
	}
	c.BreakerFailure = true
	return c, outcomeFailure
}

func isDNSNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// run is the retry loop: it makes attempts until one succeeds, is not worth
// retrying, or a limit (retries, budget, wait cap, deadline, open circuit)
// says stop. It returns what goes back to the caller, the classification of
// the last attempt and the number of attempts sent. Every attempt, the
// first included, takes this one path: wait out the model's cooldown, take
// a request, be admitted by the circuit, attempt, report to the circuit.
func (c *call) run() (*http.Response, Classification, int, error) {
	t := c.t
	var (
		prev   *http.Response // the last response, kept (see keep) to hand back
		prevP  peek
		prevCl Classification
	)
	dropPrev := func() {
		if prev != nil {
			prevP.release()
			prev = nil
		}
	}
	for n := 0; ; n++ {
		var a attemptResult
		// A cooldown lengthened during the wait (another request's rate
		// limit, here or in the fleet) is waited out too, within the cap.
		for waited := time.Duration(0); ; {
			d := t.cooldowns.remaining(c.key, c.req)
			if d <= 0 || waited+d > c.maxRetryWait() || !fits(c.ctx, d) {
				break
			}
			c.trace.cooldownWait(d)
			if t.cfg.shared != nil && t.cooldowns.remote(c.key, c.req) {
				c.trace.remoteHold("cooldown", ClassRateLimited.String())
			}
			if err := sleep(c.ctx, d); err != nil {
				dropPrev()
				return nil, prevCl, n, err
			}
			waited += d
			c.rec.waited += d
		}
		if err := c.pace(); err != nil { // pacing.go: nothing is held after a wait given up
			dropPrev()
			return nil, prevCl, n, err
		}
		req, err := c.request(n)
		if err != nil {
			c.paceRelease()
			if prev != nil {
				return c.handBackKept(prev, &prevP, &prevCl), prevCl, n, nil
			}
			return nil, prevCl, n, fmt.Errorf("llmtransport: replaying the request body: %w", err)
		}
		if coe := c.admit(); coe != nil {
			c.paceRelease()
			// The circuit refused the attempt: the base never got its body,
			// which at attempt 0 is the caller's own, so close it here.
			if req.Body != nil {
				req.Body.Close()
			}
			c.trace.circuitRejected(coe)
			if prev != nil {
				return c.handBackKept(prev, &prevP, &prevCl), prevCl, n, nil
			}
			return nil, prevCl, n, coe
		}
		c.attempt(&a, req, n)
		c.attempted(&a)
		c.noteAttempt(&a) // outcome.go
		c.out, c.hint = a.out, circuitHint(&a.cl)
		if a.err == nil {
			dropPrev() // a newer response replaces it
		}
		if a.err == nil && a.out == outcomeSuccess && a.peek.buf == nil {
			// The common case, in short: nothing to retry, nothing
			// to put back.
			return a.resp, a.cl, n + 1, nil
		}
		// A rate limit's hint holds the model's other requests back too; a
		// hint above the cap is never waited for, so it is not shared.
		if a.err == nil && a.cl.Class == ClassRateLimited && a.cl.RetryAfter > 0 && a.cl.RetryAfter <= c.maxRetryWait() {
			cred := t.cooldowns.set(c.key, c.req, a.cl.RetryAfter)
			c.publishCooldown(cred, a.cl.RetryAfter, a.cl.Class.String())
		}
		wait, ok := c.decide(n, &a)
		if !ok {
			if a.err != nil {
				if prev != nil && c.ctx.Err() == nil {
					// A response came back before this transport error:
					// the caller gets that, the server's last word, and
					// an SDK above does not retry it again.
					return c.handBackKept(prev, &prevP, &prevCl), prevCl, n + 1, nil
				}
				dropPrev()
				return nil, a.cl, n + 1, a.err
			}
			if c.fb != nil && c.wantsKept(&a.cl) {
				keep(a.resp, &a.peek, 0) // a fallback may follow (fallback.go)
			}
			return c.handBack(a.resp, &a.peek, &a.cl), a.cl, n + 1, nil
		}
		if a.resp != nil {
			wait = keep(a.resp, &a.peek, wait)
			prev, prevP, prevCl = a.resp, a.peek, a.cl
		}
		c.rec.waited += wait
		if err := sleep(c.ctx, wait); err != nil {
			dropPrev()
			return nil, a.cl, n + 1, err
		}
	}
}

// errBodyCut ends the body of a response that was kept to be handed back
// after a retry, when its rest did not come during the wait before the
// retry or did not fit the peek (64 KiB): only the bytes read were kept.
var errBodyCut = errors.New("llmtransport: response body cut where the transport stopped reading it: the request was retried and only the bytes read were kept")

// keep readies resp, a response whose request is about to be retried after
// wait, to be handed back should no later attempt bring a response (only
// transport errors, or a refusal by the circuit), and returns how much of
// wait is left. A body the peek did not read to its end (an event stream
// whose first event was an error, an error body that stalls after what was
// peeked) is read on during the wait (at least minKeepRead), up to 64 KiB
// in all: the wait is spent anyway, and the rest of such a body (new-api's
// usage chunk and [DONE]) comes at once. What has not come when the wait is over is not
// waited for: the body is closed, which frees its connection for the retry
// (a transport with MaxConnsPerHost may need it), and the caller will read
// the bytes kept, then the read's error or errBodyCut. Keeping the body
// open through the retries instead would hold that connection.
func keep(resp *http.Response, p *peek, wait time.Duration) time.Duration {
	if !p.whole && p.buf != nil && p.err == nil {
		start := time.Now()
		p.readRest(resp.Body, max(wait, minKeepRead))
		wait -= time.Since(start)
	}
	resp.Body.Close()
	switch {
	case p.whole:
	case p.buf == nil: // not peeked (a 2xx the first-byte timer cut)
		err := p.err
		if err == nil {
			err = errBodyCut
		}
		resp.Body = &replayBody{err: err}
	case p.err == nil:
		p.err = errBodyCut
	}
	return wait
}

// minKeepRead is the least time keep reads on for: a wait before a retry
// can be jittered to nothing, and the rest of a body that is already on its
// way should still be kept. A retry is put off by at most this much, and
// only when the server holds the body open.
const minKeepRead = 10 * time.Millisecond

// readRest reads on from body into the peek's buffer until the body ends,
// the buffer is full, or d is over; then the body is closed, which ends a
// read that is waiting for the server. A body cut by d, or by the buffer,
// is left neither whole nor broken: keep says it was cut.
func (p *peek) readRest(body io.ReadCloser, d time.Duration) {
	var over atomic.Bool
	timer := time.AfterFunc(max(d, 0), func() {
		over.Store(true)
		body.Close()
	})
	defer timer.Stop()
	defer func() {
		if v := recover(); v != nil { // as in read: a broken io.Reader
			p.err = fmt.Errorf("llmtransport: response body panicked: %v", v)
		}
	}()
	b := *p.buf
	for p.n < len(b) {
		m, err := body.Read(b[p.n:])
		if m < 0 || m > len(b)-p.n {
			p.err = errBadRead
			return
		}
		p.n += m
		switch {
		case err == io.EOF:
			p.whole = true
			return
		case over.Load():
			return // the bytes read are kept; the rest was not waited for
		case err != nil:
			p.err = err
			return
		}
	}
}

// decide reports whether to retry after attempt n, and how long to wait
// first. Every limit is checked before the budget token is taken.
func (c *call) decide(n int, a *attemptResult) (time.Duration, bool) {
	t := c.t
	if n >= c.maxRetries() || !c.replayable || (a.err == nil && a.cl.Class == ClassSuccess) || c.ctx.Err() != nil {
		return 0, false
	}
	if c.fb != nil && !c.mayRetry(n, a) {
		return 0, false // the fallback chain's limits (fallback.go)
	}
	ev := RetryEvent{
		Host: c.key.host, Model: c.key.model, Attempt: n,
		Classification: a.cl, Err: a.err,
		WaitSource: "backoff", Reason: a.cl.Class.String(),
		Context: c.ctx, Request: c.req,
	}
	hint := a.cl.RetryAfter
	if hint > c.maxRetryWait() {
		return 0, false
	}
	ev.Wait = backoff(n, hint, t.cfg.backoffBase, t.cfg.backoffMax, c.maxRetryWait())
	if hint > 0 {
		ev.WaitSource = a.cl.RetryAfterSource
	}
	if a.resp != nil && !a.cl.Class.Retryable() && a.resp.Header.Get("X-Should-Retry") == "true" {
		ev.Reason = "x-should-retry"
	}
	// Retryable is the server's verdict; the cap on its hint is ours (above).
	retry := a.cl.Retryable
	if t.cfg.retryPolicy != nil {
		retry = t.cfg.retryPolicy(ev)
	}
	if !retry || !fits(c.ctx, ev.Wait) {
		return 0, false
	}
	if d := c.circ.OpenFor(); d > ev.Wait {
		// This attempt (or another request's) opened the circuit: the
		// retry would be refused, so hand back what we have now.
		c.trace.circuitRejected(&CircuitOpenError{Host: c.key.host, Model: c.key.model, RetryIn: d})
		return 0, false
	}
	if !t.budgets.of(c.key.host).retry() {
		c.trace.budgetExhausted()
		return 0, false
	}
	c.retries++
	if t.cfg.onRetry != nil {
		t.cfg.onRetry(ev)
	}
	c.trace.retryScheduled(&ev)
	return ev.Wait, true
}

// handBack prepares resp, the last response, to go back to the caller: its
// peeked bytes are put back in front of its body (a 2xx event stream's
// body is watched as it passes, see streamBody) and, when the transport
// retries, it carries X-Should-Retry: false so that an SDK above does not
// retry it again.
func (c *call) handBack(resp *http.Response, p *peek, cl *Classification) *http.Response {
	if isWatchable(resp, p, cl) {
		c.watchStream(resp, p) // streamwatch.go
	} else {
		p.restore(resp)
	}
	if cl.Class != ClassSuccess && c.maxRetries() > 0 {
		resp.Header.Set("X-Should-Retry", "false")
	}
	return resp
}

// handBackKept is handBack for a response kept through the attempts after
// it: the call's span, which its first body no longer holds open (keep
// closed it), waits for the body handed back.
func (c *call) handBackKept(resp *http.Response, p *peek, cl *Classification) *http.Response {
	resp = c.handBack(resp, p, cl)
	c.trace.rewatch(resp, &c.sec)
	return resp
}

// fits reports whether a wait of d ends before ctx's deadline.
func fits(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) > d
}

// sleep waits for d or until ctx is done, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
