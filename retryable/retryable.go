// Package retryable makes go-retryablehttp ([github.com/hashicorp/go-retryablehttp])
// and llmtransport work together, each doing what it is for: llmtransport,
// as the Transport of the retryablehttp.Client's HTTPClient, classifies,
// retries, opens circuits and falls back; retryablehttp above it keeps its
// API (its Request, hooks, logger) without multiplying the attempts.
//
// Stacked with go-retryablehttp's defaults, a call to a gateway that
// answers 500 costs 5 × (1 + N) upstream requests (N being llmtransport's
// retries), an insufficient_quota 429 is sent five times (retryablehttp
// retries 429s and ignores X-Should-Retry: false), and an open circuit is
// retried for seconds and comes back as "giving up after 5 attempt(s)". With
// [CheckRetry] and [Backoff] (or simply [NewClient]):
//
//   - a response llmtransport handed back after its retries (marked
//     X-Should-Retry: false) is never retried again: 1 + N requests in all;
//   - an error of an open circuit ([llmtransport.ErrCircuitOpen]) is never
//     retried, and errors.Is finds it in the error the caller gets;
//   - any other response is retried only when [classify.Classify] says it is
//     worth it (rate_limited, overloaded, upstream_transient, timeout, or
//     x-should-retry: true), after at least the wait the server asked for;
//     quota, auth and request errors are not;
//   - a transport error is not retried: llmtransport below already retried
//     those worth it.
//
// Without llmtransport below (any http.RoundTripper), CheckRetry and Backoff
// still retry by classification, honour the server's X-Should-Retry and its
// wait hints, and leave transport errors alone.
package retryable

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/classify"
)

// MaxWait is the longest wait a server can ask for and still be retried by
// [CheckRetry]: a hint above it (a per-day limit, a cooldown of an hour) is
// handed back at once, as llmtransport does with its default
// [llmtransport.DefaultMaxRetryWait].
const MaxWait = llmtransport.DefaultMaxRetryWait

// CheckRetry is a [retryablehttp.CheckRetry] for a Client whose HTTPClient
// goes through an llmtransport Transport (see the package documentation):
//
//   - the caller's context done: not retried, its error returned (as
//     go-retryablehttp's own policies do);
//   - any error (an open circuit, a transport error llmtransport already
//     retried): not retried, nor replaced, so errors.Is(err,
//     llmtransport.ErrCircuitOpen) holds in what the caller gets;
//   - a 2xx or 3xx response: not retried, its body untouched;
//   - X-Should-Retry: false: not retried (llmtransport's last word, or the
//     server's);
//   - otherwise the first [classify.MaxPeek] bytes of the body are read and
//     put back in front of the rest (the caller reads the body intact), and
//     the response is retried when [classify.Classify] finds it Retryable
//     and its wait hint is at most [MaxWait] and ends before the context's
//     deadline.
//
// It never returns an error of its own.
func CheckRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil || resp == nil {
		return false, nil
	}
	if resp.StatusCode < 400 || resp.Header.Get("X-Should-Retry") == "false" {
		return false, nil
	}
	cl := peekClassify(resp)
	if !cl.Retryable || cl.RetryAfter > MaxWait {
		return false, nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= cl.RetryAfter {
		return false, nil
	}
	return true, nil
}

// Backoff is a [retryablehttp.Backoff] to go with [CheckRetry]: the wait
// the server asked for when it asked (Retry-After, retry-after-ms,
// x-ratelimit-reset-*, anthropic-ratelimit-*-reset, Gemini's retryDelay,
// "try again in 1.5s"…: whatever [classify.Classify] reads), never less;
// else an exponential backoff from minWait, doubling per attempt up to maxWait, with
// jitter (each wait between 75 % and 100 % of its step). go-retryablehttp
// drains the body before it asks for the wait: the hint of the body is the
// one CheckRetry read.
func Backoff(minWait, maxWait time.Duration, attemptNum int, resp *http.Response) time.Duration {
	if resp != nil {
		var cl classify.Classification
		if pb, ok := resp.Body.(*peekedBody); ok {
			cl = pb.cl
		} else if resp.StatusCode >= 400 {
			cl = classify.Classify(resp, nil) // the headers' hints
		}
		if cl.RetryAfter > 0 {
			return cl.RetryAfter
		}
	}
	if minWait <= 0 {
		minWait = llmtransport.DefaultBackoffBase
	}
	maxWait = max(maxWait, minWait)
	step := minWait
	for range min(attemptNum, 62) {
		step *= 2
		if step >= maxWait || step <= 0 {
			step = maxWait
			break
		}
	}
	return step - time.Duration(rand.Int64N(int64(step)/4+1))
}

// NewClient returns a go-retryablehttp Client over rt (an llmtransport
// [llmtransport.Transport], usually) set up as the package documentation
// recommends: [CheckRetry] and [Backoff], retryablehttp.PassthroughErrorHandler
// (the last response and the transport's error come back as they are, not
// as "giving up after n attempt(s)"), no logger (llmtransport's spans,
// metrics and hooks report the retries). RetryMax stays go-retryablehttp's
// default (4): over an llmtransport with retries (the default), CheckRetry
// retries nothing it handed back, so RetryMax only counts when the
// Transport has WithMaxRetries(0) and go-retryablehttp is the retry layer
// (by classification, with the hints; transport errors then are not
// retried by either).
//
// Its HTTPClient hides rt's CloseIdleConnections from go-retryablehttp,
// which calls it each time a call ends in an error (an open circuit, for
// one) and so would throw away the pooled connections of every other
// request. Call rt.CloseIdleConnections yourself when you mean it.
func NewClient(rt http.RoundTripper) *retryablehttp.Client {
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{Transport: keepIdle{rt}}
	c.Logger = nil
	c.CheckRetry = CheckRetry
	c.Backoff = Backoff
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return c
}

// keepIdle is a RoundTripper without CloseIdleConnections.
type keepIdle struct{ rt http.RoundTripper }

func (k keepIdle) RoundTrip(r *http.Request) (*http.Response, error) { return k.rt.RoundTrip(r) }

// peekClassify classifies resp from the first classify.MaxPeek bytes of its
// body, and puts them back in front of the rest.
func peekClassify(resp *http.Response) classify.Classification {
	if pb, ok := resp.Body.(*peekedBody); ok {
		return pb.cl
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		return classify.Classify(resp, nil)
	}
	head, err := io.ReadAll(io.LimitReader(resp.Body, classify.MaxPeek))
	pb := &peekedBody{r: io.MultiReader(bytes.NewReader(head), resp.Body), c: resp.Body}
	if err != nil {
		pb.r = io.MultiReader(bytes.NewReader(head), errReader{err}) // the caller sees the read fail where it failed
	}
	pb.cl = classify.Classify(resp, head)
	resp.Body = pb
	return pb.cl
}

// peekedBody is a response body whose first bytes were read to classify
// it: they are read again first. It carries the classification to Backoff.
type peekedBody struct {
	r  io.Reader
	c  io.Closer
	cl classify.Classification
}

func (p *peekedBody) Read(b []byte) (int, error) { return p.r.Read(b) }
func (p *peekedBody) Close() error               { return p.c.Close() }

// errReader always fails with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
