package llmtransport

import (
	"sync"
	"sync/atomic"
	"time"
)

// cooldowns remembers, per (host, model), until when the server asked
// callers to wait after a rate limit, so that concurrent requests for the
// same model wait it out instead of each collecting its own 429.
//
// Reads are lock-free: the map is immutable behind an atomic pointer and
// replaced (copy on write) when a cooldown is set; expired cooldowns are
// dropped then. Only waits the transport would honour are recorded, so the
// map stays as small as the set of models throttled in the last
// [WithMaxRetryWait].
type cooldowns struct {
	until atomic.Pointer[map[circuitKey]time.Time]

	// mu serialises the writers of until.
	mu sync.Mutex
}

// remaining returns how long requests for key should still wait.
func (c *cooldowns) remaining(key circuitKey) time.Duration {
	m := c.until.Load()
	if m == nil {
		return 0
	}
	u, ok := (*m)[key]
	if !ok {
		return 0
	}
	return max(time.Until(u), 0)
}

// set starts (or lengthens) the cooldown of key until t.
func (c *cooldowns) set(key circuitKey, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.until.Load()
	if old != nil {
		if u, ok := (*old)[key]; ok && !t.After(u) {
			return
		}
	}
	now := time.Now()
	m := make(map[circuitKey]time.Time)
	if old != nil {
		for k, u := range *old {
			if u.After(now) {
				m[k] = u
			}
		}
	}
	m[key] = t
	c.until.Store(&m)
}
