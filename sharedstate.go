package llmtransport

import (
	"context"
	"time"
)

// SharedState carries holds between the processes of a fleet (replicas of
// one application behind one API key or one gateway), so that one replica's
// rate limit or dead model protects all the others. The transport never
// waits for it: holds are published without blocking and received in the
// background, and a request never makes a round trip to the store, save the
// half-open probe of a circuit held by the fleet (see Lease), and the
// fleet's rate limiter when the implementation has one and it is on (see
// [SharedLimiter]). Package github.com/llmtransport/llmtransport/redisstate
// implements it on Redis.
//
// Only what a server said is shared — a rate limit's wait, a circuit opened
// by server-classified failures, its release — never counts (save by a
// SharedLimiter), windows, messages or credentials. Every duration is relative (no clock is compared
// across hosts), and a hold only ever extends: a shorter one never
// shortens a longer one.
//
// An implementation must be safe for concurrent use, must never block the
// caller of Publish, and must fail open: a store that is slow, down or
// silent delays and fails nothing.
type SharedState interface {
	// Fingerprint returns the keyed fingerprint of a request's credential
	// (its API key), the same in every process that shares the state and
	// not reversible without the implementation's key: holds name
	// credentials by it. It is called while a cooldown is live, and, with
	// [WithPacing], once per request (pacing keys what it learns by it): it
	// must be fast and must not allocate.
	Fingerprint(credential string) uint64

	// Publish hands h to the other processes. It returns at once: a hold
	// that cannot be queued is dropped (and counted by the
	// implementation).
	Publish(h Hold)

	// Subscribe delivers to apply, from a goroutine of the
	// implementation's, the holds other processes publish, and the holds
	// still live in the store when it starts and after each reconnection.
	// Holds this process published may be delivered too. Delivery stops
	// when stop returns.
	Subscribe(apply func(Hold)) (stop func())

	// Lease asks for the right to probe the circuit of (host, model),
	// held open by the fleet, for ttl. Exactly one process at a time is
	// granted it; the others learn for how long it is held, and keep
	// holding. A store that cannot answer within the implementation's
	// timeout, or before ctx ends, grants it: the process then probes on
	// its own, as it would without shared state.
	Lease(ctx context.Context, host, model string, ttl time.Duration) (granted bool, held time.Duration)
}

// HoldKind is what a Hold asks the fleet to do.
type HoldKind uint8

const (
	// HoldCooldown: wait before sending requests for (Host, Model) with the
	// credential Credential, as after a rate limit whose wait is within the
	// transport's cap. A request waits it out within WithMaxRetryWait and
	// its deadline, or goes at once, as with a local cooldown.
	HoldCooldown HoldKind = iota + 1
	// HoldOpen: the circuit of (Host, Model) was opened by failures the
	// server classified (overloaded, upstream_transient, a dead model…,
	// never transport errors, which may be local to one process): fail
	// calls at once with ErrCircuitOpen for TTL.
	HoldOpen
	// HoldRelease: a probe closed the circuit of (Host, Model): the fleet's
	// HoldOpen for it ends now.
	HoldRelease
)

// String returns "cooldown", "open" or "release".
func (k HoldKind) String() string {
	switch k {
	case HoldCooldown:
		return "cooldown"
	case HoldOpen:
		return "open"
	case HoldRelease:
		return "release"
	}
	return "unknown"
}

// Hold is one fact about a model that a process shares with its fleet.
type Hold struct {
	Kind        HoldKind
	Host, Model string
	// Credential is the Fingerprint of the requests' credential, for a
	// HoldCooldown (0 for a request without one); 0 for circuit holds.
	Credential uint64
	// TTL is how long the hold lasts from when it was published; 0 for a
	// HoldRelease. A receiver adds a little positive jitter of its own, so
	// that replicas do not all return at the same instant.
	TTL time.Duration
	// Reason is the class of the response that caused the hold
	// ("rate_limited", "overloaded", "model_not_found"…), "" for a release.
	Reason string
}

// SharedLimiter is an optional interface of a [SharedState]: a rate
// limiter the processes of a fleet share, for users who accept one round
// trip to the store per request. The transport uses it only when pacing is
// on ([WithPacing]) and the shared state implements it; an implementation
// may leave it off (redisstate does unless redisstate.WithLimiter is
// given), in which case Reserve returns 0 at once.
//
// Pacing knows what the server said was left when its responses came
// back, but not what the other processes sent since: each process of a
// fleet may spend the same remainder. The shared limiter counts every
// process's requests against the rates pacing learned, in one place.
// Before each attempt that its own pacing admits, and for which pacing has
// learned a rate, the transport asks Reserve. A wait it returns is waited
// like pacing's own (all of an attempt's pacing waits together at most
// [WithMaxRetryWait] or the request's [RequestMaxRetryWait], none past the
// deadline), then the transport asks pacing and Reserve again; a wait past
// those bounds is not taken: the attempt goes at once, counted by pacing
// but not by the limiter, and the server decides. Each wait is a "paced"
// span event and a point of [MetricPacingWait] with llm.pacing.source
// "fleet". Nothing learned (no rate-limit headers yet, none believable)
// means no call: unknown never paces. What Reserve counted is never given
// back: an attempt its circuit then refuses, or whose caller gives up,
// has used its place.
type SharedLimiter interface {
	// Reserve counts r's costs against the fleet's rates of r's host,
	// model and credential, and returns 0, when every dimension of r has
	// room for its cost now: the request goes. Otherwise it counts
	// nothing and returns how long until the dimensions without room
	// have it; the caller waits, or not, and asks again.
	//
	// It must fail open: a store that fails, or that does not answer
	// within the implementation's timeout or before ctx ends, returns 0.
	// It may answer a wait without asking the store, from what an
	// earlier answer for the same key said.
	Reserve(ctx context.Context, r Reservation) (wait time.Duration)
}

// Reservation is what [SharedLimiter.Reserve] is asked for: the cost of
// one request in each dimension of the rate limit of (Host, Model,
// Credential), with the rate pacing learned for it. A dimension whose
// Limit is 0 is not known and is left out; the transport asks only with
// at least one known.
type Reservation struct {
	Host, Model string
	// Credential is the SharedState's Fingerprint of the request's
	// credential (0 for a request without one), as in a Hold: the limiter
	// keys by it and never sees the credential.
	Credential uint64
	// The dimensions, as in [LearnedLimit].
	Requests, Tokens, InputTokens, OutputTokens RateCost
}

// RateCost is one dimension of a [Reservation]: a rate of Limit per
// Window, and what the request costs of it.
type RateCost struct {
	// Limit is what a window allows, as the server's headers said; 0 is
	// not known.
	Limit int64
	// Window is the longest reset the server's responses reported for
	// the dimension: at most the window's length (the time left of a fixed
	// window, or the time a bucket takes to refill what was used), so
	// that Limit per Window is never a slower rate than the server's. It
	// starts short, the rate high, and lengthens to the server's window
	// as the fleet's use of the limit grows.
	Window time.Duration
	// Cost is the request's estimated cost (see [WithPacing]): 1 request;
	// its tokens. It is never above Limit: a request that costs more
	// than a whole window is left to the server, like pacing does.
	Cost int64
}
