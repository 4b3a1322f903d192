package pacing

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// reqHeader is a response's x-ratelimit-*-requests as headers.
func reqHeader(limit, remaining int, reset time.Duration) http.Header {
	return hdr("x-ratelimit-limit-requests", strconv.Itoa(limit),
		"x-ratelimit-remaining-requests", strconv.Itoa(remaining),
		"x-ratelimit-reset-requests", reset.String())
}

// TestUnreadSuccesses: while a key is comfortable, seven successes in
// eight settle without their headers being read, and each counts as used;
// the eighth is read, and its report, which includes them, replaces what
// they were counted as.
func TestUnreadSuccesses(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	tk := admit(t, p, one, clk.now())
	tk.Observe(200, reqHeader(100, 90, time.Minute), clk.now()) // read: 90 left, comfortable

	// Seven successes whose headers say 0 left: not read, each counted.
	for i := range readEvery - 1 {
		tk := admit(t, p, one, clk.add(time.Millisecond))
		tk.Observe(200, reqHeader(100, 0, time.Minute), clk.now())
		if l := p.Learned("k", clk.now()); l[Requests].Remaining != 90 {
			t.Fatalf("success %d: its headers were read (remaining %d, want 90)", i+1, l[Requests].Remaining)
		}
	}
	// 90 left, 7 unseen: a request of 83 is covered, one of 84 is not.
	if w := p.Wait("k", Cost{Requests: 83}, clk.now()); w != 0 {
		t.Fatalf("83 of the 83 left wait %v", w)
	}
	if w := p.Wait("k", Cost{Requests: 84}, clk.now()); w <= 0 {
		t.Fatal("84 of the 83 left do not wait")
	}

	// The eighth is read: admitted after all seven, its report includes
	// them, and the unseen count goes.
	tk = admit(t, p, one, clk.add(time.Millisecond))
	tk.Observe(200, reqHeader(100, 82, time.Minute), clk.now())
	if l := p.Learned("k", clk.now()); l[Requests].Remaining != 82 {
		t.Fatalf("the eighth success was not read (remaining %d, want 82)", l[Requests].Remaining)
	}
	if w := p.Wait("k", Cost{Requests: 82}, clk.now()); w != 0 {
		t.Fatalf("82 of the 82 left wait %v: the unseen were counted twice", w)
	}
}

// TestUnreadKeptUntilIncluded: a report to a request admitted before an
// unseen one does not include it: the unseen cost stays counted.
func TestUnreadKeptUntilIncluded(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	tk := admit(t, p, one, clk.now())
	tk.Observe(200, reqHeader(100, 90, time.Minute), clk.now())
	early := admit(t, p, one, clk.add(time.Millisecond)) // answered last
	for range 3 {
		tk := admit(t, p, one, clk.add(time.Millisecond))
		tk.Observe(200, reqHeader(100, 0, time.Minute), clk.now()) // unread
	}
	// The early request's report: read (a non-success is always read),
	// lower than 90, of a state before the three.
	early.Observe(500, reqHeader(100, 89, time.Minute), clk.add(time.Millisecond))
	if l := p.Learned("k", clk.now()); l[Requests].Remaining != 89 {
		t.Fatalf("remaining %d, want 89", l[Requests].Remaining)
	}
	if w := p.Wait("k", Cost{Requests: 87}, clk.now()); w <= 0 {
		t.Fatal("the three unseen requests were forgotten: 87 of 86 left do not wait")
	}
	if w := p.Wait("k", Cost{Requests: 86}, clk.now()); w != 0 {
		t.Fatalf("86 of the 86 left wait %v", w)
	}
}

// TestReadWhenNotComfortable: with less than half the limit left, or a
// non-success, or a window passed, every response's headers are read.
func TestReadWhenNotComfortable(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	tk := admit(t, p, one, clk.now())
	tk.Observe(200, reqHeader(100, 60, time.Minute), clk.now())
	// 60 left: comfortable, but a 429 is read all the same.
	tk = admit(t, p, one, clk.add(time.Millisecond))
	tk.Observe(429, reqHeader(100, 49, time.Minute), clk.now())
	if l := p.Learned("k", clk.now()); l[Requests].Remaining != 49 {
		t.Fatalf("a 429 was not read (remaining %d, want 49)", l[Requests].Remaining)
	}
	// 49 left, under half: every success is read.
	for want := 48; want > 40; want-- {
		tk := admit(t, p, one, clk.add(time.Millisecond))
		tk.Observe(200, reqHeader(100, want, time.Minute), clk.now())
		if l := p.Learned("k", clk.now()); l[Requests].Remaining != int64(want) {
			t.Fatalf("a success under half the limit was not read (remaining %d, want %d)", l[Requests].Remaining, want)
		}
	}
	// The window passes: the next success is read, whatever the count.
	clk.add(time.Minute)
	tk = admit(t, p, one, clk.now())
	tk.Observe(200, reqHeader(100, 99, time.Minute), clk.add(time.Millisecond))
	if l := p.Learned("k", clk.now()); l[Requests].Remaining != 99 {
		t.Fatalf("the first success of a new window was not read (remaining %d, want 99)", l[Requests].Remaining)
	}
}

// TestUnreadNeverWithoutKnown: a key with nothing known reads every
// response, so that it learns from the first that says something.
func TestUnreadNeverWithoutKnown(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	for range 20 {
		tk := admit(t, p, one, clk.add(time.Millisecond))
		tk.Observe(200, http.Header{}, clk.now())
	}
	tk := admit(t, p, one, clk.add(time.Millisecond))
	tk.Observe(200, reqHeader(10, 3, time.Minute), clk.now())
	if l := p.Learned("k", clk.now()); l[Requests].Remaining != 3 {
		t.Fatalf("remaining %d, want 3", l[Requests].Remaining)
	}
}

// TestUnreadReorderedAtTheServer: X1..X7 are admitted, then Y, but the
// server counts Y first (59 left), then the Xs (52 left). The Xs answer
// first, unread; then Y is read. Y was admitted after them but sent
// before they were answered: its report does not surely include them,
// and they stay counted.
func TestUnreadReorderedAtTheServer(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	tk := admit(t, p, one, clk.now())
	tk.Observe(200, reqHeader(100, 60, time.Minute), clk.now()) // read: 60 left
	var xs []Ticket
	for range readEvery - 1 {
		xs = append(xs, admit(t, p, one, clk.add(time.Millisecond)))
	}
	y := admit(t, p, one, clk.add(time.Millisecond))
	for i, x := range xs {
		x.Observe(200, reqHeader(100, 58-i, time.Minute), clk.add(time.Millisecond)) // unread
	}
	y.Observe(200, reqHeader(100, 59, time.Minute), clk.add(time.Millisecond)) // read
	if w := p.Wait("k", Cost{Requests: 53}, clk.now()); w == 0 {
		t.Fatal("53 of the 52 the server has left do not wait: Y's report dropped the unread Xs")
	}
	if w := p.Wait("k", Cost{Requests: 52}, clk.now()); w != 0 {
		t.Fatalf("52 of the 52 left wait %v", w)
	}
}

// TestUnreadNotResetBySilence: a response that says nothing (a transport
// error, an error without headers) is not the read one in eight: the
// successes around it are still read one in eight, and another process's
// use of the key shows up.
func TestUnreadNotResetBySilence(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	tk := admit(t, p, one, clk.now())
	tk.Observe(200, reqHeader(1000, 900, time.Minute), clk.now()) // read: 900 left
	rem := 800                                                    // another process used 100
	for range 4 {
		for range readEvery - 1 {
			tk := admit(t, p, one, clk.add(time.Millisecond))
			rem--
			tk.Observe(200, reqHeader(1000, rem, time.Minute), clk.now())
		}
		tk := admit(t, p, one, clk.add(time.Millisecond))
		rem--
		if rem%2 == 0 {
			tk.Forget(clk.add(time.Millisecond))
		} else {
			tk.Observe(502, http.Header{}, clk.add(time.Millisecond))
		}
	}
	if l := p.Learned("k", clk.now()); l[Requests].Remaining > 800 {
		t.Fatalf("%d successes settled and none read: remaining %d, the server has %d", 4*(readEvery-1), l[Requests].Remaining, rem)
	}
}

// limitsHeader writes the Requests and Tokens of l as OpenAI's headers.
func limitsHeader(l Limits) http.Header {
	h := http.Header{}
	for _, d := range []struct {
		dim  Dim
		name string
	}{{Requests, "requests"}, {Tokens, "tokens"}} {
		if w := l[d.dim]; w.Known() {
			h.Set("X-Ratelimit-Limit-"+d.name, strconv.FormatInt(w.Limit, 10))
			h.Set("X-Ratelimit-Remaining-"+d.name, strconv.FormatInt(w.Remaining, 10))
			h.Set("X-Ratelimit-Reset-"+d.name, w.Reset.String())
		}
	}
	return h
}

// TestPassedWindowUnread: a success to a request admitted before every
// known window passed is settled without its headers, whatever the count
// of unread ones (its report would be of windows that have passed, which
// merge ignores): a dimension it reports first is learned from the next
// read, not from it. A request admitted after the window passed is read.
func TestPassedWindowUnread(t *testing.T) {
	clk := newClock()
	p := New[string](0)
	tk := admit(t, p, one, clk.now())
	tk.Observe(200, reqHeader(100, 40, time.Second), clk.now()) // under half: every success is read
	old := admit(t, p, one, clk.add(time.Millisecond))
	clk.add(2 * time.Second) // the window passed with old in flight
	next := admit(t, p, one, clk.now())
	both := hdr("x-ratelimit-limit-requests", "100", "x-ratelimit-remaining-requests", "30", "x-ratelimit-reset-requests", "1s",
		"x-ratelimit-limit-tokens", "5000", "x-ratelimit-remaining-tokens", "4000", "x-ratelimit-reset-tokens", "1s")
	old.Observe(200, both, clk.add(time.Millisecond))
	if l := p.Learned("k", clk.now()); l[Tokens].Known() {
		t.Fatalf("a success of a passed window was read: tokens %+v", l[Tokens])
	}
	next.Observe(200, both, clk.add(time.Millisecond))
	l := p.Learned("k", clk.now())
	if l[Tokens].Remaining != 4000 || l[Requests].Remaining != 30 {
		t.Fatalf("the first success of the new window was not read: %+v", l)
	}
	if n := p.InFlight(); n != 0 {
		t.Fatalf("%d in flight", n)
	}
}
