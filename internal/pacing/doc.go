// Package pacing slows requests down before a rate limit answers 429
// rather than after (issue 18). It learns each key's limits from the
// rate-limit headers of its responses, keeps what requests in flight will
// use, and tells a request how long to wait for the window that cannot
// cover it to be whole again. It is the engine of the root's WithPacing:
// it knows nothing of RoundTrip, reads no clock but New's origin (every
// call takes the time), starts no goroutine, never sleeps and holds no
// lock across a wait. It uses only the standard library and the module's
// internal/hint (which uses only the standard library too).
//
// # Headers
//
// [ParseHeaders] reads OpenAI's, Groq's and Azure's
// x-ratelimit-{limit,remaining,reset}-{requests,tokens} (resets as Go
// durations, "6m0s", "20ms", "1s", or numbers as [hint.ParseReset] reads them;
// Azure's x-rate-limit-reset-{requests,tokens}, in seconds, when the first
// is absent) and Anthropic's anthropic-ratelimit-{requests,tokens,
// input-tokens,output-tokens}-{limit,remaining,reset} (RFC 3339 resets,
// relative to the response's Date). Each dimension ([Dim]) is a [Window]:
// limit, remaining, and the time until the window is whole again.
//
// Unknowns never pace. A dimension is known only when all three values
// are there and believable: 0 ≤ remaining ≤ limit, limit > 0, 0 < reset ≤
// [MaxReset] (a day). Absent headers, Azure's -1/0 placeholders, a
// remaining above the limit, a reset in the past or in the year 3000 leave
// it unknown, and an unknown dimension makes nobody wait. Azure's short
// windows (limits per 1 or 10 s) need nothing special: their resets are
// short, so are the waits, and a window that passed is forgotten.
// Without a reset (Azure often sends only remaining counts) the wait could
// not be bounded, so the dimension is unknown.
//
// # Cost
//
// [Estimate] counts a request as the servers do: 1 request; ⌈body bytes /
// 4⌉ input tokens (OpenAI counts a character estimate of the prompt; the
// whole body stands in for it and overestimates a little); n × max output
// tokens output tokens (max_tokens, max_completion_tokens or
// max_output_tokens as written in the body, 0 when absent; OpenAI counts
// max_tokens, Anthropic estimates output from it at the start); tokens =
// input + output. The root passes numbers it read in its scan of the body.
//
// # State and merging
//
// Each key (the root keys by host, model and credential fingerprint) has,
// per dimension: the limit, the least remaining reported in the current
// window (rem), when that window is whole again (resetAt), the cost of
// the requests in flight (held), the cost of requests that ended
// without a response that said anything (lost), and that of successes
// whose headers were not read (unseen, see below).
//
// Responses of concurrent calls arrive out of order. The server counted
// a response's reset from a moment between the request's sending and the
// response's reading, so its window ends between lo = sent+reset and
// hi = read+reset (lo less a second when the reset was taken relative to
// the Date header, whose seconds are whole). The known window ends between the latest lo and the
// least hi (resetAt) of its responses; the pacer waits for resetAt, so it
// never sends early, and no longer than the fastest response makes
// necessary. A response is then:
//   - of a later window when its lo is past resetAt (the server's window
//     turned before our end of it, or its bucket refilled): believed at
//     once, whatever it reports;
//   - of an earlier window when its hi is before the known lo (a
//     straggler): ignored;
//   - else of the known window, where what is left only goes down: the
//     least remaining reported is kept, and a report of more is of an
//     older state (a response that overtook a newer one) and is ignored.
//     So an older response never raises what is left within a window.
//
// When resetAt passes, the window is whole again (rem = limit), and
// responses to requests admitted before that moment are of the old window
// or cannot be told from it: they are ignored, and the first response to
// a request admitted since sets the new window. Fixed windows and token
// buckets both fit: for a bucket, "whole again" is when it is full (as
// OpenAI and Anthropic define their resets), which the pacer may think
// at most one response's latency early, against a bucket that has been
// refilling meanwhile (tests: no request over the limit with latencies up
// to 300 ms each way).
//
// # Reservations
//
// Admit reserves a request's cost until its ticket is settled. A request
// is covered when rem − held − lost − unseen ≥ its cost (held counting
// the reservations of this window and of the one before). rem is what
// the server had left when it counted the response that reported it,
// which it counted
// after the requests it reports and before those still in flight: so the
// requests in flight are the ones not in rem, and held is subtracted
// whole. (A request in flight that the server counted before that
// response is subtracted twice: pacing errs towards waiting.) A request
// that ends without a response that says anything stays counted (lost)
// until a response to a request sent after it reports, or the window
// passes; one that was not sent at all gives its cost back. Reservations
// made before a window passed count in the next window too (they may land
// in it), then are forgotten: a ticket never settled holds nothing back
// for more than two windows.
//
// # Successes far from the limit
//
// Reading a response's headers is most of the cost of a settle, and a
// success far from the limit says nothing the pacer acts on. While a key
// is comfortable — some dimension known, and every known one in a window
// not passed with at least half its limit left after what is held, lost
// and unseen — [Ticket.Observe] reads the headers of one success in eight
// and settles the others without them: each counts as used (unseen) what
// it was estimated to cost, as the server would report it, until a report
// that surely includes it (one to a request admitted after every unseen
// one and sent after the last of them was answered; any other report
// leaves them counted: pacing errs towards waiting) or the window passes.
// With many requests in flight the read one was often admitted before
// the unread ones were answered, so they stay counted until the key is
// no longer comfortable and a later request's response is read: then
// every success is read for about one round trip, and pacing has erred
// towards waiting meanwhile, never the other way. Every other response
// (a 429, any non-success, a key under half its limit, a window passed,
// nothing known) is read, and a response that said nothing (no headers,
// no response) does not count as the read one. Other processes' use of the key shows
// up at the next read: at most eight successes later, with at least half
// the limit left. A success to a request admitted before every known
// window passed is not read either, whatever the count: what it reports
// is of windows that have passed, which the merge ignores (a dimension it
// is the first to report is learned from the next read). With many
// requests in flight and windows of a few milliseconds (OpenAI's token
// reset far from the limit) those were most responses.
//
// # Decision
//
// [Pacer.Admit] returns 0 and a reserving [Ticket] when every known
// dimension covers the cost, or when nothing is known. Otherwise it
// returns the longest time until an uncovered window is whole again and
// reserves nothing; a request that costs more than a whole limit is never
// paced (it can never be covered: the server decides). A window used up
// before any response of it came back is waited on for as long as the
// previous window lasted, from its start. The caller bounds the wait by
// its own cap and deadline: past them it sends at once ([Pacer.Reserve])
// and lets the server decide.
//
// # Cost of a call and memory
//
// Admit and Observe are O(1): a map lookup without a lock (the key looked
// up last is compared first) and a few arithmetic steps under the key's
// own lock; on a known key they do not allocate. The table holds at most maxKeys keys; keys with nothing in
// flight and no known window still running (passed, or whose guessed
// successor has passed too) are swept, in sweeps whose cost is amortised
// over the keys added since the last one. When the table is full (at most
// one sweep a second then), idle keys with at least half of every known
// limit left are swept too: a new key is paced rather than one with room,
// which its next response teaches again. A key that finds the table full
// of keys in flight or near a limit is not paced.
package pacing
