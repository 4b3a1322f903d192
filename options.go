package llmtransport

import (
	"net/http"
	"time"
)

// Option configures a [Transport]. Options are applied in order by [New];
// each documents its default.
type Option func(*config)

// config is everything the options set. New copies it into the Transport.
type config struct {
	maxRetries      int
	maxRetryWait    time.Duration
	backoffBase     time.Duration
	backoffMax      time.Duration
	budgetRatio     float64
	budgetBurst     int
	maxBufferedBody int64
	firstByte       time.Duration
	noCooldowns     bool
	onRetry         func(RetryEvent)
	retryPolicy     func(RetryEvent) bool
	classifier      func(*http.Response, []byte) Classification

	breaker breakerConfig
	tracing tracingConfig
}

// Defaults of the retry options.
const (
	DefaultMaxRetries      = 3
	DefaultBackoffBase     = 500 * time.Millisecond
	DefaultBackoffMax      = 8 * time.Second
	DefaultBudgetRatio     = 0.2
	DefaultBudgetBurst     = 40
	DefaultMaxBufferedBody = 1 << 20
)

func newConfig(opts []Option) config {
	c := config{
		maxRetries:      DefaultMaxRetries,
		maxRetryWait:    DefaultMaxRetryWait,
		backoffBase:     DefaultBackoffBase,
		backoffMax:      DefaultBackoffMax,
		budgetRatio:     DefaultBudgetRatio,
		budgetBurst:     DefaultBudgetBurst,
		maxBufferedBody: DefaultMaxBufferedBody,
		breaker:         defaultBreakerConfig(),
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c
}

// WithMaxRetries sets how many times at most a request is retried after its
// first attempt. 0 disables retrying. The default is [DefaultMaxRetries] (3).
// Negative values are ignored.
func WithMaxRetries(n int) Option {
	return func(c *config) {
		if n >= 0 {
			c.maxRetries = n
		}
	}
}

// WithMaxRetryWait sets the longest server-requested wait that is honoured.
// A response asking for a longer wait is not retried: it goes back to the
// caller at once. No wait before a retry is longer: the jitter added to a
// hint, and the backoff without one, stop at it. The default is [DefaultMaxRetryWait] (120 s). Values ≤ 0
// are ignored.
func WithMaxRetryWait(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.maxRetryWait = d
		}
	}
}

// WithBackoff sets the exponential backoff used when the server gives no wait
// hint: before retry n (from 0) the transport waits a random duration in
// [0, min(max, base·2ⁿ)] ("full jitter"). The defaults are
// [DefaultBackoffBase] (0.5 s) and [DefaultBackoffMax] (8 s). Values ≤ 0 keep
// the default.
func WithBackoff(base, max time.Duration) Option {
	return func(c *config) {
		if base > 0 {
			c.backoffBase = base
		}
		if max > 0 {
			c.backoffMax = max
		}
	}
}

// WithRetryBudget bounds the retries of the calls to each host (upstream),
// so that a dead upstream under a burst is not hit by every call's every
// retry, as Envoy bounds retries per cluster. Each host has a bucket of
// burst tokens (it starts full): every retry takes one; a call that ends in
// success gives back the tokens its retries took, or adds ratio of a token
// when it needed none. Retries that work cost nothing, a lone request
// always has its retries, a burst of N calls to a dead upstream makes at
// most N + burst attempts, and a dead host never takes another host's
// retries. Beyond 1,024 hosts, further hosts share one bucket. The defaults are
// [DefaultBudgetRatio] (0.2) and [DefaultBudgetBurst] (40). A ratio or burst
// ≤ 0 disables the budget.
func WithRetryBudget(ratio float64, burst int) Option {
	return func(c *config) {
		c.budgetRatio = ratio
		c.budgetBurst = burst
	}
}

// WithMaxBufferedBody sets how large a request body without GetBody may be
// for the transport to buffer it (once) so that it can be retried. A larger
// body is streamed through once and not retried. Bodies with GetBody (those
// made by [net/http.NewRequest] from a bytes.Buffer, bytes.Reader or
// strings.Reader, and every SDK's) are never copied. The default is
// [DefaultMaxBufferedBody] (1 MiB); 0 disables buffering.
func WithMaxBufferedBody(n int64) Option {
	return func(c *config) {
		if n >= 0 {
			c.maxBufferedBody = n
		}
	}
}

// WithFirstByteTimeout bounds each attempt's wait for its response headers
// (and, for a 200 event stream, its first event). An attempt that times out
// is classified as timeout and retried like one. The default is 0: no limit
// besides the request's context. It bounds nothing else: the body of an
// error response, read (at most 64 KiB) to classify it, may come after its
// headers and is then bounded by the request's context only, and so are
// the bodies the caller reads.
func WithFirstByteTimeout(d time.Duration) Option {
	return func(c *config) {
		if d >= 0 {
			c.firstByte = d
		}
	}
}

// WithoutCooldowns turns off the sharing of rate-limit waits between
// requests. By default, a 429 whose wait hint the transport would honour
// (see [WithMaxRetryWait]) holds back the other requests for the same host,
// model and API key until the wait is over (the key is told apart by a
// fingerprint kept in memory only); with this option each request learns
// of the rate limit on its own. Retries still wait for their own
// response's hint.
func WithoutCooldowns() Option {
	return func(c *config) { c.noCooldowns = true }
}

// WithOnRetry sets a function called before each retry wait, on the
// caller's goroutine. It must not block. The default is none.
func WithOnRetry(f func(RetryEvent)) Option {
	return func(c *config) { c.onRetry = f }
}

// WithRetryPolicy replaces the decision whether to retry a failed attempt.
// f sees the attempt's classification (or transport error) and the wait the
// transport would honour; it reports whether to retry. The caps still apply:
// f is not asked when retries, the budget or the deadline are exhausted.
// The default retries exactly what [Classify] marks retryable (within
// [WithMaxRetryWait]) and transport errors that are safe to repeat.
func WithRetryPolicy(f func(RetryEvent) bool) Option {
	return func(c *config) { c.retryPolicy = f }
}

// WithClassifier replaces [Classify] for this transport, for gateways whose
// errors need rules of their own. f gets the response and up to 64 KiB of its
// body, decoded when the base transport left it gzip- or deflate-encoded
// (resp.Header still says how it came); it must not read resp.Body. The
// default is Classify.
func WithClassifier(f func(resp *http.Response, body []byte) Classification) Option {
	return func(c *config) { c.classifier = f }
}

// WithoutCircuitBreaker turns the per-model circuit breaker off. By default
// it is on.
func WithoutCircuitBreaker() Option {
	return func(c *config) { c.breaker.disabled = true }
}
