// Package redisstate shares the holds of llmtransport — rate-limit
// cooldowns, circuits held open by server-classified failures, their
// release — between the replicas of an application through Redis. It
// implements [llmtransport.SharedState] on github.com/redis/go-redis/v9, in
// a module of its own so that the core never requires go-redis.
//
//	client := redis.NewClient(&redis.Options{Addr: "redis:6379"}) // or a cluster, sentinel client
//	state := redisstate.New(client,
//		redisstate.WithNamespace("prod-openai"),            // the replicas that share a quota
//		redisstate.WithSecret(secretFromYourSecretStore))   // the same on every replica
//	defer state.Close()
//	// hand it to the Transport: llmtransport.WithSharedState(state)
//
// # What goes through Redis
//
// Without WithLimiter, a request never waits for Redis (save the probe
// lease below). Publish puts a hold in a bounded queue
// (DefaultQueueSize) and returns; one sender goroutine, alive while the
// queue is not empty or a live hold is still unsent (Redis refused it: it
// is tried again), writes each hold with one Lua script that stores
// it extend-only — a key that already lives at least as long is kept, and
// nothing is published — else SETs it with PX (a relative TTL: no clock of
// any host is compared) and PUBLISHes it with the TTL Redis now holds. A
// release deletes the circuit's open hold and probe lease and publishes the
// release. Subscribe runs a watcher: one pub/sub connection, and at every
// (re)subscription a backfill — one script that reads the namespace's
// index (a sorted set of its hold keys) and returns every live hold with
// its remaining PTTL. Lease is SET NX PX on the circuit's lease key, in a
// script that returns the remaining time when another process holds it.
//
// Every key of a namespace is "llmt:{NS}:…": the braces are a Redis
// Cluster hash tag, so that a namespace lives in one slot and every script
// touches one node (the backfill script reads keys of its slot that its
// KEYS do not list, which Redis allows within one slot). The key, value
// and message formats are in format.go. A credential appears only as its
// keyed fingerprint (see [WithSecret]).
//
// # Limiter
//
// With [WithLimiter] (off by default) a State also implements
// [llmtransport.SharedLimiter]: a Transport with WithPacing asks
// [State.Reserve] before each attempt once pacing has learned a rate from
// the rate-limit headers, and the replicas of a namespace together keep
// within it — at the price of one Redis round trip (one EVALSHA) per
// attempt. The script is a GCRA with a cost per request, on Redis's clock
// (TIME), over one hash per (host, model, credential fingerprint):
// llmt:{NS}:rl:HOST:MODEL:CRED. While Redis has denied a key, the State
// answers its further reserves from memory (a negative cache), spacing
// its waiters by their emission interval. A call that fails or times out
// admits the request and pauses the limiter for DefaultPauseAfterError.
// See limiter.go and [State.Reserve].
//
// # Failure
//
// Every Redis call is bounded by [WithTimeout] (DefaultTimeout, 25 ms),
// whatever the client's own options: the call runs in a goroutine of its
// own and is abandoned at the timeout (at most eight at once; beyond,
// calls fail at once). Lease then grants (the process probes on its own,
// as without shared state); a subscription is retried with backoff (50 ms
// doubling to 2 s, jittered); a write that fails pauses the sender for
// DefaultPauseAfterError (1 s), holds meanwhile being dropped at once (so
// a dead Redis cannot back the queue up) but remembered: after the pause,
// and whenever a watcher reconnects, the live holds not written are sent
// again. A subscription silent for [WithHealthCheck] (DefaultHealthCheck,
// 5 s) is pinged, and reconnected when the pong does not come within the
// timeout. An abandoned call ends by the client's own timeouts (go-redis:
// 3 s reads by default; set ContextTimeoutEnabled on the client to have
// them end at this package's timeout too); [State.Close] waits for them.
// The package never changes the client's options and never touches
// go-redis's logger (which, being the application's, may log a refused
// dial).
//
// Redis restarted empty (no persistence) is told from a reconnection by a
// per-namespace epoch token, which every write reads (and creates when
// missing): a subscribed State whose watcher reconnects to a token other
// than the one a hold was written under re-sends that hold with its
// remaining TTL. Holds thus survive a restart while a subscribed replica
// that published them lives. A release that could not be
// written is not re-sent (a stale release could end a newer hold): the
// fleet's open hold then runs out at its TTL.
//
// # Metrics
//
// With [WithMeterProvider]: MetricPublished, MetricReceived, MetricDropped,
// MetricErrors, MetricLag and, with the limiter, MetricReserves (see
// their docs).
package redisstate
