package redisstate

import (
	"fmt"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport"
)

// TestOwnAndDenialsBounded: the State's memory is bounded: its own holds
// remembered (to tell their echoes) at maxOwn, the limiter's negative
// cache at maxDenials, however many keys come.
func TestOwnAndDenialsBounded(t *testing.T) {
	s := New(nil)
	now := time.Now()
	s.mu.Lock()
	for i := range maxOwn + 100 {
		h := llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: fmt.Sprint("m", i), TTL: time.Minute}
		s.remember(s.keys.holdKey(h), h, now.Add(time.Minute))
	}
	n := len(s.own)
	s.mu.Unlock()
	if n != maxOwn {
		t.Errorf("own: %d entries, want %d", n, maxOwn)
	}
	l := &s.lim
	t0 := l.now()
	for i := range maxDenials + 100 {
		l.deny(limitKey{"h", fmt.Sprint("m", i), 1}, t0+int64(time.Minute), t0)
	}
	if len(l.denied) != maxDenials {
		t.Errorf("denied: %d entries, want %d", len(l.denied), maxDenials)
	}
}
