package llmtransport

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
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
	shared          SharedState // nil: none (WithSharedState)
	pacing          bool
	onRetry         func(RetryEvent)
	retryPolicy     func(RetryEvent) bool
	classifier      func(*http.Response, []byte) Classification
	onOutcome       func(context.Context, Outcome) // outcome.go

	breaker  breakerConfig
	tracing  tracingConfig
	fallback fallbackConfig // fallback.go
}

// Defaults of the retry options. DefaultMaxRetryWait matches the cap of
// openai-python.
const (
	DefaultMaxRetryWait    = 120 * time.Second
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
		fallback:        fallbackConfig{retries: DefaultFallbackRetries},
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
// success on that host gives back the tokens its retries took there, or
// adds ratio of a token when it needed none (the retries of a model a
// fallback chain left are kept: that host did not answer). Retries that work cost nothing, a lone request
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

// WithPacing turns on pacing: the transport slows requests down before a
// rate limit answers 429 rather than after. It is off by default.
//
// The transport learns each rate limit, per host, model and API key (told
// apart by a fingerprint, as the cooldowns are), from the rate-limit
// headers of every response, 429s included: OpenAI's, Groq's and Azure's
// x-ratelimit-{limit,remaining,reset}-{requests,tokens} (Azure's
// x-rate-limit-reset-* too) and Anthropic's
// anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
// {limit,remaining,reset}. It estimates what each request costs as the
// servers do: 1 request; ⌈body bytes / 4⌉ input tokens (the whole body
// stands in for the prompt, a slight overestimate); n × max output tokens
// (the largest of the body's top-level max_tokens, max_completion_tokens
// and max_output_tokens, 0 when it names none; n from the body, else 1),
// read in the scan that finds the model, not a second one. It reserves
// that cost for the requests in flight. Before each attempt, when what the
// server said is left, less what the requests in flight reserved, does not
// cover the request, it waits for the window to be whole again, then asks
// again.
//
// The rules:
//   - Unknown never paces: headers absent, -1 or 0 placeholders, a
//     remaining above the limit, a reset missing, in the past or more than
//     a day away, a request that costs more than a whole window: the
//     request goes at once.
//   - A wait is bounded like a retry's: all of an attempt's pacing waits
//     together at most [WithMaxRetryWait], and none past the request's
//     deadline. A longer wait is not taken: the attempt goes at once (its
//     cost reserved all the same) and the server decides.
//   - Responses of concurrent calls arrive out of order: an older
//     response never raises what is left within a window.
//   - A request that got no response (a transport error, a cancellation)
//     stays counted until a later response reports what is left; one that
//     was never sent (refused by its circuit, a body that could not be
//     replayed, a caller that gave up while waiting) gives its cost back.
//   - Far from the limit (at least half of every known limit left after
//     what is in flight, lost or unread, in a window not passed), the
//     rate-limit headers of one success in eight are read; the others
//     count as using what they were estimated to, until a response that
//     surely includes them is read. Every other response is read.
//
// Each wait is recorded as a span event "paced" (llm.pacing.wait, in
// seconds, and llm.pacing.waited) and in [MetricPacingWait];
// [Transport.Limits] returns what was learned. Pacing costs one scan of
// the body's top level (the model scan otherwise stops at "model"; a body
// whose first member is "model", a string without escapes, and that has
// no '_', written or as \u005f, so no max_* key, is not scanned) and a
// few arithmetic steps under a per-key lock per attempt; at most 16,384
// keys are tracked (~13 MB): when they are all in use, idle ones with
// room are forgotten for a new key, and a key beyond keys in flight or
// near their limits is not paced.
//
// It paces the requests of one Transport only: processes that share a
// limit do not see each other's requests, except through what the server
// reports. With [WithSharedState] on a state that implements
// [SharedLimiter] (redisstate with redisstate.WithLimiter), a fleet-wide
// limiter counts every process's requests against the rates learned here,
// at the price of one round trip to the store per attempt that pacing
// admits once a rate is known; its waits follow the rules above, and a
// store that fails or does not answer within its timeout lets the request
// go (see SharedLimiter).
func WithPacing() Option {
	return func(c *config) { c.pacing = true }
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

// The circuit breaker options.

// Defaults of the circuit breaker options.
//
// Every (host, model) pair the transport sends requests to has its own
// circuit, so that one failing model fails fast while every other model
// behind the same gateway keeps working. The model is read from the request
// (see [ContextWithModel]); requests without one share a per-host circuit.
//
// What a circuit judges is calls, not attempts: the outcome of a call is
// known once its retries are over. A call that ends in a success is a
// success, however many of its attempts failed: a model whose failures the
// retries rescue is healthy. A call that ends on a failure of the model
// (overloaded, upstream_transient, timeout, model_not_found, unknown, or a
// transport error that says the server or the path to it failed) is a
// failure. Every other ending says nothing about the model and counts as
// neither: the caller's own errors (invalid_request, auth, permission,
// context_length, content_filtered, quota_exhausted), rate limits (which the
// cooldowns handle), and the caller's cancellations and deadlines, at any
// point of the call. The outcome is known once the response headers (and,
// for an error or an event stream, the peeked start of the body) are in, so
// a response whose body the caller never reads still reports it.
//
// Calls still in flight count too, as calls that have not failed: a closed
// circuit opens when at least [DefaultBreakerMinFailures] (3) calls failed
// in the last [DefaultBreakerWindow] (30 s, rolling in tenths) and they are
// at least [DefaultBreakerFailureRatio] (50 %) of the calls that succeeded,
// failed or are still in flight. Fast failures come back before slow
// successes; counting the calls in flight keeps a wave of 200 calls whose
// first six answers are quick 503s from looking like a dead model (6 of 200
// is 3 %, not 6 of 6), while a model that fails every call is cut off after
// three calls in a row at one call at a time (12 attempts with the default
// retries) and within the first wave of attempts of 200 concurrent calls.
//
// An open circuit refuses requests at once, with a [*CircuitOpenError], for
// [DefaultBreakerOpenTimeout] (10 s) or for the longest wait the server
// asked for (Retry-After and the like) with the failures that opened it or
// arrived while it was open, whichever is longer. Then it is half-open: it
// lets [DefaultBreakerProbes] (1) attempt through as a probe; a successful
// probe closes it, a failed one opens it again, and a probe whose outcome
// says nothing (a cancellation) frees its place for the next.
//
// Circuits are created on first use and cost about 700 bytes each. Closed
// circuits unused for 10 minutes or more are dropped when a new circuit is
// created; at most 10,000 circuits are kept, and requests for further
// models go through without a circuit.
const (
	DefaultBreakerFailureRatio = 0.5
	DefaultBreakerMinFailures  = 3
	DefaultBreakerWindow       = 30 * time.Second
	DefaultBreakerOpenTimeout  = 10 * time.Second
	DefaultBreakerProbes       = 1
)

// breakerConfig holds the circuit breaker options.
type breakerConfig struct {
	disabled bool

	ratio       float64       // trip at this failure ratio; 0: never
	minFailures int           // ... once this many calls failed in the window
	window      time.Duration // the rolling window of the counts
	openTimeout time.Duration // the shortest open period
	probes      int           // requests let through while half-open

	// observers are called, outside every lock, on the goroutine of the
	// request whose outcome changed the state, with that request's context.
	observers []func(context.Context, CircuitStateChange)
}

func defaultBreakerConfig() breakerConfig {
	return breakerConfig{
		ratio:       DefaultBreakerFailureRatio,
		minFailures: DefaultBreakerMinFailures,
		window:      DefaultBreakerWindow,
		openTimeout: DefaultBreakerOpenTimeout,
		probes:      DefaultBreakerProbes,
	}
}

// WithBreakerThreshold sets when a closed circuit opens: once at least
// minFailures calls failed within the window (see [WithBreakerWindow]) and
// the failures are at least the fraction ratio of the calls that succeeded,
// failed or are still in flight. ratio ≤ 0 means never (a ratio above 1 is
// treated as 1); minFailures < 1 counts as 1. The defaults are
// [DefaultBreakerFailureRatio] (0.5) and [DefaultBreakerMinFailures] (3).
func WithBreakerThreshold(ratio float64, minFailures int) Option {
	return func(c *config) {
		c.breaker.ratio = min(max(ratio, 0), 1)
		c.breaker.minFailures = max(minFailures, 1)
	}
}

// WithBreakerWindow sets the rolling window over which a closed circuit
// counts the outcomes of calls; it rolls in tenths. The default is
// [DefaultBreakerWindow] (30 s). Values ≤ 0 are ignored.
func WithBreakerWindow(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.breaker.window = d
		}
	}
}

// WithBreakerOpenTimeout sets how long an open circuit refuses requests
// before it lets a probe through. A server's wait hint on the failure that
// opened the circuit lengthens the period (up to a day), never shortens it.
// The default is [DefaultBreakerOpenTimeout] (10 s). Values ≤ 0 are
// ignored.
func WithBreakerOpenTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.breaker.openTimeout = d
		}
	}
}

// WithBreakerProbes sets how many requests a half-open circuit lets
// through; it closes once that many succeed in a row, and opens again at the
// first failure. The default is [DefaultBreakerProbes] (1). Values < 1 are
// ignored.
func WithBreakerProbes(n int) Option {
	return func(c *config) {
		if n >= 1 {
			c.breaker.probes = n
		}
	}
}

// WithOnCircuitStateChange adds a function called whenever a circuit
// changes state. It is called outside every lock, on the goroutine of a
// request that reached the circuit (normally the one whose outcome or
// arrival caused the change), so it may call back into the transport, for
// instance [Transport.Circuits]; it should not block, as that request waits
// for it. The changes of one circuit are reported in order, one at a time.
// Several calls add several functions; a nil f is ignored. The default is
// none.
func WithOnCircuitStateChange(f func(CircuitStateChange)) Option {
	return func(c *config) {
		if f != nil {
			c.breaker.observers = append(c.breaker.observers, func(_ context.Context, ch CircuitStateChange) { f(ch) })
		}
	}
}

// The OpenTelemetry options.

// tracingConfig holds the OpenTelemetry options.
type tracingConfig struct {
	tp   trace.TracerProvider
	mp   metric.MeterProvider
	prop propagation.TextMapPropagator
}

// WithTracerProvider sets the provider of the tracer that records the spans.
// The default (and a nil tp) is the global provider, otel.GetTracerProvider.
//
// Each call gets a client span named after its GenAI operation and model
// ("chat gpt-4o") covering every attempt and wait, with one HTTP client
// span per attempt beneath it (named by the method, "POST"). The call's
// span ends when the caller has read the final response body to its end
// or closed it. Attempt spans are started only when the call's span is
// recording (sampled). No header and no secret is recorded: url.full has
// its userinfo removed and credential query parameters replaced by
// REDACTED, and error messages have API-key-like strings masked.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) {
		if tp != nil {
			c.tracing.tp = tp
		}
	}
}

// WithMeterProvider sets the provider of the meter that records the
// transport's metrics (MetricAttempts and the others). The default (and a
// nil mp) is the global provider, otel.GetMeterProvider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) {
		if mp != nil {
			c.tracing.mp = mp
		}
	}
}

// WithPropagators sets the propagator that injects the trace context (the
// traceparent header, for the W3C Trace Context propagator) into every
// attempt, so that a gateway that traces can join the trace. The default
// (and a nil p) is the global propagator, otel.GetTextMapPropagator, which
// injects nothing until the application sets one.
func WithPropagators(p propagation.TextMapPropagator) Option {
	return func(c *config) {
		if p != nil {
			c.tracing.prop = p
		}
	}
}

// The fleet option.

// WithSharedState shares the transport's holds with the other processes of
// a fleet through s (package github.com/llmtransport/llmtransport/redisstate
// implements it on Redis): replicas behind one API key or one gateway then
// learn of a rate limit, or of a model that fails, from the first of them
// that sees it. The default (and a nil s) is none: every process learns on
// its own.
//
// What is shared is only what a server said: a 429 whose wait hint the
// transport honours (a cooldown of the host, model and credential, the
// credential named by s.Fingerprint), a circuit opened by failures the
// server classified (never by transport errors, which may be this
// process's alone), and the success of the probe that ends it. A hold from
// another process acts like the local one, with a little positive jitter:
// a cooldown is waited out within [WithMaxRetryWait] and the deadline, an
// open circuit fails calls at once with [ErrCircuitOpen]; when it ends,
// only the process the fleet grants the probe lease to (s.Lease) sends a
// probe, and the others keep holding until its outcome, or the lease's
// end. Holds only extend: a shorter one never shortens a longer one.
//
// No request waits for s: holds are handed to s.Publish, which must not
// block, and received by s.Subscribe's goroutine; the one call that finds
// a fleet-held circuit at the end of its hold asks s.Lease, bounded by its
// context and by one second (a store that does not answer grants the
// lease). [Transport.Close] stops the subscription. A transport without
// live holds costs what it costs without s. With [WithoutCooldowns],
// cooldowns are neither published nor applied; with
// [WithoutCircuitBreaker], open holds are neither. Give each Transport of
// a process its own s, or share one Transport: the fleet knows processes
// by their s, and two Transports on one s both probe.
//
// With [WithPacing], and s implementing [SharedLimiter] (switched on in
// redisstate by redisstate.WithLimiter), the fleet also shares a rate
// limiter: before each attempt its pacing admits, the transport asks
// s.Reserve, one round trip to the store, and waits what it answers
// within the same rules as pacing's own waits: requests then do wait for
// the store, each at most the implementation's timeout (a store that
// fails or is slow lets them go).
func WithSharedState(s SharedState) Option {
	return func(c *config) { c.shared = s }
}

// The fallback options.

// WithFallbacks sets fallback chains: when a call for model M cannot be
// answered by M, the transport sends the same request with the model
// replaced by the first target of chains[M] that can take it, then the
// next, and so on: same host, same headers, same everything else, the
// model rewritten where the transport read it (the top-level "model" of a
// JSON body, in a new body made once for the target; a Gemini, Vertex or
// Azure path; a model= query parameter). The caller's request and body are
// never modified. A target may go to another host or key through
// [WithFallbackRoute]. The chains are not followed recursively: a
// target's own chain is not used.
//
// What triggers a fallback is the class of M's last attempt, never its
// status:
//
//   - at once, with no attempt to M, when M's circuit is open
//     ("circuit_open") or a rate limit's cooldown is running for M
//     ("cooldown"; should no target answer, M is then tried after all:
//     once its cooldown is over, or at once when the cooldown is past the
//     cap or the deadline, as any cooldown);
//   - once M's retries stopped (exhausted, refused by the retry budget,
//     a wait above [WithMaxRetryWait] or past the deadline) on
//     rate_limited, overloaded, upstream_transient or timeout, and on a
//     transport error of those classes (a refused connection, a reset);
//   - at once on model_not_found, and on a quota_exhausted that is the
//     model's (a Google per-day or zero quota, which counts against the
//     model's circuit);
//   - at once on a first-byte timeout ([WithFirstByteTimeout]): M is not
//     retried, the next target is tried (time-to-first-token failover);
//   - on context_length, content_filtered, an account's quota_exhausted
//     and the other classes only when [WithFallbackOn] adds them.
//
// Never on invalid_request, auth or permission (the request, or the key,
// is wrong: another model will not fix it), an account-level
// quota_exhausted (same key, same wall), or the caller's cancellation or
// deadline. A stream falls back only before its first event with output
// reaches the caller (lifecycle events such as response.created carry
// none): after that the stream is the caller's, errors included.
//
// Each target goes through its own circuit and cooldown: a target whose
// circuit is open or whose cooldown is running is skipped without an
// attempt. The whole chain has one deadline (the request's context) and
// one retry allowance: [WithMaxRetries] retries in all, M's included, and
// at most [WithFallbackRetries] (1) for each target, so that a chain of
// k targets makes at most 1 + k + [WithMaxRetries] attempts (6 with two
// targets and the defaults), never (1 + retries) × (1 + k). Retries also
// take tokens from each host's retry budget as usual.
//
// A target that answers gives the caller its response with the headers
// [HeaderModel], [HeaderFallbackFrom] and [HeaderFallbackReason] (see
// [FallbackOf]); each step is a span event "fallback" (llm.fallback.from,
// llm.fallback.to, llm.error.class), counted in [MetricFallbacks] and
// passed to [WithOnFallback]. When every target fails, the caller gets a
// real response, never a made-up one: M's last response when it gave one,
// else the last target's, with X-Should-Retry: false; an error
// ([ErrCircuitOpen], a transport error, the context's) only when no target
// gave a response.
//
// A body too large to buffer ([WithMaxBufferedBody]) without GetBody is
// sent once and never falls back; a body with GetBody is read once more
// for the first fallback. The default is no chains. WithFallbacks replaces
// the chains of an earlier call; the map is copied.
func WithFallbacks(chains map[string][]string) Option {
	return func(c *config) {
		c.fallback.chains = nil
		for m, targets := range chains {
			if len(targets) == 0 {
				continue
			}
			if c.fallback.chains == nil {
				c.fallback.chains = make(map[string][]string, len(chains))
			}
			c.fallback.chains[m] = append([]string(nil), targets...)
		}
	}
}

// WithFallbackOn adds classes that trigger a fallback ([WithFallbacks])
// besides the defaults: typically [ClassContextLength] (with a chain to a
// model with a larger context window) and [ClassContentFiltered], or
// [ClassQuotaExhausted] for every quota when a target routes to another
// account ([WithFallbackRoute]). [ClassSuccess], [ClassInvalidRequest],
// [ClassAuth] and [ClassPermission] are ignored: they never trigger one.
// The default adds none.
func WithFallbackOn(classes ...Class) Option {
	return func(c *config) {
		for _, cl := range classes {
			switch cl {
			case ClassSuccess, ClassInvalidRequest, ClassAuth, ClassPermission:
			default:
				if cl <= ClassUnknown {
					c.fallback.on |= 1 << cl
				}
			}
		}
	}
}

// WithFallbackRetries sets how many times at most each fallback target
// is retried; the chain as a whole still makes at most [WithMaxRetries]
// retries. The default is [DefaultFallbackRetries] (1); 0 gives each
// target one attempt. Negative values are ignored.
func WithFallbackRetries(n int) Option {
	return func(c *config) {
		if n >= 0 {
			c.fallback.retries = n
		}
	}
}

// WithFallbackRoute makes name, written as a target in a chain of
// [WithFallbacks], a target on another host, gateway or account: the
// request is rewritten to ask for model, then redirect gets a copy of it
// (its own URL and headers, safe to modify) and changes what it needs:
// URL.Scheme and URL.Host (and Host), the path prefix, the Authorization
// header. The target's circuit and cooldown are those of the host the
// redirected request goes to and model. redirect must not read or replace
// the body, which the transport sets for each attempt. A nil redirect
// only renames: the target asks for model on the same host. An empty model
// is name.
func WithFallbackRoute(name, model string, redirect func(r *http.Request)) Option {
	if model == "" {
		model = name
	}
	return func(c *config) {
		if c.fallback.routes == nil {
			c.fallback.routes = make(map[string]fallbackRoute)
		}
		c.fallback.routes[name] = fallbackRoute{model: model, redirect: redirect}
	}
}

// WithOnFallback sets a function called before each step down a fallback
// chain, on the caller's goroutine. It must not block. The default is
// none.
func WithOnFallback(f func(FallbackEvent)) Option {
	return func(c *config) { c.fallback.hook = f }
}
