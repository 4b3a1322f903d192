package pacing

import "time"

// Each calls f with every key the pacer tracks and what [Pacer.Learned]
// returns for it at now, in no order. f runs with no lock held: it may call
// the pacer.
func (p *Pacer[K]) Each(now time.Time, f func(key K, l Limits)) {
	for k := range p.m.Range {
		f(k.(K), p.Learned(k.(K), now))
	}
}

// InFlight returns the number of tickets not yet settled, over every key:
// for tests that no path leaves a reservation behind.
func (p *Pacer[K]) InFlight() int64 {
	var n int64
	for _, v := range p.m.Range {
		s := &v.(*entry[K]).keyState
		s.mu.Lock()
		n += s.inflight
		s.mu.Unlock()
	}
	return n
}

// Rate is a rate limit as a limiter shared by several processes needs it:
// Limit units per Window.
type Rate struct {
	Limit  int64
	Window time.Duration
}

// Known reports whether r says anything.
func (r Rate) Known() bool { return r.Limit > 0 && r.Window > 0 }

// Rates returns the rate of each dimension of the key t was admitted for:
// the limit its responses reported last, per the longest reset they ever
// reported (less the slack of a reset taken from a Date header). That
// reset is at most the window's length — in a fixed window it is the time
// left of the window, in a bucket the time it takes to refill what was
// used — so Limit/Window is never below the server's rate: it starts
// generous and comes down to the server's as the key's use of the limit
// grows. A dimension of which no response said anything is the zero Rate,
// and so is every dimension of the zero Ticket.
func (t Ticket) Rates() (r [NumDims]Rate) {
	s := t.s
	if s == nil {
		return r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.dims {
		if d := &s.dims[i]; d.known && d.limit > 0 && d.period > 0 {
			r[i] = Rate{Limit: d.limit, Window: time.Duration(d.period)}
		}
	}
	return r
}
