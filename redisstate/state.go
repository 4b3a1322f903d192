package redisstate

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// ScopeName is the instrumentation scope of the State's meter.
const ScopeName = "github.com/llmtransport/llmtransport/redisstate"

// The defaults, in one place.
const (
	// DefaultNamespace is the namespace of a State without WithNamespace.
	DefaultNamespace = "default"
	// DefaultTimeout bounds every Redis call: a publish, a lease, a
	// backfill, the confirmation of a subscription, the answer to a ping.
	DefaultTimeout = 25 * time.Millisecond
	// DefaultQueueSize is how many holds may wait for the sender.
	DefaultQueueSize = 256
	// DefaultHealthCheck is how long the watcher waits for a message
	// before it pings the subscription; no answer within the timeout, and
	// it reconnects.
	DefaultHealthCheck = 5 * time.Second
	// DefaultPauseAfterError is how long the sender stops writing after a
	// failed write: holds meanwhile are dropped as "unavailable" and
	// remembered; then the live holds not written are tried again (and
	// again after every reconnection of a watcher).
	DefaultPauseAfterError = time.Second
	// Reconnection backoff of the watcher: from minBackoff doubling to
	// maxBackoff, with up to 50 % jitter.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
	// maxCalls bounds the Redis calls in flight at once; beyond it an
	// operation fails at once (open). Calls left behind by a timeout end
	// by the client's own timeouts.
	maxCalls = 8
	// maxBackfill is the most holds one backfill reads.
	maxBackfill = 4096
	// maxOwn is the most holds a State remembers having published.
	maxOwn = 4096
	// epochTTL keeps a namespace's epoch token alive between connections.
	epochTTL = 7 * 24 * time.Hour
)

// Option configures a State.
type Option func(*config)

type config struct {
	namespace   string
	secret      []byte
	timeout     time.Duration
	queueSize   int
	healthCheck time.Duration
	pause       time.Duration
	mp          metric.MeterProvider
	limiter     bool // WithLimiter
}

// WithNamespace sets the namespace (default "default"). Replicas share holds
// only when they share a namespace and a Redis: give one namespace to the
// processes that share a quota (one API key, one gateway). Every key of a
// namespace hashes to one Redis Cluster slot.
func WithNamespace(ns string) Option {
	return func(c *config) {
		if ns != "" {
			c.namespace = ns
		}
	}
}

// WithSecret sets the key of the credential fingerprint (HMAC-SHA256 of the
// API key, its first 64 bits). Every replica of a namespace must use the
// same secret. Without it the key is derived from the namespace: the
// fingerprints are then salted per namespace (no table computed for one
// deployment serves another) but not secret — whoever reads the store and
// holds a candidate API key can test it. With a secret kept out of Redis
// (32 random bytes from the application's secret store) a fingerprint
// tells nothing without the secret.
func WithSecret(key []byte) Option {
	return func(c *config) {
		if len(key) > 0 {
			c.secret = append([]byte(nil), key...)
		}
	}
}

// WithTimeout bounds every Redis call (default DefaultTimeout, 25 ms).
// A call that takes longer is abandoned: a lease is then granted, a hold
// dropped, a subscription retried. The client's own timeouts still end the
// abandoned call; set ContextTimeoutEnabled on the client to have it end
// at this timeout too.
func WithTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithQueueSize sets how many holds may wait to be written (default
// DefaultQueueSize, 256); Publish drops a hold when the queue is full.
func WithQueueSize(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.queueSize = n
		}
	}
}

// WithHealthCheck sets how long a subscription may stay silent before it is
// pinged (default DefaultHealthCheck, 5 s).
func WithHealthCheck(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.healthCheck = d
		}
	}
}

// WithMeterProvider sets the meter provider of the metrics (default: the
// global one).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) {
		if mp != nil {
			c.mp = mp
		}
	}
}

// State shares holds between the processes of a fleet through Redis. It
// implements llmtransport.SharedState; create it with New.
type State struct {
	client redis.UniversalClient
	cfg    config
	keys   keys
	token  string // this State's random id: the value of the leases it holds
	m      metrics
	fp     sync.Pool // of *fingerprinter (HMAC-SHA256 keyed with the secret)

	slots chan struct{}  // Redis calls in flight
	calls sync.WaitGroup // their goroutines

	lim limiter // the limiter's state (limiter.go)

	queue chan job

	isClosed atomic.Bool // Close has begun (read by Publish without the lock)
	sending  atomic.Bool // a sender goroutine runs

	mu        sync.Mutex
	closed    bool
	closing   chan struct{} // closed by Close
	wake      chan struct{} // ends the sender's pause
	leases    sync.WaitGroup
	sender    sync.WaitGroup
	subs      map[*watcher]struct{}
	own       map[string]*ownHold // holds this State published, by key
	pausedTil time.Time           // the sender skips Redis until then
}

var _ llmtransport.SharedState = (*State)(nil)

// job is a hold waiting for the sender, with when it was handed over.
type job struct {
	h  llmtransport.Hold
	at time.Time
}

// ownHold is a hold this State published: re-sent after a reconnection when
// it was not written, or when Redis lost it.
type ownHold struct {
	h     llmtransport.Hold
	until time.Time
	sent  bool   // written to Redis…
	epoch string // …under this epoch token
}

// fingerprinter is an HMAC with its buffers, pooled.
type fingerprinter struct {
	h        hash.Hash
	buf, sum []byte
}

var errBusy = errors.New("redisstate: too many Redis calls in flight")

// New returns a State on client, which it never closes nor configures:
// the client, its logging and its options stay the application's. New
// makes no Redis call.
func New(client redis.UniversalClient, opts ...Option) *State {
	cfg := config{
		namespace:   DefaultNamespace,
		timeout:     DefaultTimeout,
		queueSize:   DefaultQueueSize,
		healthCheck: DefaultHealthCheck,
		pause:       DefaultPauseAfterError,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.secret == nil {
		sum := sha256.Sum256([]byte("llmtransport/redisstate fingerprint v1\x00" + cfg.namespace))
		cfg.secret = sum[:]
	}
	if cfg.mp == nil {
		cfg.mp = otel.GetMeterProvider()
	}
	s := &State{
		client:  client,
		cfg:     cfg,
		keys:    newKeys(cfg.namespace),
		token:   randomToken(),
		slots:   make(chan struct{}, maxCalls),
		queue:   make(chan job, cfg.queueSize),
		subs:    make(map[*watcher]struct{}),
		closing: make(chan struct{}),
		wake:    make(chan struct{}, 1),
		own:     make(map[string]*ownHold),
	}
	secret := cfg.secret
	s.fp.New = func() any {
		return &fingerprinter{h: hmac.New(sha256.New, secret), sum: make([]byte, 0, sha256.Size)}
	}
	m, err := newMetrics(cfg.mp.Meter(ScopeName))
	if err != nil {
		otel.Handle(err)
	}
	s.m = m
	s.lim.init()
	return s
}

func randomToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Fingerprint returns the first 64 bits of HMAC-SHA256(secret, credential)
// (see WithSecret); 0 for an empty credential.
func (s *State) Fingerprint(credential string) uint64 {
	if credential == "" {
		return 0
	}
	f := s.fp.Get().(*fingerprinter)
	f.h.Reset()
	f.buf = append(f.buf[:0], credential...)
	f.h.Write(f.buf)
	f.sum = f.h.Sum(f.sum[:0])
	fp := binary.BigEndian.Uint64(f.sum)
	if cap(f.buf) <= 1024 {
		s.fp.Put(f)
	}
	if fp == 0 {
		fp = 1
	}
	return fp
}

// Publish queues h for the sender and returns at once. A hold that is
// invalid, that finds the queue full or the State closed is dropped and
// counted in MetricDropped.
func (s *State) Publish(h llmtransport.Hold) {
	if !valid(h) {
		s.drop("invalid")
		return
	}
	s.enqueue(job{h: h, at: time.Now()})
}

func valid(h llmtransport.Hold) bool {
	switch h.Kind {
	case llmtransport.HoldCooldown, llmtransport.HoldOpen:
		if h.TTL < time.Millisecond {
			return false
		}
	case llmtransport.HoldRelease:
	default:
		return false
	}
	return len(h.Host)+len(h.Model)+len(h.Reason) <= maxHoldText
}

// enqueue hands j to the sender without taking a lock: an atomic load, a
// channel send that does not wait, and the start of the sender when none
// runs.
func (s *State) enqueue(j job) {
	if s.isClosed.Load() {
		s.drop("closed")
		return
	}
	select {
	case s.queue <- j:
	default:
		s.drop("queue_full")
		return
	}
	if !s.sending.Load() && s.sending.CompareAndSwap(false, true) {
		s.mu.Lock()
		if s.closed { // Close has begun: it waits for no new sender
			s.mu.Unlock()
			s.drop("closed")
			return
		}
		s.sender.Add(1)
		s.mu.Unlock()
		go s.send()
	}
}

func (s *State) drop(reason string) {
	s.m.count(s.m.dropped, keyReason.String(reason))
}

// send writes the queued holds one by one. After a failed write it pauses
// for DefaultPauseAfterError (holds meanwhile are dropped as unavailable,
// and remembered), then queues again the live holds it could not write,
// and so on while Redis fails. It ends when the queue is empty and nothing
// is left to retry: no goroutine lives while there is nothing to send.
func (s *State) send() {
	defer s.sender.Done()
	for {
		select {
		case j := <-s.queue:
			s.write(j)
			continue
		default:
		}
		s.mu.Lock()
		retryAt := s.pausedTil
		retry := !s.closed && !retryAt.IsZero() && s.unsentLocked()
		s.mu.Unlock()
		if retry {
			t := time.NewTimer(time.Until(retryAt))
			select {
			case <-t.C:
			case <-s.wake: // a watcher reconnected: it re-sent them
				t.Stop()
				continue
			case <-s.closing:
				t.Stop()
			}
			s.resend("", false)
			continue
		}
		s.sending.Store(false)
		// A hold queued after the queue looked empty, whose Publish saw
		// this sender still running, is this sender's to write.
		if len(s.queue) == 0 || !s.sending.CompareAndSwap(false, true) {
			return
		}
	}
}

// unsentLocked reports whether a live hold of this State's is not written;
// s.mu held.
func (s *State) unsentLocked() bool {
	now := time.Now()
	for k, o := range s.own {
		if !o.until.After(now) {
			delete(s.own, k)
		} else if !o.sent {
			return true
		}
	}
	return false
}

// write runs the publish script for one hold.
func (s *State) write(j job) {
	h := j.h
	key := s.keys.holdKey(h)
	now := time.Now()
	ttl := h.TTL - now.Sub(j.at)
	kind := keyKind.String(h.Kind.String())

	s.mu.Lock()
	if h.Kind == llmtransport.HoldRelease {
		delete(s.own, key)
	} else if ttl > 0 {
		s.remember(key, h, now.Add(ttl))
	}
	paused := now.Before(s.pausedTil)
	s.mu.Unlock()

	if h.Kind != llmtransport.HoldRelease && ttl < time.Millisecond {
		s.drop("expired")
		return
	}
	if paused {
		s.drop("unavailable")
		return
	}
	ms := ttl.Milliseconds()
	if h.Kind == llmtransport.HoldRelease {
		ms = 0
	}
	lease := s.keys.leaseKey(h.Host, h.Model)
	var res int64
	var epoch string
	err := s.call(context.Background(), func(ctx context.Context) error {
		v, err := publishScript.Run(ctx, s.client, []string{key, s.keys.index, lease, s.keys.epoch},
			ms, encodeValue(h), s.keys.channel, messageHead(j.at), randomToken(), epochTTL.Milliseconds()).Slice()
		if err != nil {
			return err
		}
		if len(v) != 2 {
			return errFormat
		}
		res, _ = v[0].(int64)
		epoch, _ = v[1].(string)
		return nil
	})
	if err != nil {
		s.m.count(s.m.errors, keyOp.String("publish"))
		s.drop("error")
		s.mu.Lock()
		s.pausedTil = time.Now().Add(s.cfg.pause)
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	if o := s.own[key]; o != nil {
		o.sent, o.epoch = true, epoch
	}
	s.mu.Unlock()
	outcome := "stored"
	if h.Kind != llmtransport.HoldRelease && res <= 0 {
		outcome = "kept"
	}
	s.m.count(s.m.published, kind, keyOutcome.String(outcome))
}

// remember records a hold this State publishes, extend-only; s.mu held.
func (s *State) remember(key string, h llmtransport.Hold, until time.Time) {
	if o := s.own[key]; o != nil {
		if until.After(o.until) {
			o.h, o.until = h, until
		}
		o.sent = false
		return
	}
	if len(s.own) >= maxOwn {
		now := time.Now()
		for k, o := range s.own {
			if !o.until.After(now) {
				delete(s.own, k)
			}
		}
		if len(s.own) >= maxOwn {
			return
		}
	}
	s.own[key] = &ownHold{h: h, until: until}
}

// forget drops this State's open hold of a circuit released by the fleet.
func (s *State) forget(h llmtransport.Hold) {
	key := s.keys.holdKey(h)
	s.mu.Lock()
	delete(s.own, key)
	s.mu.Unlock()
}

// resend lets the sender write at once and queues again the live holds
// this State published that Redis does not have: those not written, and
// with checkEpoch those written under another epoch token than epoch
// (Redis lost its data since).
func (s *State) resend(epoch string, checkEpoch bool) {
	now := time.Now()
	var jobs []job
	s.mu.Lock()
	s.pausedTil = time.Time{}
	for k, o := range s.own {
		if !o.until.After(now) {
			delete(s.own, k)
			continue
		}
		if !o.sent || (checkEpoch && o.epoch != epoch) {
			h := o.h
			h.TTL = o.until.Sub(now)
			jobs = append(jobs, job{h: h, at: now})
		}
	}
	s.mu.Unlock()
	for _, j := range jobs {
		s.enqueue(j)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// call runs fn in a goroutine of its own, bounded by the State's timeout
// and ctx: it returns fn's error, or ctx's when the timeout or ctx ends
// first, leaving fn to end by the client's own timeouts (Close waits for
// it). With maxCalls calls in flight it fails at once.
func (s *State) call(ctx context.Context, fn func(context.Context) error) error {
	return s.callIn(s.slots, ctx, fn)
}

// callIn is call with the slots of its kind of call: the limiter's
// reserves have their own (see Reserve), so that requests never take the
// slots of the holds and leases, nor the other way round.
func (s *State) callIn(slots chan struct{}, ctx context.Context, fn func(context.Context) error) error {
	select {
	case slots <- struct{}{}:
	default:
		return errBusy
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	done := make(chan error, 1)
	s.calls.Add(1)
	go func() {
		defer s.calls.Done()
		err := fn(ctx)
		<-slots
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Lease asks for the probe lease of the circuit of (host, model) for ttl:
// SET NX PX on its lease key, in one script that also reads the remaining
// time when another process holds it. It fails open: granted when Redis
// does not answer within the timeout or before ctx ends, or fails.
func (s *State) Lease(ctx context.Context, host, model string, ttl time.Duration) (granted bool, held time.Duration) {
	ms := ttl.Milliseconds()
	if ms <= 0 {
		return true, 0
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return true, 0
	}
	s.leases.Add(1)
	s.mu.Unlock()
	defer s.leases.Done()
	var res int64
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		res, err = leaseScript.Run(ctx, s.client, []string{s.keys.leaseKey(host, model)}, s.token, ms).Int64()
		return err
	})
	if err != nil {
		s.m.count(s.m.errors, keyOp.String("lease"))
		return true, 0
	}
	if res < 0 {
		return true, 0
	}
	return false, time.Duration(res) * time.Millisecond
}

// Close stops the State: Publish drops from then on, the holds already
// queued are written (each within the timeout; none once a write failed),
// every subscription ends as its stop would, and Close returns when every
// goroutine of the State is gone, including Redis calls abandoned at their
// timeout, which end by the client's own timeouts. It does not close the
// client. Close is idempotent and always returns nil.
func (s *State) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.leases.Wait()
		s.sender.Wait()
		s.lim.reserves.Wait()
		s.calls.Wait()
		return nil
	}
	s.closed = true
	s.isClosed.Store(true)
	close(s.closing)
	subs := make([]*watcher, 0, len(s.subs))
	for w := range s.subs {
		subs = append(subs, w)
	}
	s.mu.Unlock()
	for _, w := range subs {
		w.stop()
	}
	s.leases.Wait()
	s.sender.Wait()
	s.lim.reserves.Wait()
	s.calls.Wait()
	return nil
}
