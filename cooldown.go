package llmtransport

import (
	"sync"
	"sync/atomic"
	"time"
)

// cooldowns remembers, per (host, model), until when the server asked
// callers to wait after a rate limit, so that concurrent requests for the
// same model wait it out instead of each collecting its own 429. While no
// cooldown is active a lookup is one atomic load.
type cooldowns struct {
	active atomic.Int32 // len(until), read without the lock

	mu    sync.Mutex
	until map[circuitKey]time.Time
}

// remaining returns how long requests for key should still wait.
func (c *cooldowns) remaining(key circuitKey) time.Duration {
	if c.active.Load() == 0 {
		return 0
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.until[key]
	if !ok {
		return 0
	}
	if d := u.Sub(now); d > 0 {
		return d
	}
	c.deleteLocked(key)
	return 0
}

// set starts (or lengthens) the cooldown of key until t.
func (c *cooldowns) set(key circuitKey, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.until == nil {
		c.until = make(map[circuitKey]time.Time)
	}
	if u, ok := c.until[key]; ok && !t.After(u) {
		return
	}
	c.until[key] = t
	c.active.Store(int32(len(c.until)))
	// Forget expired cooldowns now and then, so the map stays small.
	if len(c.until) > 64 {
		now := time.Now()
		for k, u := range c.until {
			if !u.After(now) {
				delete(c.until, k)
			}
		}
		c.active.Store(int32(len(c.until)))
	}
}

// c.mu must be held.
func (c *cooldowns) deleteLocked(key circuitKey) {
	delete(c.until, key)
	c.active.Store(int32(len(c.until)))
}
