package llmtransport

import (
	"cmp"
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

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

// Registry limits (not options; tests lower them through breakerConfig).
const (
	defaultCircuitIdleAfter = 10 * time.Minute
	defaultMaxCircuits      = 10000
	// minForcedSweep is the shortest time between two sweeps forced by a
	// full registry.
	minForcedSweep = time.Second
)

// circuitKey names one circuit: the host the request goes to and the model it
// asks for ("" for a per-host circuit).
type circuitKey struct {
	host, model string
}

// outcome is what an attempt means to its circuit.
type outcome uint8

const (
	outcomeSuccess  outcome = iota // the model answered
	outcomeFailure                 // the model (or the path to it) is failing
	outcomeExcluded                // says nothing about the model's health
)

// CircuitState is the state of one circuit.
type CircuitState uint8

// The circuit states.
const (
	CircuitClosed   CircuitState = iota // requests flow
	CircuitHalfOpen                     // a bounded number of probes flow
	CircuitOpen                         // requests fail fast with ErrCircuitOpen
)

// String returns "closed", "half-open" or "open".
func (s CircuitState) String() string {
	switch s {
	case CircuitClosed:
		return "closed"
	case CircuitHalfOpen:
		return "half-open"
	case CircuitOpen:
		return "open"
	}
	return "unknown"
}

// CircuitStateChange describes one circuit changing state.
type CircuitStateChange struct {
	// Host and Model name the circuit. Model is "" for a per-host circuit.
	Host, Model string
	// From and To are the states before and after the change.
	From, To CircuitState
}

// CircuitStatus is a snapshot of one circuit, as returned by
// [Transport.Circuits].
type CircuitStatus struct {
	// Host and Model name the circuit. Model is "" for a per-host circuit.
	Host, Model string
	// State is the circuit's state. An open circuit whose open period has
	// passed is reported half-open: the next request will be a probe.
	State CircuitState
	// RetryIn is, for an open circuit, how long until it lets the next probe
	// through; 0 otherwise.
	RetryIn time.Duration
	// The counts of the current state: for a closed circuit, the calls that
	// ended over the rolling window, now; for a half-open one, the probes
	// since it became half-open. Requests counts, for a closed circuit, the
	// calls whose outcome is in, and for a half-open one the admitted probes,
	// including those still in flight; Excluded counts outcomes that were
	// neither success nor failure.
	Requests, Successes, Failures, Excluded uint32
	// InFlight is, for a closed circuit, the number of calls it admitted
	// whose outcome is not in yet.
	InFlight uint32
}

// breakerConfig holds the circuit breaker options.
type breakerConfig struct {
	disabled bool

	ratio       float64       // trip at this failure ratio; 0: never
	minFailures int           // ... once this many calls failed in the window
	window      time.Duration // the rolling window of the counts
	openTimeout time.Duration // the shortest open period
	probes      int           // requests let through while half-open

	idleAfter   time.Duration // closed circuits unused this long may be dropped
	maxCircuits int           // the most circuits kept

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
		idleAfter:   defaultCircuitIdleAfter,
		maxCircuits: defaultMaxCircuits,
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
// opened the circuit lengthens the period, never shortens it. The default is
// [DefaultBreakerOpenTimeout] (10 s). Values ≤ 0 are ignored.
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

// Circuits returns a snapshot of every circuit of the transport, sorted by
// host and model, for dashboards and tests. It returns nil when the circuit
// breaker is off ([WithoutCircuitBreaker]). It is safe to call at any time,
// including from a [WithOnCircuitStateChange] function.
func (t *Transport) Circuits() []CircuitStatus {
	return t.circuits.snapshot()
}

// The errors a circuit's attempt reports to gobreaker for each outcome.
var (
	errOutcomeFailure  = &outcomeError{"failure"}
	errOutcomeExcluded = &outcomeError{"excluded"}
	outcomeErrs        = [...]error{outcomeSuccess: nil, outcomeFailure: errOutcomeFailure, outcomeExcluded: errOutcomeExcluded}
)

type outcomeError struct{ s string }

func (e *outcomeError) Error() string { return "llmtransport: attempt outcome " + e.s }

// numShards is the number of registry shards. Inserting a circuit copies
// one shard's map, so sharding keeps that cheap for thousands of models.
const numShards = 32

// shard is one part of the registry: its circuits, and the one found last,
// checked before the map since most requests go to the same few models.
type shard struct {
	m    atomic.Pointer[map[circuitKey]*circuit]
	last atomic.Pointer[circuit]
}

// circuits is the per-(host, model) registry of circuit breakers. Lookups
// are lock-free: each shard is an immutable map behind an atomic pointer,
// replaced (copy on write) when a circuit is added or dropped.
type circuits struct {
	cfg      breakerConfig
	epoch    time.Time // now() counts from here, on the monotonic clock
	bucket   int64     // the length of a tenth of the window, in ns
	settings gobreaker.Settings
	shards   [numShards]shard

	// mu serialises the writers of shards.
	mu        sync.Mutex
	count     int   // circuits in shards
	lastSweep int64 // now() of the last sweep
}

func newCircuits(cfg breakerConfig) *circuits {
	d := defaultBreakerConfig()
	cfg.window = cmp.Or(cfg.window, d.window)
	cfg.openTimeout = cmp.Or(cfg.openTimeout, d.openTimeout)
	cfg.probes = max(cfg.probes, 1)
	cfg.minFailures = max(cfg.minFailures, 1)
	cfg.idleAfter = cmp.Or(cfg.idleAfter, d.idleAfter)
	cfg.maxCircuits = cmp.Or(cfg.maxCircuits, d.maxCircuits)
	r := &circuits{cfg: cfg, epoch: time.Now(), bucket: int64(max(cfg.window/windowBuckets, time.Millisecond))}
	r.settings = gobreaker.Settings{
		MaxRequests: uint32(cfg.probes),
		Timeout:     cfg.openTimeout,
		IsExcluded:  func(err error) bool { return err == errOutcomeExcluded },
	}
	return r
}

// now is the time on the monotonic clock, in nanoseconds since r.epoch.
func (r *circuits) now() int64 { return int64(time.Since(r.epoch)) }

// windowBuckets is the number of buckets of a closed circuit's rolling
// window.
const windowBuckets = 10

// noBucket is the stamp of a cleared bucket: older than any window.
const noBucket = math.MinInt64

// bucket counts the outcomes of one tenth of a closed circuit's window.
type bucket struct {
	stamp            atomic.Int64 // the bucket's number: now / r.bucket; noBucket when cleared
	succ, fail, excl atomic.Uint32
	_                uint32
}

// circuit is one (host, model) circuit.
//
// gobreaker is its state machine: the states and generations, the open
// period, the half-open probes and their count. While the circuit is
// closed, though, calls do not go through gobreaker: their attempts are
// admitted by one atomic load, and the calls' outcomes are counted here,
// lock-free, in a rolling window of atomic buckets, with the number of
// calls in flight. Only a failure goes to gobreaker (after the fact), and
// gobreaker asks ReadyToTrip, which reads this window. gobreaker locks its
// mutex and reads the clock twice per request; on a closed circuit, the
// common case, that was the largest part of the transport's own cost (see
// the README's performance notes).
//
// It also keeps what gobreaker does not: the end of the open period (which
// a server's wait hint can lengthen), a lock-free copy of the state, a used
// mark for eviction, and the state changes still to be reported.
type circuit struct {
	key     circuitKey
	dropped atomic.Bool // evicted from the registry
	r       *circuits
	cb      *gobreaker.TwoStepCircuitBreaker[struct{}]

	state     atomic.Uint32 // CircuitState; written in onStateChange
	gen       atomic.Uint32 // bumped at every state change
	openUntil atomic.Int64  // r.now() at which an open circuit lets a probe through
	used      atomic.Bool   // admitted a request since the last sweep
	npending  atomic.Int32  // len(pending), read without the lock
	reporting atomic.Bool   // a request is calling the observers

	// The closed state's counts: the calls in flight (admitted while
	// closed, in any generation, and not yet settled) and the outcomes of
	// the calls that ended. rollMu serialises the clearing of a bucket for
	// reuse.
	inflight atomic.Int32
	win      [windowBuckets]bucket
	rollMu   sync.Mutex

	// mu guards pending. It is taken inside gobreaker's mutex (in
	// onStateChange) and never the other way round.
	mu      sync.Mutex
	pending []CircuitStateChange
}

func (r *circuits) newCircuit(key circuitKey) *circuit {
	c := &circuit{key: key, r: r}
	c.clearCounts()
	st := r.settings
	st.OnStateChange = c.onStateChange
	st.ReadyToTrip = c.readyToTrip
	c.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](st)
	return c
}

// clearCounts empties the closed state's window. The calls in flight stay
// counted: they are still in flight.
func (c *circuit) clearCounts() {
	c.rollMu.Lock()
	defer c.rollMu.Unlock()
	for i := range c.win {
		c.win[i].stamp.Store(noBucket)
	}
}

// slot returns the bucket of bucket number b, cleared first if it last
// counted an older tenth of the window.
func (c *circuit) slot(b int64) *bucket {
	s := &c.win[b%windowBuckets]
	if s.stamp.Load() != b {
		c.rollMu.Lock()
		if s.stamp.Load() != b {
			s.succ.Store(0)
			s.fail.Store(0)
			s.excl.Store(0)
			s.stamp.Store(b)
		}
		c.rollMu.Unlock()
	}
	return s
}

// count records the outcome of a call the closed circuit admitted, at time
// now. A failure must then be reported to gobreaker (see settle).
func (c *circuit) count(o outcome, now int64) {
	s := c.slot(now / c.r.bucket)
	switch o {
	case outcomeSuccess:
		s.succ.Add(1)
	case outcomeExcluded:
		s.excl.Add(1)
	default:
		s.fail.Add(1)
	}
}

// window returns the closed state's counts over the window as of now.
func (c *circuit) window(now int64) (succ, fail, excl uint32) {
	b := now / c.r.bucket
	for i := range c.win {
		s := &c.win[i]
		if st := s.stamp.Load(); st > b-windowBuckets && st <= b {
			succ += s.succ.Load()
			fail += s.fail.Load()
			excl += s.excl.Load()
		}
	}
	return succ, fail, excl
}

// readyToTrip is gobreaker's ReadyToTrip, asked after each failure gobreaker
// records while closed; it reads the circuit's own window and calls in
// flight, not gobreaker's counts, which see only the failures.
func (c *circuit) readyToTrip(gobreaker.Counts) bool {
	cfg := &c.r.cfg
	if cfg.ratio <= 0 {
		return false
	}
	succ, fail, _ := c.window(c.r.now())
	if fail < uint32(cfg.minFailures) {
		return false
	}
	n := uint64(succ) + uint64(fail) + uint64(max(c.inflight.Load(), 0))
	return float64(fail) >= cfg.ratio*float64(n)
}

func toCircuitState(s gobreaker.State) CircuitState {
	switch s {
	case gobreaker.StateOpen:
		return CircuitOpen
	case gobreaker.StateHalfOpen:
		return CircuitHalfOpen
	}
	return CircuitClosed
}

// onStateChange is gobreaker's OnStateChange. gobreaker calls it with its
// mutex held, so it only records the change; the request that caused it
// reports it once every lock is released.
func (c *circuit) onStateChange(_ string, from, to gobreaker.State) {
	s := toCircuitState(to)
	if s == CircuitOpen {
		c.openUntil.Store(c.r.now() + int64(c.r.cfg.openTimeout))
	}
	if s == CircuitClosed {
		c.clearCounts()
	}
	c.gen.Add(1)
	c.state.Store(uint32(s))
	c.mu.Lock()
	c.pending = append(c.pending, CircuitStateChange{Host: c.key.host, Model: c.key.model, From: toCircuitState(from), To: s})
	c.npending.Store(int32(len(c.pending)))
	c.mu.Unlock()
}

// report calls the observers with the state changes recorded so far, in
// order. It runs with no lock held. One request at a time reports a
// circuit's changes: a request that finds another one reporting leaves its
// changes to it, so observers see each circuit's changes in order and never
// concurrently.
func (c *circuit) report(ctx context.Context) {
	for c.npending.Load() > 0 && c.reporting.CompareAndSwap(false, true) {
		c.reportAll(ctx)
	}
}

func (c *circuit) reportAll(ctx context.Context) {
	defer c.reporting.Store(false)
	for {
		c.mu.Lock()
		changes := c.pending
		c.pending = nil
		c.npending.Store(0)
		c.mu.Unlock()
		if len(changes) == 0 {
			return
		}
		for _, ch := range changes {
			for _, o := range c.r.cfg.observers {
				o(ctx, ch)
			}
		}
	}
}

// lengthenOpen makes an open circuit stay open at least until until.
func (c *circuit) lengthenOpen(until int64) {
	for {
		cur := c.openUntil.Load()
		if cur >= until || c.openUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// lengthenByHint makes c, if the failure just recorded left it open, stay
// open at least for the server's wait hint.
func (c *circuit) lengthenByHint(hint time.Duration) {
	if hint > 0 && CircuitState(c.state.Load()) == CircuitOpen {
		c.lengthenOpen(c.r.now() + int64(hint))
	}
}

// callCircuit is one call's standing with the circuit of its model, from
// its first attempt to its end.
//
// The call is admitted attempt by attempt ([circuits.admit]) and its
// outcome recorded once, when it ends ([circuits.settle]). While the
// circuit is closed an attempt costs one atomic load; the call's first
// admitted attempt puts it in flight, in the generation gen, until settle.
// While half-open, each attempt is a probe, admitted by gobreaker and
// reported to it when it ends ([circuits.probed]).
type callCircuit struct {
	c        *circuit // nil: no circuit (the breaker is off, or the registry is full)
	gen      uint32   // the generation the call was put in flight in
	inflight bool     // counted in c.inflight
	counted  bool     // settle counted the call a success, in bucket number bucket (see circuits.late)
	bucket   int64
}

// admit asks the circuit of key whether the next attempt of the call cc
// may go. It returns a *CircuitOpenError when not. probe is non-nil when
// the attempt is a probe: its outcome must be passed to probed once it is
// known. State changes are reported to the observers with ctx.
func (r *circuits) admit(ctx context.Context, key circuitKey, cc *callCircuit) (probe func(error), err error) {
	if r.admitClosed(key, cc) {
		// The fast path: admitted without gobreaker (see circuit).
		return nil, nil
	}
	c := cc.c
	if CircuitState(c.state.Load()) == CircuitOpen {
		if d := c.openUntil.Load() - r.now(); d >= 0 {
			c.report(ctx)
			return nil, &CircuitOpenError{Host: key.host, Model: key.model, RetryIn: time.Duration(d)}
		}
	}
	done, err := c.cb.Allow()
	if err == nil {
		defer func() {
			if v := recover(); v != nil {
				// An observer panicked: the probe never goes out, and
				// its place is given back.
				done(errOutcomeExcluded)
				panic(v)
			}
		}()
	}
	c.report(ctx) // a change to half-open, before its probe goes out
	switch err {
	case nil:
		return done, nil
	case gobreaker.ErrOpenState:
		// Another request opened the circuit since the check above.
		return nil, &CircuitOpenError{Host: key.host, Model: key.model, RetryIn: time.Duration(max(c.openUntil.Load()-r.now(), 0))}
	default:
		// ErrTooManyRequests: half-open with its probes out.
		return nil, &CircuitOpenError{Host: key.host, Model: key.model}
	}
}

// admitClosed admits the next attempt of the call cc if the circuit of key
// is closed (or there is none), as admit would; it reports false, having
// done nothing, when the attempt must go through admit.
func (r *circuits) admitClosed(key circuitKey, cc *callCircuit) bool {
	if r == nil {
		return true
	}
	if cc.c == nil {
		if cc.c = r.lookup(key); cc.c == nil {
			return true
		}
	}
	c := cc.c
	if CircuitState(c.state.Load()) != CircuitClosed {
		return false
	}
	if !cc.inflight {
		cc.inflight = true
		cc.gen = c.gen.Load()
		c.inflight.Add(1)
	}
	return true
}

// probed reports the outcome of a probe admitted by admit, with the
// server's wait hint, which lengthens the open period a failed probe
// starts.
func (r *circuits) probed(ctx context.Context, cc *callCircuit, probe func(error), out outcome, hint time.Duration) {
	probe(outcomeErrs[out])
	if out == outcomeFailure {
		cc.c.lengthenByHint(hint)
	}
	cc.c.report(ctx)
}

// settle records the outcome of the call cc once it ended, with the
// server's wait hint on its last attempt. An outcome that arrives after the
// circuit changed state is dropped, as gobreaker drops them.
func (r *circuits) settle(ctx context.Context, cc *callCircuit, out outcome, hint time.Duration) {
	c := cc.c
	if c == nil || !cc.inflight {
		return
	}
	cc.inflight = false
	c.inflight.Add(-1)
	if c.gen.Load() != cc.gen {
		c.report(ctx)
		return
	}
	now := c.r.now()
	c.count(out, now)
	cc.counted, cc.bucket = out == outcomeSuccess, now/c.r.bucket
	if out == outcomeFailure {
		c.reportFailure(cc.gen, hint)
	}
	c.report(ctx)
}

// abandon settles the call cc if it is still in flight, as one whose
// outcome says nothing: a call that a panic (of a hook, a classifier, an
// observer or the base transport) ended before it settled must not stay in
// flight for ever, which would dilute its circuit's failure ratio.
func (r *circuits) abandon(cc *callCircuit) {
	if cc.inflight {
		r.settle(context.Background(), cc, outcomeExcluded, 0)
	}
}

// reportFailure reports to gobreaker the failure of a call put in flight in
// generation gen and counted in the window, with the server's wait hint.
func (c *circuit) reportFailure(gen uint32, hint time.Duration) {
	if done, err := c.cb.Allow(); err == nil {
		if c.gen.Load() != gen {
			// Changed state since: this outcome is not the new
			// state's (a probe's place is given back).
			done(errOutcomeExcluded)
		} else {
			done(errOutcomeFailure)
		}
	}
	c.lengthenByHint(hint)
}

// lookup returns the circuit of key (nil when the registry is full), marked
// as used.
func (r *circuits) lookup(key circuitKey) *circuit {
	c := r.get(key)
	if c != nil && !c.used.Load() {
		c.used.Store(true)
	}
	return c
}

// openFor returns how much longer the call's circuit will refuse requests:
// 0 when it admits them (closed, half-open, or past its open period). It
// lets the retry loop hand back what it has at once instead of waiting to
// be refused.
func (cc *callCircuit) openFor() time.Duration {
	c := cc.c
	if c == nil || CircuitState(c.state.Load()) != CircuitOpen {
		return 0
	}
	return time.Duration(max(c.openUntil.Load()-c.r.now(), 0))
}

// shardOf picks key's shard from the model's length and a few of its bytes:
// cheap, and spread enough for names that share a prefix.
func shardOf(key circuitKey) int {
	m := key.model
	h := uint32(len(m))*2654435761 + uint32(len(key.host))
	if n := len(m); n > 0 {
		h = (h ^ uint32(m[n-1])) * 16777619
		h = (h ^ uint32(m[n/2])) * 16777619
		if n > 1 {
			h = (h ^ uint32(m[n-2])) * 16777619
		}
	}
	return int(h>>8) % numShards
}

// get returns the circuit of key, creating it if needed. It returns nil
// when the registry is full.
func (r *circuits) get(key circuitKey) *circuit {
	s := &r.shards[shardOf(key)]
	if c := s.last.Load(); c != nil && c.key == key && !c.dropped.Load() {
		return c
	}
	if m := s.m.Load(); m != nil {
		if c := (*m)[key]; c != nil {
			s.last.Store(c)
			return c
		}
	}
	return r.insert(key, s)
}

// insert adds a circuit for key to shard s (copy on write), first dropping
// idle circuits when it is time to.
func (r *circuits) insert(key circuitKey, s *shard) *circuit {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := s.m.Load(); m != nil {
		if c := (*m)[key]; c != nil {
			return c
		}
	}
	now := r.now()
	since := time.Duration(now - r.lastSweep)
	if since >= r.cfg.idleAfter || (r.count >= r.cfg.maxCircuits && since >= min(minForcedSweep, r.cfg.idleAfter)) {
		r.sweepLocked(now)
	}
	if r.count >= r.cfg.maxCircuits {
		return nil
	}
	c := r.newCircuit(key)
	var old map[circuitKey]*circuit
	if p := s.m.Load(); p != nil {
		old = *p
	}
	m := make(map[circuitKey]*circuit, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[key] = c
	s.m.Store(&m)
	r.count++
	return c
}

// sweepLocked drops the closed circuits that admitted no request since the
// previous sweep, and clears the used marks of the others.
// r.mu must be held.
func (r *circuits) sweepLocked(now int64) {
	r.lastSweep = now
	for i := range r.shards {
		s := &r.shards[i]
		p := s.m.Load()
		if p == nil {
			continue
		}
		drop := 0
		for _, c := range *p {
			if c.idle() {
				drop++
			}
		}
		if drop > 0 {
			m := make(map[circuitKey]*circuit, len(*p)-drop)
			for k, c := range *p {
				if c.idle() {
					// Marked first: a lookup that found it in the
					// old map may still leave it in s.last.
					c.dropped.Store(true)
				} else {
					m[k] = c
				}
			}
			s.m.Store(&m)
			if l := s.last.Load(); l != nil && l.dropped.Load() {
				s.last.CompareAndSwap(l, nil)
			}
			r.count -= len(*p) - len(m)
			p = &m
		}
		for _, c := range *p {
			c.used.Store(false)
		}
	}
}

// idle reports whether c can be dropped: closed, with nothing to report,
// and unused since the last sweep.
func (c *circuit) idle() bool {
	return !c.used.Load() && CircuitState(c.state.Load()) == CircuitClosed && c.npending.Load() == 0
}

// snapshot returns the status of every circuit, sorted.
func (r *circuits) snapshot() []CircuitStatus {
	if r == nil {
		return nil
	}
	now := r.now()
	out := []CircuitStatus{}
	for i := range r.shards {
		p := r.shards[i].m.Load()
		if p == nil {
			continue
		}
		for _, c := range *p {
			st := CircuitStatus{Host: c.key.host, Model: c.key.model, State: CircuitState(c.state.Load())}
			if st.State == CircuitOpen {
				if d := c.openUntil.Load() - now; d >= 0 {
					st.RetryIn = time.Duration(d)
				} else {
					st.State = CircuitHalfOpen
				}
			}
			if st.State == CircuitClosed {
				st.Successes, st.Failures, st.Excluded = c.window(now)
				st.Requests = st.Successes + st.Failures + st.Excluded
				st.InFlight = uint32(max(c.inflight.Load(), 0))
			} else {
				n := c.cb.Counts()
				st.Requests, st.Successes, st.Failures, st.Excluded = n.Requests, n.TotalSuccesses, n.TotalFailures, n.TotalExclusions
			}
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b CircuitStatus) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Model, b.Model))
	})
	return out
}
