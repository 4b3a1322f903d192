package pacing_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/llmtransport/llmtransport/internal/pacing"
)

// The loop the root runs around each attempt: admit, wait within the cap
// (or send anyway past it), send, settle the ticket.
func ExamplePacer() {
	p := pacing.New[string](0)
	now := time.Date(2026, 10, 21, 7, 0, 0, 0, time.UTC) // the caller's clock
	const maxWait = 2 * time.Second                      // the caller's cap
	cost := pacing.Estimate(1200, 256, 1)                // body bytes, max_tokens, n

	send := func(remaining string) {
		key := "api.openai.com|gpt-4o-mini|cred"
		var t pacing.Ticket
		for {
			var wait time.Duration
			if wait, t = p.Admit(key, cost, now); wait == 0 {
				break
			}
			if wait > maxWait {
				t = p.Reserve(key, cost, now) // send now, let the server decide
				break
			}
			fmt.Println("paced for", wait)
			now = now.Add(wait) // the root sleeps (bounded by the deadline), then admits again
		}
		// … the request is sent; its response comes back …
		h := http.Header{}
		h.Set("X-Ratelimit-Limit-Requests", "500")
		h.Set("X-Ratelimit-Remaining-Requests", remaining)
		h.Set("X-Ratelimit-Reset-Requests", "1.5s")
		t.Observe(200, h, now)
	}
	send("1")
	send("0")
	send("499")
	// Output:
	// paced for 1.5s
}
