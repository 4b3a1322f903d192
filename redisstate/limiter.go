package redisstate

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llmtransport/llmtransport"
)

// The fleet's rate limiter (WithLimiter): State.Reserve, the negative
// cache, and the pause after a failure.
//
// Reserve runs reserveScript, a GCRA (generic cell rate algorithm) with
// a cost per request, on the Redis server's clock: for each dimension of
// the request (requests, tokens…) the key's hash keeps a theoretical
// arrival time (TAT), in microseconds of Redis's TIME. A request of cost
// c against Limit per Window moves it c × Window / Limit later, and goes
// when the new TAT is at most a Window ahead of now: a whole window's
// limit may go at once, then the rate. Every dimension must have room, or
// none is counted and the answer is the wait until they all would. No
// client clock is read by the script, nor compared across hosts.
//
// While a key is denied (until T, as Redis answered), the State answers
// further reserves of that key from memory, without a round trip: the
// first waits until T plus its own emission interval (c × Window /
// Limit), the next that much more, and so on, so that the process's
// waiters come back one at a time, at the fleet's rate, rather than all at
// T. Each of them asks Redis when it comes back: the cache never admits,
// it only delays asking.
//
// A Redis call that fails, or does not answer within WithTimeout, admits
// the request (fail open) and pauses the limiter for
// DefaultPauseAfterError: reserves meanwhile admit at once without a
// round trip, so that a silent Redis costs one timeout per pause, not one
// per request.

// WithLimiter turns on the fleet's rate limiter: State then implements
// llmtransport.SharedLimiter with one Redis round trip (one EVALSHA) per
// attempt that a Transport with WithPacing admits once it has learned a
// rate from the rate-limit headers, so that the replicas of a namespace
// together keep within the rates the server reports instead of each
// spending the same remainder. It is off by default: without it Reserve
// returns 0 at once and makes no Redis call. See Reserve.
func WithLimiter() Option {
	return func(c *config) { c.limiter = true }
}

// Limiter tuning.
const (
	// maxReserveCalls bounds the limiter's Redis calls in flight at
	// once; beyond it a reserve admits at once (fail open), counted as
	// "busy".
	maxReserveCalls = 64
	// maxDenials bounds the negative cache: keys beyond it are not
	// cached (their reserves ask Redis).
	maxDenials = 4096
)

// limiter is the State's limiter state.
type limiter struct {
	slots    chan struct{}  // Redis calls of Reserve in flight
	reserves sync.WaitGroup // Reserve calls running (Close waits for them)
	epoch    time.Time
	clock    func() time.Time // time.Now; a test's clock

	// pausedTil is when (ns since epoch) the limiter asks Redis again
	// after a failure; 0: not paused.
	pausedTil atomic.Int64

	mu     sync.Mutex
	denied map[limitKey]*denial // the negative cache
}

func (l *limiter) init() {
	l.slots = make(chan struct{}, maxReserveCalls)
	l.epoch = time.Now()
	l.clock = time.Now
	l.denied = make(map[limitKey]*denial)
}

// now returns the limiter's time: ns since its epoch, on the monotonic
// clock (local only: never sent to Redis).
func (l *limiter) now() int64 { return int64(l.clock().Sub(l.epoch)) }

// limitKey names a rate limit, as the negative cache keys it.
type limitKey struct {
	host, model string
	cred        uint64
}

// denial is what the negative cache knows of a denied key.
type denial struct {
	until int64 // Redis denied the key until then
	next  int64 // the slot given to the key's last waiter
}

// wait answers a reserve of key at now from the negative cache: while the
// key is denied, the wait until the next slot, inc after the previous
// one. ok is false when the key is not denied: ask Redis.
func (l *limiter) wait(key limitKey, now, inc int64) (w int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.denied[key]
	if d == nil {
		return 0, false
	}
	if now >= d.until {
		if now >= d.next {
			delete(l.denied, key)
		}
		return 0, false
	}
	d.next = max(d.next, d.until) + inc
	return d.next - now, true
}

// deny records that Redis denied key until until: the key's reserves wait
// until then (and after their predecessors) without asking Redis.
func (l *limiter) deny(key limitKey, until, now int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := l.denied[key]; d != nil {
		d.until = until // the latest answer
		d.next = max(d.next, until)
		return
	}
	if len(l.denied) >= maxDenials {
		for k, d := range l.denied {
			if now >= d.until && now >= d.next {
				delete(l.denied, k)
			}
		}
		if len(l.denied) >= maxDenials {
			return
		}
	}
	l.denied[key] = &denial{until: until, next: until}
}

// Reserve implements llmtransport.SharedLimiter when the State has
// WithLimiter (without it, it returns 0 at once). It counts r's cost of
// each known dimension against Limit per Window for r's host, model and
// credential fingerprint, shared by every State of the namespace, and
// returns 0 when all have room, or, counting nothing, the time until they
// would: one round trip (EVALSHA of a GCRA script, on Redis's clock),
// bounded by WithTimeout and ctx.
//
// It answers from memory while the key is denied: the wait until the
// denial ends, spaced by the request's emission interval after the other
// waiters of this State (no round trip, counted as "cached"). It fails
// open: a Redis call that fails or times out returns 0 and pauses the
// limiter for DefaultPauseAfterError, during which every reserve returns 0
// at once; with maxReserveCalls calls in flight, it returns 0 at once
// too. Each reserve is counted in MetricReserves by outcome.
//
// Redis keeps one hash per key (llmt:{NS}:rl:HOST:MODEL:CRED, CRED the
// keyed fingerprint), living as long as its longest dimension needs.
func (s *State) Reserve(ctx context.Context, r llmtransport.Reservation) time.Duration {
	if !s.cfg.limiter {
		return 0
	}
	dims := [...]llmtransport.RateCost{r.Requests, r.Tokens, r.InputTokens, r.OutputTokens}
	var use [len(dims)]bool
	n, inc := 0, int64(0)
	for i, d := range dims {
		if d.Limit <= 0 || d.Cost <= 0 || d.Cost > d.Limit || d.Window < time.Microsecond || d.Window > maxWindow {
			continue
		}
		use[i] = true
		n++
		inc = max(inc, int64(float64(d.Window)*float64(d.Cost)/float64(d.Limit)))
	}
	if n == 0 {
		return 0
	}
	l := &s.lim
	key := limitKey{r.Host, r.Model, r.Credential}
	now := l.now()
	if w, ok := l.wait(key, now, inc); ok {
		s.reserved("cached")
		return time.Duration(w)
	}
	if p := l.pausedTil.Load(); p != 0 && now < p {
		s.reserved("unavailable")
		return 0
	}
	if ctx.Err() != nil {
		return 0 // the caller is gone: its attempt will not be sent
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0
	}
	l.reserves.Add(1)
	s.mu.Unlock()
	defer l.reserves.Done()

	args := make([]any, 0, 4*n)
	for i, d := range dims {
		if use[i] {
			args = append(args, dimFields[i], d.Limit, d.Window.Microseconds(), d.Cost)
		}
	}
	rkey := s.keys.limitKey(r.Host, r.Model, r.Credential)
	var wait int64
	err := s.callIn(l.slots, ctx, func(ctx context.Context) error {
		var err error
		wait, err = reserveScript.Run(ctx, s.client, []string{rkey}, args...).Int64()
		return err
	})
	switch {
	case err == errBusy:
		s.reserved("busy")
		return 0
	case err != nil && ctx.Err() != nil:
		return 0 // the caller gave up: says nothing of Redis
	case err != nil:
		s.m.count(s.m.errors, keyOp.String("reserve"))
		s.reserved("error")
		l.pausedTil.Store(l.now() + int64(s.cfg.pause))
		return 0
	case wait <= 0:
		s.reserved("allowed")
		return 0
	}
	w := time.Duration(wait) * time.Microsecond
	at := l.now()
	l.deny(key, at+int64(w), at)
	s.reserved("denied")
	return w
}

// maxWindow is the longest window the limiter takes (pacing believes no
// reset longer than a day).
const maxWindow = 24 * time.Hour

// dimFields are the hash fields of the dimensions, in the order of
// Reservation's: requests, tokens, input tokens, output tokens.
var dimFields = [4]string{"r", "t", "i", "o"}

func (s *State) reserved(outcome string) {
	s.m.count(s.m.reserves, keyOutcome.String(outcome))
}

var _ llmtransport.SharedLimiter = (*State)(nil)
