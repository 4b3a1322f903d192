package pacing

import "time"

// Each calls f with every key the pacer tracks and what [Pacer.Learned]
// returns for it at now, in no order. f runs with no lock held: it may call
// the pacer.
func (p *Pacer[K]) Each(now time.Time, f func(key K, l Limits)) {
	p.mu.RLock()
	keys := make([]K, 0, len(p.m))
	for k := range p.m {
		keys = append(keys, k)
	}
	p.mu.RUnlock()
	for _, k := range keys {
		f(k, p.Learned(k, now))
	}
}

// InFlight returns the number of tickets not yet settled, over every key:
// for tests that no path leaves a reservation behind.
func (p *Pacer[K]) InFlight() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var n int64
	for _, s := range p.m {
		s.mu.Lock()
		n += s.inflight
		s.mu.Unlock()
	}
	return n
}
