package pacing

import (
	"math"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Cost is what one request uses of each dimension, as [Estimate] counts
// it. Index it by [Dim]: Cost{Requests: 1, Tokens: 900}.
type Cost [NumDims]int64

// Estimate returns the cost of a request whose body is bodyLen bytes long,
// that asks for at most maxOutput output tokens per choice
// (max_tokens, max_completion_tokens or max_output_tokens; 0 when the body
// names none) and n choices (0 or less: 1):
//
//	Requests     = 1
//	InputTokens  = ⌈bodyLen / 4⌉
//	OutputTokens = n × maxOutput
//	Tokens       = InputTokens + OutputTokens
//
// It is the estimate the servers make themselves: OpenAI counts a
// character-based estimate of the prompt plus max_tokens, Anthropic
// estimates output tokens from max_tokens when the request starts. The
// whole body stands in for the prompt: its JSON punctuation and the other
// fields make it an overestimate, which errs on the side of waiting.
// Results saturate at math.MaxInt64/4 per dimension.
func Estimate(bodyLen, maxOutput, n int64) Cost {
	const most = math.MaxInt64 / 4
	bodyLen = min(max(bodyLen, 0), most)
	maxOutput = max(maxOutput, 0)
	n = max(n, 1)
	in := (bodyLen + 3) / 4
	out := int64(most)
	if maxOutput == 0 || n <= most/maxOutput {
		out = min(n*maxOutput, most)
	}
	return Cost{Requests: 1, Tokens: min(in+out, most), InputTokens: in, OutputTokens: out}
}

// DefaultMaxKeys is the number of keys a Pacer tracks unless New is told
// otherwise: 16,384 keys of about 780 bytes with their table entries
// (a host, model and fingerprint key), ~13 MB at most.
const DefaultMaxKeys = 1 << 14

// minSweep is the smallest table that is swept.
const minSweep = 1024

// Pacer learns the rate limits of keys from the headers of their responses
// and tells requests how long to wait so as not to exceed them. Make one
// with [New]; it is safe for concurrent use. See the package documentation
// for the design.
//
// Every method takes the current time: the Pacer reads no clock (but for
// the origin New takes, which only differences are counted from), starts
// no goroutine and never sleeps. A key is whatever the caller scopes a limit
// to (the root uses host, model and credential fingerprint).
type Pacer[K comparable] struct {
	epoch time.Time
	max   int

	// m maps keys to their *entry: read without a lock (a lookup
	// writes no shared memory, which a read lock would), written under mu.
	m sync.Map
	n atomic.Int64 // the number of keys in m
	// last is the entry of the key looked up last, nil when swept: a
	// caller that sends to one key (one model, one API key) finds its
	// state without hashing the key or walking m's trie, which between
	// round trips the caches no longer hold (see lookup).
	last atomic.Pointer[entry[K]]

	mu      sync.Mutex // held to add keys and to sweep
	sweepAt int
	swept   int64
}

// entry is a key and its state, as m holds them.
type entry[K comparable] struct {
	key K
	// dropped is set by the sweep that takes the entry out of m, before
	// it does: an entry dropped is never left in last (see lookup).
	dropped atomic.Bool
	keyState
}

// lookup returns the state of key, nil when it has none. The key looked
// up last is compared first: at "1 KB, c=1" of bench/run.sh, where the
// caches hold little of the pacer between round trips, m's lookup (the
// key's hash over its strings, the trie's nodes, the entry) is a good part
// of an admit (BenchmarkPacerAdmitObserve/cold: 509–580 ns an admit and a
// settle without the shortcut, 440–500 with it). A miss costs a
// comparison and a store more than m's lookup.
func (p *Pacer[K]) lookup(key K) *keyState {
	if e := p.last.Load(); e != nil && e.key == key && !e.dropped.Load() {
		return &e.keyState
	}
	if v, ok := p.m.Load(key); ok {
		e := v.(*entry[K])
		p.last.Store(e)
		if e.dropped.Load() {
			// Swept since m's lookup: the sweep may have cleared last
			// before the store above; it is cleared again.
			p.last.CompareAndSwap(e, nil)
		}
		return &e.keyState
	}
	return nil
}

// New returns a Pacer that tracks at most maxKeys keys (0 or less:
// [DefaultMaxKeys]). A key seen when the table is full of keys in flight
// or near a limit is not paced (see sweep).
func New[K comparable](maxKeys int) *Pacer[K] {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Pacer[K]{epoch: time.Now(), max: maxKeys, sweepAt: min(minSweep, maxKeys), swept: math.MinInt64 / 2}
}

// keyState is the state of one key. Its lock is held only for the few
// arithmetic steps of one call, never across a wait.
type keyState struct {
	epoch *time.Time
	mu    keyLock
	// inflight counts the tickets not yet settled; a key with tickets in
	// flight is never swept.
	inflight int64
	dims     [NumDims]dimState
	// skip is how many more successes may be settled without reading
	// their headers (see Ticket.Observe): set under mu, read without it.
	skip atomic.Int32
}

// readEvery is how often, at least, the headers of a success are read
// while the key is comfortable (see Ticket.Observe): one in readEvery.
const readEvery = 8

// keyLock is the lock of a keyState: a sync.Mutex that is only ever tried
// (TryLock), a few times and then between yields of the processor, never
// waited for with Lock. Its critical sections are a few arithmetic steps.
// A Lock that parks makes a convoy when callers outnumber the cores (64 on
// 2, bench/run.sh's "1 KB, c=64"): the woken waiter waits in the run queue
// behind the others for more than a millisecond, the mutex turns to
// starvation mode and hands itself to goroutines that are not running, and
// every admit and settle pays goroutine switches (+35 % client CPU per
// request there). A tried lock has no waiters: its Unlock is one atomic
// operation.
type keyLock struct{ mu sync.Mutex }

// lockSpins is how many times keyLock.Lock tries before it yields: a
// few microseconds, longer than any critical section unless its holder
// was descheduled. A yield is dear: runtime.Gosched puts the goroutine on
// the global run queue, behind every runnable one (hundreds of µs at
// c=64 on 2 cores). bench's -solo at "1 KB, c=64", nine pairs: the
// transport's own time in place 18.2 µs on average with 16, 15.5 µs with
// 256 (client CPU 72.7 and 69.4 µs: within the noise).
const lockSpins = 256

// Lock takes the lock.
func (l *keyLock) Lock() {
	for i := 0; !l.mu.TryLock(); i++ {
		if i >= lockSpins {
			runtime.Gosched()
		}
	}
}

// Unlock releases the lock.
func (l *keyLock) Unlock() { l.mu.Unlock() }

// dimState is what is known of one dimension of one key. Positions are
// values of cum, the cost admitted so far: a request's position is cum
// after its admission, so that positions order requests by admission.
type dimState struct {
	cum     int64 // cost admitted so far
	known   bool  // a response has said something
	fresh   bool  // the known window has passed; no response of the next one yet
	limit   int64
	rem     int64 // the least remaining reported in this window
	eraPos  int64 // responses to requests admitted at or before it are of older windows
	lo      int64 // when this window is whole again, at the earliest
	resetAt int64 // when this window is whole again, at the latest
	span    int64 // the longest reset reported in this window (≈ its length)
	// period is the longest reset ever reported for the key (less its
	// slack), across windows: at most the window's length, whether the
	// server counts fixed windows or refills a bucket (see Ticket.Rates).
	period int64

	// held is the cost of the requests in flight (reserved, not settled)
	// admitted since the last time a window passed (after position
	// holdPos), prevHeld that of those admitted in the window before
	// (after prevHoldPos). Those admitted earlier are no longer counted: a
	// ticket never settled holds nothing back for more than two windows.
	held, prevHeld       int64
	holdPos, prevHoldPos int64

	// lost is the cost of this window's requests that the server may have
	// counted but whose responses said nothing (no response, no headers),
	// settled last at lostAt.
	lost, lostAt int64

	// unseen is the cost of this window's requests that succeeded and
	// whose headers were not read (Ticket.Observe): counted as used until
	// a report that surely includes them, one to a request admitted after
	// all of them (after position unseenPos) and sent after the last of
	// them was answered (after unseenAt): the server counted them before
	// it. (Admission order alone is not enough: a request admitted later
	// may reach the server first.)
	unseen, unseenPos, unseenAt int64
}

// Ticket is the reservation of a request admitted by [Pacer.Admit] or
// [Pacer.Reserve]. Settle it exactly once: [Ticket.Observe] when a
// response (of any status) came back, [Ticket.Release] when the request
// was not sent, [Ticket.Forget] when it was sent but no response came
// back. The zero Ticket (a key not paced) settles as a no-op.
type Ticket struct {
	s    *keyState
	pos  [NumDims]int64 // cum after this request was admitted
	cost Cost
	at   int64 // when it was admitted
}

func (p *Pacer[K]) ns(now time.Time) int64 { return int64(now.Sub(p.epoch)) }

// Admit decides whether a request of cost c for key may go at now. When it
// may, wait is 0 and t reserves c until it is settled. Otherwise wait is
// how long to wait for the window that does not cover c to be whole again,
// and t is the zero Ticket: the caller either waits and calls Admit again
// (another request may have taken the room meanwhile), or, when the wait
// is past its cap or its deadline, sends at once with [Pacer.Reserve] and
// lets the server decide.
//
// wait is 0 whenever the pacer does not know: no response of the key has
// said anything yet, the headers were absent or not believable, the window
// has passed and none of the next has been seen, or c is more than the
// whole limit (such a request can never be covered).
func (p *Pacer[K]) Admit(key K, c Cost, now time.Time) (wait time.Duration, t Ticket) {
	s := p.state(key, now)
	if s == nil {
		return 0, Ticket{}
	}
	at := p.ns(now)
	s.mu.Lock()
	if w := s.wait(&c, at); w > 0 {
		s.mu.Unlock()
		return time.Duration(w), Ticket{}
	}
	t = s.reserve(&c, at)
	s.mu.Unlock()
	return 0, t
}

// Reserve reserves c for a request of key sent at now whatever the pacer
// thinks: for a request whose wait was past what its caller accepts.
func (p *Pacer[K]) Reserve(key K, c Cost, now time.Time) Ticket {
	s := p.state(key, now)
	if s == nil {
		return Ticket{}
	}
	at := p.ns(now)
	s.mu.Lock()
	t := s.reserve(&c, at)
	s.mu.Unlock()
	return t
}

// Wait returns what [Pacer.Admit] would, without reserving anything: for
// snapshots and tests.
func (p *Pacer[K]) Wait(key K, c Cost, now time.Time) time.Duration {
	s := p.lookup(key)
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Duration(s.wait(&c, p.ns(now)))
}

// Learned returns what the pacer knows of key's windows at now, for the
// root's state snapshot: per dimension the limit, the least remaining
// reported in the current window, and the time until it is whole again;
// the zero Window for a dimension not known, or whose window has passed
// with none of the next seen.
func (p *Pacer[K]) Learned(key K, now time.Time) Limits {
	var l Limits
	s := p.lookup(key)
	if s == nil {
		return l
	}
	at := p.ns(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.dims {
		d := &s.dims[i]
		if d.known && !d.fresh && at < d.resetAt {
			l[i] = Window{Limit: d.limit, Remaining: d.rem, Reset: time.Duration(d.resetAt - at)}
		}
	}
	return l
}

// Len returns the number of keys tracked.
func (p *Pacer[K]) Len() int { return int(p.n.Load()) }

// wait returns how long (ns) a request of cost c must wait at `at`; 0 when
// it is covered or nothing is known.
func (s *keyState) wait(c *Cost, at int64) int64 {
	var w int64
	for i := range s.dims {
		d := &s.dims[i]
		if c[i] <= 0 || !d.known {
			continue
		}
		d.roll(at)
		if c[i] > d.limit {
			continue // never covered: let the server decide
		}
		if d.room() >= c[i] {
			continue
		}
		until := d.resetAt
		if d.fresh {
			// Used up before any response of the window came back:
			// wait for as long as a window lasted, from its start.
			until = d.resetAt + d.span
		}
		w = max(w, until-at)
	}
	return w
}

// room is what is left of the window for requests not yet admitted.
func (d *dimState) room() int64 { return d.rem - d.held - d.prevHeld - d.lost - d.unseen }

// roll starts the next window once the known one has passed: whole again,
// counted from the requests admitted from now on. Responses to requests
// admitted before are of the window that passed (or cannot be told from
// them) and are not heeded.
func (d *dimState) roll(at int64) {
	if d.fresh || at < d.resetAt {
		if d.fresh && at >= d.resetAt+d.span {
			// The guessed window passed too: another one starts.
			d.resetAt, d.lost, d.unseen = at, 0, 0
			d.shiftHeld()
		}
		return
	}
	d.fresh = true
	d.rem, d.eraPos, d.lost, d.unseen = d.limit, d.cum, 0, 0
	d.shiftHeld()
}

// shiftHeld starts a window for reservations: what was held is now of the
// previous window, and what was of the previous one is forgotten.
func (d *dimState) shiftHeld() {
	d.prevHeld, d.prevHoldPos = d.held, d.holdPos
	d.held, d.holdPos = 0, d.cum
}

func (s *keyState) reserve(c *Cost, at int64) Ticket {
	t := Ticket{s: s, cost: *c, at: at}
	for i := range s.dims {
		if c[i] > 0 {
			s.dims[i].cum += c[i]
			s.dims[i].held += c[i]
		}
		t.pos[i] = s.dims[i].cum
	}
	s.inflight++
	return t
}

// Observe settles t with the rate-limit headers of its response, of HTTP
// status code status, read at now.
//
// The headers of every response but a success (status 2xx) are read. Those
// of a success are read only when they may matter: while the key is
// comfortable (some dimension known, and every known one in a window not
// passed with at least half its limit left after what is reserved, lost
// and unseen) only one success in readEvery (8) is read. The others are
// counted as used (unseen) without a look at their headers, until a
// report that surely includes them: what they would have said is what
// the pacer expects. A response that said nothing is not the read one.
// Parsing the headers is most of the cost of a settle, and a response far
// from the limit says nothing the pacer acts on.
func (t Ticket) Observe(status int, h http.Header, now time.Time) {
	s := t.s
	if s == nil {
		return
	}
	if status >= 200 && status < 300 && t.settleUnread(now) {
		return
	}
	l := ParseHeaders(h, now)
	t.ObserveLimits(&l, now)
}

// settleUnread settles t, a success, without its headers, when the key is
// comfortable and s.skip allows, or when its report would be of windows
// that have passed; it reports whether it did.
func (t Ticket) settleUnread(now time.Time) bool {
	s := t.s
	at := int64(now.Sub(*s.epoch))
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.ofPassedWindows(at) {
		// What it reports merge would ignore: every known window passed
		// since it was admitted. With many requests in flight and short
		// windows (OpenAI's token reset is a few ms far from the limit)
		// every response after each window's end was read for nothing.
		s.settle()
		for i := range s.dims {
			s.dims[i].unhold(t.cost[i], t.pos[i])
		}
		return true
	}
	if s.skip.Load() <= 0 || !s.comfortable(at) {
		s.skip.Store(0)
		return false
	}
	s.skip.Add(-1)
	s.settle()
	for i := range s.dims {
		d := &s.dims[i]
		d.unhold(t.cost[i], t.pos[i])
		if t.cost[i] > 0 && d.known && t.pos[i] > d.eraPos {
			if d.unseen == 0 {
				d.unseenAt = at
			}
			d.unseen += t.cost[i]
			d.unseenPos = max(d.unseenPos, t.pos[i])
			d.unseenAt = max(d.unseenAt, at)
		}
	}
	return true
}

// ofPassedWindows reports whether some dimension of t's key is known and
// every known one has started a window since t was admitted, at `at`: a
// report to t would be of windows that have passed, and merge ignores
// those (a dimension not known yet is not learned from it: the next read
// teaches it). s.mu is held; it may roll windows.
func (t *Ticket) ofPassedWindows(at int64) bool {
	known := false
	for i := range t.s.dims {
		d := &t.s.dims[i]
		if !d.known {
			continue
		}
		known = true
		d.roll(at)
		if t.pos[i] > d.eraPos {
			return false
		}
	}
	return known
}

// comfortable reports whether some dimension of s is known and every
// known one is in a window not passed, with at least half its limit left
// after what is reserved, lost and unseen: far enough from the limit that
// a success's headers say nothing the pacer would act on. It may roll
// windows that have passed.
func (s *keyState) comfortable(at int64) bool {
	known := false
	for i := range s.dims {
		d := &s.dims[i]
		if !d.known {
			continue
		}
		known = true
		d.roll(at)
		if d.fresh || d.room() < d.limit/2 {
			return false
		}
	}
	return known
}

// ObserveLimits is [Ticket.Observe] with headers already parsed: it takes
// them whatever the status.
func (t Ticket) ObserveLimits(l *Limits, now time.Time) {
	s := t.s
	if s == nil {
		return
	}
	at := int64(now.Sub(*s.epoch))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settle()
	for i := range s.dims {
		d := &s.dims[i]
		d.unhold(t.cost[i], t.pos[i])
		if l[i].Known() {
			d.merge(&l[i], t.pos[i], t.at, at)
		} else {
			d.lose(t.cost[i], t.pos[i], at)
		}
	}
	switch {
	case !s.comfortable(at):
		s.skip.Store(0)
	case l.Known():
		s.skip.Store(readEvery - 1)
	default:
		// A response that said nothing (no headers, no response) is not
		// the read of one in readEvery: the count goes on.
	}
}

// merge folds w, reported by the response to the request admitted at
// position pos and time sent, and read at `at`, into d.
//
// The server counted the reset from some moment between sent and at, so
// its window ends between lo = sent+Reset (less the reset's slack) and
// hi = at+Reset. The known
// window ends between d.lo (the latest lo of its responses) and
// d.resetAt (the least hi): the pacer waits for the latter, so it never
// sends early. A response whose lo is past d.resetAt is surely of a later
// window (the server's window turned before our end of it, or its bucket
// refilled): it is believed, whatever it reports. One whose hi is before
// d.lo is surely of an earlier window (a straggler): it is ignored. The
// others are of the known window, where what is left only goes down: a
// report of more than rem is of an older state (a response that overtook
// a newer one) and is ignored.
func (d *dimState) merge(w *Window, pos, sent, at int64) {
	lo, hi := sent+int64(w.Reset-w.slack), at+int64(w.Reset)
	d.period = max(d.period, int64(w.Reset-w.slack))
	if d.known {
		d.roll(at)
	}
	switch {
	case !d.known:
		d.adopt(w, pos, sent, lo, hi, 0)
	case pos <= d.eraPos:
		// Admitted before the known window passed: of that window, or
		// cannot be told from it.
	case d.fresh:
		d.adopt(w, pos, sent, lo, hi, d.eraPos)
	case lo > d.resetAt:
		d.adopt(w, pos, sent, lo, hi, d.eraPos)
	case hi < d.lo:
		// Of an earlier window.
	case w.Remaining <= d.rem:
		if w.Remaining < d.rem && sent > d.lostAt {
			// Sent after the lost requests were over: the server
			// counted them before it, and in what it reports.
			d.lost = 0
		}
		d.seen(pos, sent)
		d.limit, d.rem = w.Limit, w.Remaining
		d.lo, d.resetAt = max(d.lo, lo), min(d.resetAt, hi)
		d.span = max(d.span, int64(w.Reset))
	}
}

// adopt takes w, reported by the response to the request admitted at
// position pos and sent at sent, as the start of a window.
func (d *dimState) adopt(w *Window, pos, sent, lo, hi, eraPos int64) {
	d.known, d.fresh = true, false
	d.limit, d.rem, d.eraPos, d.lost = w.Limit, w.Remaining, eraPos, 0
	d.seen(pos, sent)
	d.lo, d.resetAt, d.span = lo, hi, int64(w.Reset)
}

// seen takes a report to the request admitted at position pos and sent
// at sent: when it was admitted after every unseen request and sent after
// the last of them was answered, the server counted them before it, and
// in what it reports. Otherwise they stay counted: pacing errs towards
// waiting.
func (d *dimState) seen(pos, sent int64) {
	if d.unseen > 0 && pos > d.unseenPos && sent > d.unseenAt {
		d.unseen = 0
	}
}

// unhold ends the reservation of cost c of the request at position pos.
func (d *dimState) unhold(c, pos int64) {
	switch {
	case c <= 0:
	case pos > d.holdPos:
		d.held = max(d.held-c, 0)
	case pos > d.prevHoldPos:
		d.prevHeld = max(d.prevHeld-c, 0)
	}
}

// lose counts cost c of the request at position pos, over at `at`, as
// lost: the server may have counted it, no response said so.
func (d *dimState) lose(c, pos, at int64) {
	if c > 0 && d.known && pos > d.eraPos {
		d.lost += c
		d.lostAt = max(d.lostAt, at)
	}
}

// Release settles t for a request that was not sent: its cost is given
// back.
func (t Ticket) Release() {
	s := t.s
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settle()
	for i := range s.dims {
		s.dims[i].unhold(t.cost[i], t.pos[i])
	}
}

// Forget settles t for a request that was sent but got no response (a
// transport error, a cancel), at now: the server may have counted it, so
// its cost stays counted until a response to a request sent after now
// reports what is left, or the window passes.
func (t Ticket) Forget(now time.Time) {
	t.ObserveLimits(&Limits{}, now) // nothing known: every dimension loses it
}

func (s *keyState) settle() {
	if s.inflight > 0 {
		s.inflight--
	}
}

// state returns the state of key, made if need be; nil when the table is
// full of keys in use.
func (p *Pacer[K]) state(key K, now time.Time) *keyState {
	if s := p.lookup(key); s != nil {
		return s
	}
	at := p.ns(now)
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.lookup(key); s != nil {
		return s
	}
	if n := p.Len(); n >= p.max {
		// Full: sweep at most once a second, so that a table full of
		// keys in use does not cost a sweep per new key.
		if at-p.swept >= int64(time.Second) {
			p.sweep(at, true)
		}
		if p.Len() >= p.max {
			return nil
		}
	} else if n >= p.sweepAt {
		p.sweep(at, false)
	}
	e := &entry[K]{key: key, keyState: keyState{epoch: &p.epoch}}
	p.m.Store(key, e)
	p.n.Add(1)
	return &e.keyState
}

// sweep drops the keys that are idle: no ticket in flight and no known
// window still running. When the table is full it also drops the idle
// keys that are comfortable (every known window with at least half its
// limit left after what is reserved, lost and unseen: nothing a request
// would wait for soon), so that a new key is paced rather than one that
// has room: what is forgotten of them a response teaches again. It sets
// the size of the next sweep to twice what is left, so that sweeps cost
// O(1) per key added. p.mu is held.
func (p *Pacer[K]) sweep(at int64, full bool) {
	p.swept = at
	for k, v := range p.m.Range {
		e := v.(*entry[K])
		s := &e.keyState
		s.mu.Lock()
		idle := s.inflight == 0
		running := false
		for i := range s.dims {
			d := &s.dims[i]
			if d.known && (at < d.resetAt || d.fresh && at < d.resetAt+d.span) {
				running = true
			}
		}
		drop := idle && (!running || full && s.comfortable(at))
		s.mu.Unlock()
		if drop {
			e.dropped.Store(true)
			p.m.Delete(k)
			p.n.Add(-1)
			p.last.CompareAndSwap(e, nil)
		}
	}
	p.sweepAt = min(max(2*p.Len(), minSweep), p.max)
}
