package llmtransport_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/llmtransport/llmtransport"
)

// State shows what the transport holds, for a debug endpoint or a
// dashboard: circuits with their counts, the cooldowns rate limits left
// (with an opaque id of the API key, never the key), and, with pacing, the
// limits learned from the rate-limit headers.
func ExampleTransport_State() {
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Model string }
		json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		switch req.Model {
		case "gpt-4o": // rate limited: wait 20 s (a rate limit is excluded from the circuit)
			w.Header().Set("Retry-After", "20")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`)
		case "broken-model":
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, `{"error":{"message":"upstream error","type":"upstream_error"}}`)
		default:
			w.Header().Set("X-Ratelimit-Limit-Requests", "60")
			w.Header().Set("X-Ratelimit-Remaining-Requests", "59")
			w.Header().Set("X-Ratelimit-Reset-Requests", "60s")
			fmt.Fprint(w, `{"choices":[{"message":{"content":"hello"}}]}`)
		}
	}))
	defer gateway.Close()

	tr := llmtransport.New(nil,
		llmtransport.WithMaxRetries(0),
		llmtransport.WithBreakerThreshold(0.5, 2),
		llmtransport.WithPacing(),
	)
	client := &http.Client{Transport: tr}
	for _, model := range []string{"gpt-4o", "broken-model", "broken-model", "gpt-4o-mini"} {
		body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
		req, _ := http.NewRequest(http.MethodPost, gateway.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk-example")
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}

	s := tr.State()
	for _, c := range s.Circuits {
		fmt.Printf("circuit %s: %s, calls=%d failed=%d excluded=%d\n", c.Model, c.State, c.Requests, c.Failures, c.Excluded)
	}
	for _, cd := range s.Cooldowns {
		fmt.Printf("cooldown %s: %s, %v left, remote: %v, key id: %d hex digits\n",
			cd.Model, cd.Reason, cd.Remaining.Round(time.Second), cd.Remote, len(cd.Credential))
	}
	for _, l := range s.Limits {
		fmt.Printf("limit %s: %d requests a window, %d left\n", l.Model, l.Requests.Limit, l.Requests.Remaining)
	}
	// Output:
	// circuit broken-model: open, calls=2 failed=2 excluded=0
	// circuit gpt-4o: closed, calls=1 failed=0 excluded=1
	// circuit gpt-4o-mini: closed, calls=1 failed=0 excluded=0
	// cooldown gpt-4o: rate_limited, 20s left, remote: false, key id: 8 hex digits
	// limit gpt-4o-mini: 60 requests a window, 59 left
}
