package pacing

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llmtransport/llmtransport/internal/hint"

	"github.com/llmtransport/llmtransport/internal/workload"
)

// clock is a fake clock: the pacer reads no clock of its own.
type clock struct{ t time.Time }

func newClock() *clock                         { return &clock{time.Date(2026, 10, 21, 7, 0, 0, 0, time.UTC)} }
func (c *clock) now() time.Time                { return c.t }
func (c *clock) add(d time.Duration) time.Time { c.t = c.t.Add(d); return c.t }

var one = Cost{Requests: 1}

// reqs is a response's x-ratelimit-*-requests.
func reqs(limit, remaining int, reset time.Duration) Limits {
	return Limits{Requests: {int64(limit), int64(remaining), reset, 0}}
}

// admit admits c for key k and fails when it has to wait.
func admit(t *testing.T, p *Pacer[string], c Cost, now time.Time) Ticket {
	t.Helper()
	w, tk := p.Admit("k", c, now)
	if w != 0 {
		t.Fatalf("Admit waits %v, want 0", w)
	}
	return tk
}

func TestEstimate(t *testing.T) {
	cases := []struct {
		body, maxOut, n int64
		want            Cost
	}{
		{1000, 0, 0, Cost{Requests: 1, Tokens: 250, InputTokens: 250}},
		{1001, 100, 1, Cost{Requests: 1, Tokens: 351, InputTokens: 251, OutputTokens: 100}},
		{400, 256, 3, Cost{Requests: 1, Tokens: 100 + 768, InputTokens: 100, OutputTokens: 768}},
		{-5, -1, -2, Cost{Requests: 1}},
		{0, 1 << 62, 1 << 62, Cost{Requests: 1, Tokens: 1<<63/4 - 1, OutputTokens: 1<<63/4 - 1}},
	}
	for _, c := range cases {
		if got := Estimate(c.body, c.maxOut, c.n); got != c.want {
			t.Errorf("Estimate(%d, %d, %d) = %v, want %v", c.body, c.maxOut, c.n, got, c.want)
		}
	}
}

// TestUnknownNeverPaces: with no headers, -1 placeholders or junk, no
// request ever waits, however many are sent.
func TestUnknownNeverPaces(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	headers := []Limits{
		{},
		ParseHeaders(hdr("x-ratelimit-limit-tokens", "-1", "x-ratelimit-remaining-tokens", "-1", "x-ratelimit-reset-tokens", "0"), clk.now()),
		ParseHeaders(hdr("x-ratelimit-limit-requests", "10", "x-ratelimit-remaining-requests", "0"), clk.now()),
		ParseHeaders(hdr("x-ratelimit-limit-requests", "10", "x-ratelimit-remaining-requests", "11", "x-ratelimit-reset-requests", "1s"), clk.now()),
	}
	for i := range 1000 {
		w, tk := p.Admit("k", Cost{Requests: 1, Tokens: 1 << 40}, clk.add(time.Millisecond))
		if w != 0 {
			t.Fatalf("request %d waits %v with nothing known", i, w)
		}
		if i%2 == 0 {
			tk.ObserveLimits(&headers[i%len(headers)], clk.now())
		} // the others stay in flight
	}
}

func TestPacesUntilReset(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	tk := admit(t, p, one, clk.now())
	l := reqs(10, 2, time.Second)
	tk.ObserveLimits(&l, clk.now())
	admit(t, p, one, clk.now())
	admit(t, p, one, clk.now())
	if w, tk := p.Admit("k", one, clk.add(100*time.Millisecond)); w != 900*time.Millisecond || tk.s != nil {
		t.Fatalf("third request: wait %v, ticket %v; want 900ms and none", w, tk.s != nil)
	}
	if got, want := p.Learned("k", clk.now()), reqs(10, 2, 900*time.Millisecond); got != want {
		t.Fatalf("Learned = %+v, want %+v", got, want)
	}
	// Other keys are not held back.
	if w, _ := p.Admit("other", one, clk.now()); w != 0 {
		t.Fatalf("another key waits %v", w)
	}
	// Past the reset the window is whole again, for as many requests as
	// it holds, and then for a window's length from its start.
	clk.add(900 * time.Millisecond)
	if got := p.Learned("k", clk.now()); got != (Limits{}) {
		t.Fatalf("Learned after the window = %+v, want nothing", got)
	}
	for range 8 {
		admit(t, p, one, clk.now())
	}
	if w, _ := p.Admit("k", one, clk.now()); w != time.Second {
		t.Fatalf("after the limit of a window no response said anything of: wait %v, want 1s", w)
	}
	// A request that can never fit is not paced: the server decides.
	if w, _ := p.Admit("k", Cost{Requests: 11}, clk.now()); w != 0 {
		t.Fatalf("a request over the whole limit waits %v", w)
	}
}

// TestReservations: requests in flight hold their cost until they settle;
// a request not sent gives it back.
func TestReservations(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	c := Cost{Requests: 1, Tokens: 100}
	tk := admit(t, p, c, clk.now())
	l := Limits{Requests: {100, 99, time.Minute, 0}, Tokens: {1000, 400, time.Minute, 0}}
	tk.ObserveLimits(&l, clk.now())
	a := admit(t, p, c, clk.now())
	b := admit(t, p, c, clk.now())
	admit(t, p, c, clk.now())
	admit(t, p, c, clk.now())
	if w := p.Wait("k", c, clk.now()); w != time.Minute {
		t.Fatalf("4 × 100 tokens in flight of 400: wait %v, want 1m", w)
	}
	a.Release()
	admit(t, p, c, clk.now())
	// b's response says what the server counted: 300 left after it.
	l = Limits{Requests: {100, 97, time.Minute, 0}, Tokens: {1000, 300, time.Minute, 0}}
	b.ObserveLimits(&l, clk.now())
	// 300 - 3 × 100 still in flight = 0.
	if w := p.Wait("k", c, clk.now()); w != time.Minute {
		t.Fatalf("wait %v, want 1m", w)
	}
	if w := p.Wait("k", Cost{Requests: 1}, clk.now()); w != 0 {
		t.Fatalf("a request of no tokens waits %v", w)
	}
}

// TestOlderResponseNeverRaises: responses of concurrent calls arrive out of
// order; what is left in a window only goes down.
func TestOlderResponseNeverRaises(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	var tks []Ticket
	for range 6 {
		tks = append(tks, admit(t, p, one, clk.now()))
	}
	clk.add(10 * time.Millisecond)
	// The last sent answers first: 4 left after the six.
	l := reqs(10, 4, 50*time.Second)
	tks[5].ObserveLimits(&l, clk.now())
	// The first answers last, with what was left after it alone.
	for i := 4; i >= 0; i-- {
		l := reqs(10, 9-i, 50*time.Second+time.Duration(i)*time.Millisecond)
		tks[i].ObserveLimits(&l, clk.add(time.Millisecond))
	}
	for range 4 {
		admit(t, p, one, clk.now())
	}
	if w, _ := p.Admit("k", one, clk.now()); w == 0 {
		t.Fatal("a fifth request goes: an older response raised what is left")
	}
}

// TestDateSlack: a reset taken relative to the Date header (whole
// seconds) may be up to a second long, which must not make an older
// response look like one of a later window.
func TestDateSlack(t *testing.T) {
	clk := newClock() // 07:00:00
	p := New[string](0)
	a := admit(t, p, one, clk.now())
	b := admit(t, p, one, clk.now())
	anthropic := func(date string, remaining string) http.Header {
		return hdr("Date", date, "anthropic-ratelimit-requests-limit", "10",
			"anthropic-ratelimit-requests-remaining", remaining, "anthropic-ratelimit-requests-reset", "2026-10-21T07:01:00Z")
	}
	b.Observe(200, anthropic("Wed, 21 Oct 2026 07:00:00 GMT", "3"), clk.add(100*time.Millisecond))
	// a was counted first, just before 07:00:00 on the server's clock.
	a.Observe(200, anthropic("Wed, 21 Oct 2026 06:59:59 GMT", "5"), clk.add(50*time.Millisecond))
	if got := p.Learned("k", clk.now())[Requests].Remaining; got != 3 {
		t.Fatalf("remaining %d, want 3: the older response raised it", got)
	}
}

// TestWindowTurns: once the known window passed, responses to requests
// sent before are of the old window and ignored; a response that shows a
// later window is believed at once.
func TestWindowTurns(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	first := admit(t, p, one, clk.now())
	straggler := admit(t, p, one, clk.now())
	l := reqs(10, 8, time.Second)
	first.ObserveLimits(&l, clk.add(5*time.Millisecond))
	// The window passes; the straggler answers late, from the old window.
	clk.add(2 * time.Second)
	fresh := admit(t, p, one, clk.now())
	l = reqs(10, 0, 10*time.Millisecond)
	straggler.ObserveLimits(&l, clk.now())
	if w := p.Wait("k", one, clk.now()); w != 0 {
		t.Fatalf("a response of the passed window makes requests wait %v", w)
	}
	l = reqs(10, 9, time.Second)
	fresh.ObserveLimits(&l, clk.add(5*time.Millisecond))
	for range 9 - 0 {
		admit(t, p, one, clk.now())
	}
	if w := p.Wait("k", one, clk.now()); w == 0 {
		t.Fatal("the new window's remaining is not heeded")
	}

	// The server's window turns before the known end of it (a slow
	// response made that end late): a request sent after the turn, whose
	// window surely ends later, is believed.
	p = New[string](0)
	clk = newClock()
	slow := admit(t, p, one, clk.now())
	l = reqs(10, 0, time.Second)
	slow.ObserveLimits(&l, clk.add(3*time.Second)) // known end: now + 1s
	clk.add(500 * time.Millisecond)
	tk := p.Reserve("k", one, clk.now()) // sent anyway
	l = reqs(10, 9, time.Second)         // ends 1.5 s from here at the earliest
	tk.ObserveLimits(&l, clk.add(5*time.Millisecond))
	if w := p.Wait("k", one, clk.now()); w != 0 {
		t.Fatalf("the later window is not believed: wait %v", w)
	}
}

// TestLost: a request sent without a response that said anything stays
// counted until a response to a request sent after it reports.
func TestLost(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	tk := admit(t, p, one, clk.now())
	l := reqs(10, 2, time.Minute)
	tk.ObserveLimits(&l, clk.now())
	a := admit(t, p, one, clk.now())
	b := admit(t, p, one, clk.now())
	a.Forget(clk.now())
	b.ObserveLimits(&Limits{}, clk.now()) // a response without headers
	if w := p.Wait("k", one, clk.now()); w == 0 {
		t.Fatal("lost requests are no longer counted")
	}
	clk.add(time.Millisecond)
	c := p.Reserve("k", one, clk.now())
	l = reqs(10, 1, time.Minute)
	c.ObserveLimits(&l, clk.add(time.Millisecond))
	if w := p.Wait("k", one, clk.now()); w != 0 {
		t.Fatalf("wait %v after a later response reported 1 left", w)
	}
}

// TestLeakedTickets: tickets never settled (a caller's bug) hold nothing
// back for more than two windows: pacing never stalls.
func TestLeakedTickets(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	tk := admit(t, p, one, clk.now())
	l := reqs(10, 10, time.Second)
	tk.ObserveLimits(&l, clk.now())
	for range 10 {
		admit(t, p, one, clk.now()) // never settled
	}
	if w := p.Wait("k", one, clk.now()); w != time.Second {
		t.Fatalf("wait %v, want 1s", w)
	}
	clk.add(time.Second)
	if w := p.Wait("k", one, clk.now()); w != time.Second {
		t.Fatalf("in the next window, those in flight may land in it: wait %v, want 1s", w)
	}
	clk.add(time.Second)
	admit(t, p, one, clk.now())
}

// TestSplitTokens: Anthropic's input and output token limits are paced
// apart.
func TestSplitTokens(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	c := Estimate(400, 1000, 1) // 100 in, 1000 out
	tk := admit(t, p, c, clk.now())
	l := Limits{InputTokens: {40000, 30000, 10 * time.Second, 0}, OutputTokens: {8000, 1500, 20 * time.Second, 0}}
	tk.ObserveLimits(&l, clk.now())
	admit(t, p, c, clk.now())
	if w := p.Wait("k", c, clk.now()); w != 20*time.Second {
		t.Fatalf("output tokens used up: wait %v, want 20s", w)
	}
	if w := p.Wait("k", Estimate(400, 400, 1), clk.now()); w != 0 {
		t.Fatalf("a request that fits waits %v", w)
	}
}

func TestZeroTicket(t *testing.T) {
	var tk Ticket
	tk.Observe(200, hdr("x-ratelimit-limit-requests", "1"), time.Now())
	tk.ObserveLimits(&Limits{}, time.Now())
	tk.Release()
	tk.Forget(time.Now())
}

// TestMaxKeys: the table is bounded; a key that finds it full of keys in
// use is not paced; idle keys are swept, and when the table is full, idle
// keys with room too.
func TestMaxKeys(t *testing.T) {
	clk := newClock()
	p := New[int](4)
	var tks []Ticket
	for k := range 4 {
		_, tk := p.Admit(k, one, clk.now())
		tks = append(tks, tk)
	}
	if w, tk := p.Admit(99, one, clk.now()); w != 0 || tk.s != nil || p.Len() != 4 {
		t.Fatalf("full table: wait %v, ticket %v, %d keys", w, tk.s != nil, p.Len())
	}
	for _, tk := range tks {
		l := reqs(10, 5, time.Second)
		tk.ObserveLimits(&l, clk.now())
	}
	clk.add(2 * time.Second) // every window passed, nothing in flight
	if _, tk := p.Admit(99, one, clk.now()); tk.s == nil || p.Len() != 1 {
		t.Fatalf("after a sweep: ticket %v, %d keys, want one key", tk.s != nil, p.Len())
	}

	// A full table of idle keys whose windows run on: those with room are
	// swept for a new key, one near its limit (it would make a request
	// wait) is kept.
	p = New[int](4)
	for k := range 4 {
		_, tk := p.Admit(k, one, clk.now())
		l := reqs(10, 9, time.Hour)
		if k == 0 {
			l = reqs(10, 1, time.Hour)
		}
		tk.ObserveLimits(&l, clk.now())
	}
	clk.add(2 * time.Second)
	if _, tk := p.Admit(99, one, clk.now()); tk.s == nil || p.Len() != 2 {
		t.Fatalf("full of idle keys with room: ticket %v, %d keys, want key 99 paced beside key 0", tk.s != nil, p.Len())
	}
	if w := p.Wait(0, Cost{Requests: 2}, clk.now()); w <= 0 {
		t.Fatalf("key 0, 1 of 10 left, was forgotten: a request of 2 waits %v", w)
	}

	// Sweeps are amortised: many short-lived keys keep the table small.
	p = New[int](0)
	for k := range 10 * minSweep {
		_, tk := p.Admit(k, one, clk.add(time.Millisecond))
		tk.Release()
	}
	if n := p.Len(); n > 2*minSweep {
		t.Fatalf("%d keys kept", n)
	}
}

// TestLastKeySwept: the key looked up last, once swept, is not found
// through the shortcut to its old state: it gets a new one in the table,
// which snapshots see.
func TestLastKeySwept(t *testing.T) {
	clk := newClock()
	p := New[int](2)
	for _, k := range []int{1, 1, 0, 0} { // 0 is looked up last, in the table
		_, tk := p.Admit(k, one, clk.now())
		l := reqs(10, 5, time.Second)
		tk.ObserveLimits(&l, clk.now())
	}
	if e := p.last.Load(); e == nil || e.key != 0 {
		t.Fatal("key 0, looked up last, is not the shortcut's")
	}
	clk.add(2 * time.Second) // both idle, their windows passed
	if _, tk := p.Admit(99, one, clk.now()); tk.s == nil || p.Len() != 1 {
		t.Fatalf("after a sweep: ticket %v, %d keys, want key 99 alone", tk.s != nil, p.Len())
	}
	_, tk := p.Admit(0, one, clk.now())
	l := reqs(10, 5, time.Hour)
	tk.ObserveLimits(&l, clk.now())
	var keys []int
	p.Each(clk.now(), func(k int, l Limits) {
		if l[Requests].Known() {
			keys = append(keys, k)
		}
	})
	if p.Len() != 2 || len(keys) != 1 || keys[0] != 0 {
		t.Fatalf("key 0 admitted again: %d keys, known %v; want 2 keys, key 0 known", p.Len(), keys)
	}
}

// TestHotPathAllocs: admitting and observing a known key allocates
// nothing.
func TestHotPathAllocs(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	h := hdr("Date", testDate, "x-ratelimit-limit-requests", "10000", "x-ratelimit-remaining-requests", "9000", "x-ratelimit-reset-requests", "1m0s",
		"x-ratelimit-limit-tokens", "10000000", "x-ratelimit-remaining-tokens", "9000000", "x-ratelimit-reset-tokens", "1m0s")
	c := Estimate(1024, 256, 1)
	_, tk := p.Admit("k", c, clk.now())
	tk.Observe(200, h, clk.now())
	if n := testing.AllocsPerRun(1000, func() {
		_, tk := p.Admit("k", c, clk.now())
		tk.Observe(200, h, clk.now())
	}); n != 0 {
		t.Fatalf("%v allocations per admit and observe, want 0", n)
	}
}

// fakeLimit is a fixed-window limit, in memory, for synctest.
type fakeLimit struct {
	mu       sync.Mutex
	limit    int
	window   time.Duration
	start    time.Time
	idx      int64
	used     int
	ok, over int
}

func (f *fakeLimit) serve() Limits {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	idx := int64(now.Sub(f.start) / f.window)
	if idx != f.idx {
		f.idx, f.used = idx, 0
	}
	if f.used < f.limit {
		f.used++
		f.ok++
	} else {
		f.over++
	}
	end := f.start.Add(time.Duration(idx+1) * f.window)
	reset, _ := hint.ParseDuration(strconv.FormatInt(int64((end.Sub(now)+time.Millisecond-1)/time.Millisecond), 10) + "ms")
	return reqs(f.limit, f.limit-f.used, reset)
}

// fakeBucket is a token bucket, in memory, for synctest: capacity limit,
// refilled at limit per window, whose reset is the time until it is full
// (as OpenAI and Anthropic define theirs).
type fakeBucket struct {
	mu       sync.Mutex
	limit    float64
	window   time.Duration
	level    float64
	at       time.Time
	ok, over int
}

func (f *fakeBucket) serve() Limits {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	rate := f.limit / f.window.Seconds()
	f.level = min(f.limit, f.level+rate*now.Sub(f.at).Seconds())
	f.at = now
	if f.level >= 1 {
		f.level--
		f.ok++
	} else {
		f.over++
	}
	full := time.Duration((f.limit - f.level) / rate * float64(time.Second))
	full = (full + time.Millisecond - 1).Truncate(time.Millisecond)
	if full <= 0 {
		full = time.Millisecond
	}
	return reqs(int(f.limit), int(f.level), full)
}

// paceCallers runs 16 callers for 20 s of fake time (synctest) against
// serve, the limiter, with latencies of 1 to maxLat each way, varied so
// that responses arrive out of order. Each answer is settled as the root
// settles a success (Observe, 200, the headers): far from the limit most
// go unread. (An answer over the limit fails the test anyway.)
func paceCallers(t *testing.T, maxLat time.Duration, serve func() Limits) {
	p := New[string](0)
	stop := time.Now().Add(20 * time.Second)
	step := max(maxLat/10, time.Millisecond)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				w, tk := p.Admit("k", one, time.Now())
				if w > 0 {
					time.Sleep(w)
					continue
				}
				time.Sleep(time.Duration(1+(g*7+i*3)%10) * step) // to the server
				l := serve()
				time.Sleep(time.Duration(1+(g*5+i*11)%10) * step) // and back
				tk.Observe(200, limitsHeader(l), time.Now())
			}
		})
	}
	wg.Wait()
}

// TestPacedCallers: 16 callers against a fixed window and against a token
// bucket (whose reset is "full again", as OpenAI and Anthropic define
// theirs) of 30 requests per second, with latencies up to 10, 100 and
// 300 ms each way: no request over the limit, and the limit used.
func TestPacedCallers(t *testing.T) {
	for _, maxLat := range []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond} {
		t.Run("window/"+maxLat.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeLimit{limit: 30, window: time.Second, start: time.Now()}
				paceCallers(t, maxLat, f.serve)
				check(t, f.ok, f.over, 20*30, 95)
			})
		})
		t.Run("bucket/"+maxLat.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeBucket{limit: 30, window: time.Second, level: 30, at: time.Now()}
				paceCallers(t, maxLat, f.serve)
				check(t, f.ok, f.over, 30+20*30, 90)
			})
		})
	}
}

func check(t *testing.T, ok, over, possible, pct int) {
	t.Helper()
	t.Logf("%d ok, %d over the limit, of %d possible", ok, over, possible)
	if over != 0 {
		t.Errorf("%d requests over the limit", over)
	}
	if ok < possible*pct/100 {
		t.Errorf("%d ok, want ≥ %d%% of %d", ok, pct, possible)
	}
}

// TestPacedMixedCosts is TestSimulation's second scenario in fake time
// (synctest), free of the machine's load: 30 requests and 7,500 tokens per
// 500 ms window, requests of 95–405 tokens, 16 callers, answers 20–300 ms
// after the server counted them, for 60 s.
func TestPacedMixedCosts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 500 * time.Millisecond
		var mu sync.Mutex
		start := time.Now()
		idx := int64(-1)
		var usedR, usedT, ok, over, okT int64
		serve := func(c Cost) Limits {
			mu.Lock()
			defer mu.Unlock()
			now := time.Now()
			if i := int64(now.Sub(start) / window); i != idx {
				idx, usedR, usedT = i, 0, 0
			}
			if usedR+1 <= 30 && usedT+c[Tokens] <= 7500 {
				usedR, usedT, ok, okT = usedR+1, usedT+c[Tokens], ok+1, okT+c[Tokens]
			} else {
				over++
			}
			r := (start.Add(time.Duration(idx+1)*window).Sub(now) + time.Millisecond - 1).Truncate(time.Millisecond)
			return Limits{Requests: {30, 30 - usedR, r, 0}, Tokens: {7500, 7500 - usedT, r, 0}}
		}
		p := New[string](0)
		stop := time.Now().Add(60 * time.Second)
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 18))
				for time.Now().Before(stop) {
					c := Estimate(int64(380+rng.IntN(40)), int64(25*rng.IntN(13)), 1)
					w, tk := p.Admit("k", c, time.Now())
					if w > 0 {
						time.Sleep(w)
						continue
					}
					time.Sleep(time.Millisecond)
					l := serve(c)
					time.Sleep(20*time.Millisecond + time.Duration(rng.Int64N(int64(280*time.Millisecond))))
					tk.Observe(200, limitsHeader(l), time.Now())
				}
			})
		}
		wg.Wait()
		windows := int64(60 * time.Second / window)
		util := max(float64(ok)/float64(windows*30), float64(okT)/float64(windows*7500))
		t.Logf("%d ok, %d over the limit, %.1f%% of the limit", ok, over, 100*util)
		if over != 0 {
			t.Errorf("%d requests over the limit", over)
		}
		if util < 0.9 {
			t.Errorf("%.1f%% of the limit, want ≥ 90%%", 100*util)
		}
	})
}

// TestConcurrent hammers one pacer from many goroutines (for -race).
func TestConcurrent(t *testing.T) {
	p := New[int](64)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				now := time.Now()
				_, tk := p.Admit(i%100, Cost{Requests: 1, Tokens: int64(i % 300)}, now)
				switch i % 4 {
				case 0:
					tk.Release()
				case 1:
					tk.Forget(now)
				default:
					l := reqs(100, (g*i)%101, time.Duration(1+i%50)*time.Millisecond)
					tk.ObserveLimits(&l, time.Now())
				}
				p.Wait(i%100, one, now)
			}
		})
	}
	wg.Wait()
}

func BenchmarkPacerAdmitObserve(b *testing.B) {
	h := hdr("Date", testDate, "x-ratelimit-limit-requests", "10000", "x-ratelimit-remaining-requests", "9000", "x-ratelimit-reset-requests", "1m0s",
		"x-ratelimit-limit-tokens", "10000000", "x-ratelimit-remaining-tokens", "9000000", "x-ratelimit-reset-tokens", "1m0s")
	c := Estimate(1024, 256, 1)
	b.Run("serial", func(b *testing.B) {
		p := New[string](0)
		b.ReportAllocs()
		for b.Loop() {
			now := time.Now()
			_, tk := p.Admit("k", c, now)
			tk.Observe(200, h, now)
		}
	})
	// cold: an admit and a settle after a round trip's worth of other
	// work, as at bench/run.sh's "1 KB, c=1", where the caches hold little
	// of the pacer's state and code: each iteration first writes a line in
	// every 64 bytes of 2 MiB. Only the pacer's calls are timed, by
	// the clock they read: "ns/call" (ns/op is mostly the eviction).
	b.Run("cold", func(b *testing.B) {
		type key struct {
			host, model string
			cred        uint64
		}
		k := key{"api.openai.com", "gpt-4o-mini", 0x9e3779b97f4a7c15}
		evict := make([]byte, workload.EvictSize)
		p := New[key](0)
		var in time.Duration
		b.ReportAllocs()
		for b.Loop() {
			workload.Evict(evict)
			start := time.Now()
			_, tk := p.Admit(k, c, start)
			end := time.Now()
			tk.Observe(200, h, end)
			in += time.Since(start)
		}
		b.ReportMetric(float64(in.Nanoseconds())/float64(b.N), "ns/call")
	})
	for _, par := range []int{1, 32} {
		name := "parallel"
		if par > 1 {
			// More callers than cores, as bench/run.sh's "1 KB, c=64"
			// on two: where a lock that parks makes a convoy.
			name = "parallel" + strconv.Itoa(par)
		}
		b.Run(name, func(b *testing.B) {
			p := New[string](0)
			b.ReportAllocs()
			b.SetParallelism(par)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					now := time.Now()
					_, tk := p.Admit("k", c, now)
					tk.Observe(200, h, now)
				}
			})
		})
	}
}

// FuzzPacer runs a sequence of operations read from the input on one key
// and checks the invariants: no panic, no negative wait, no wait past two
// of the longest resets reported, no reservation below zero, and no wait
// at all while nothing known was reported.
func FuzzPacer(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add([]byte{0, 0, 0, 3, 10, 200, 3, 0, 0, 4, 4, 4, 4, 4, 5, 250, 0})
	f.Add([]byte{0, 1, 6, 40, 0, 1, 0, 1, 6, 7, 6, 9, 0, 1, 6, 12, 5, 3, 0, 1, 6, 5})
	// Successes far from the limit, settled unread, a read, the window's
	// end.
	f.Add([]byte{0, 1, 7, 3, 0, 1, 0, 1, 0, 1, 6, 0, 7, 9, 0, 1, 0, 1, 4, 1, 7, 2, 5, 30, 0, 1, 7, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		clk := newClock()
		p := New[int](0)
		var tks []Ticket
		known := false
		var longest time.Duration
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%8, int64(ops[i+1])
			c := Cost{Requests: 1, Tokens: arg}
			switch op {
			case 0:
				w, tk := p.Admit(0, c, clk.now())
				if w < 0 || w > 2*longest || !known && w != 0 {
					t.Fatalf("wait %v (known %v, longest reset %v)", w, known, longest)
				}
				if w == 0 {
					tks = append(tks, tk)
				}
			case 1:
				tks = append(tks, p.Reserve(0, c, clk.now()))
			case 2, 3:
				if len(tks) == 0 {
					continue
				}
				tk := tks[0]
				tks = tks[1:]
				l := Limits{Requests: {arg % 7, arg % 5, time.Duration(arg%9) * 100 * time.Millisecond, 0},
					Tokens: {arg, arg / 2, time.Duration(arg%4) * time.Second, 0}}
				if op == 3 {
					l = Limits{}
				}
				for _, w := range l {
					if w.Known() {
						known = true
						longest = max(longest, w.Reset)
					}
				}
				tk.ObserveLimits(&l, clk.now())
			case 4:
				if len(tks) > 0 {
					if arg%2 == 0 {
						tks[0].Release()
					} else {
						tks[0].Forget(clk.now())
					}
					tks = tks[1:]
				}
			case 5:
				clk.add(time.Duration(arg) * 10 * time.Millisecond)
			case 6:
				// A response settled by its status and headers: a
				// success's may go unread.
				if len(tks) == 0 {
					continue
				}
				status := 200
				if arg%5 == 0 {
					status = 429
				}
				h := reqHeader(int(arg%50), int(arg%31), time.Duration(arg%9)*100*time.Millisecond)
				if l := ParseHeaders(h, clk.now()); l[Requests].Known() {
					known = true
					longest = max(longest, l[Requests].Reset)
				}
				tks[0].Observe(status, h, clk.now())
				tks = tks[1:]
			case 7:
				// A success far from its limit: the next ones may go
				// unread.
				if len(tks) == 0 {
					continue
				}
				h := reqHeader(1000, 1000-int(arg), time.Duration(arg%9+1)*100*time.Millisecond)
				known = true
				longest = max(longest, time.Duration(arg%9+1)*100*time.Millisecond)
				tks[0].Observe(200, h, clk.now())
				tks = tks[1:]
			}
			s := p.lookup(0)
			if s == nil {
				continue
			}
			for i := range s.dims {
				if d := &s.dims[i]; d.held < 0 || d.prevHeld < 0 || d.lost < 0 || d.unseen < 0 {
					t.Fatalf("negative reservation: %+v", *d)
				}
			}
		}
		// Every ticket settled: nothing is held, nothing is in flight.
		for _, tk := range tks {
			tk.Release()
		}
		s := p.lookup(0)
		if s == nil {
			return
		}
		if n := p.InFlight(); n != 0 {
			t.Fatalf("%d tickets in flight after all were settled", n)
		}
		for i := range s.dims {
			if d := &s.dims[i]; d.held != 0 || d.prevHeld != 0 {
				t.Fatalf("held after all were settled: %+v", *d)
			}
		}
	})
}

// TestRates: a key's rate is its limit per the longest reset it ever
// reported (less the slack of a Date-relative reset), kept across windows;
// nothing before a believable response, nothing for the zero Ticket.
func TestRates(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	tk := admit(t, p, one, clk.now())
	if r := tk.Rates(); r != ([NumDims]Rate{}) {
		t.Errorf("Rates before any response: %v", r)
	}
	if r := (Ticket{}).Rates(); r != ([NumDims]Rate{}) {
		t.Errorf("Rates of the zero Ticket: %v", r)
	}
	l := Limits{Requests: {100, 99, 120 * time.Millisecond, 0}, Tokens: {30000, 29000, 2 * time.Second, time.Second}}
	tk.ObserveLimits(&l, clk.add(10*time.Millisecond))
	tk = admit(t, p, one, clk.now())
	want := [NumDims]Rate{Requests: {100, 120 * time.Millisecond}, Tokens: {30000, time.Second}}
	if r := tk.Rates(); r != want {
		t.Errorf("Rates: %v, want %v", r, want)
	}
	// A longer reset, later, lengthens the window; a shorter one, in a
	// later window, does not shorten it.
	l = reqs(100, 10, 54*time.Second)
	tk.ObserveLimits(&l, clk.add(10*time.Millisecond))
	clk.add(time.Minute)
	tk = admit(t, p, one, clk.now())
	l = reqs(100, 99, time.Second)
	tk.ObserveLimits(&l, clk.add(10*time.Millisecond))
	tk = admit(t, p, one, clk.now())
	if r := tk.Rates()[Requests]; r != (Rate{100, 54 * time.Second}) || !r.Known() {
		t.Errorf("Rates after a longer reset then a shorter one: %v, want 100 per 54s", r)
	}
	tk.Release()
}

// TestLongestUncovered: with two dimensions that cannot cover a request,
// the wait is until the later of their windows is whole again.
func TestLongestUncovered(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	tk := admit(t, p, Cost{Requests: 1, Tokens: 10}, clk.now())
	l := Limits{Requests: {10, 0, 3 * time.Second, 0}, Tokens: {100, 0, 7 * time.Second, 0}}
	tk.ObserveLimits(&l, clk.now())
	if w, _ := p.Admit("k", Cost{Requests: 1, Tokens: 10}, clk.now()); w != 7*time.Second {
		t.Errorf("wait %v, want 7s, the later window", w)
	}
}
