package llmtransport

import (
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
)

// TestRetryBudgetPerHost: a dead host drains its own retry budget; another
// host's overloads are still retried.
func TestRetryBudgetPerHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var healthyAttempts int
		f := &fakeRT{respond: func(_ int, r *http.Request) (*http.Response, error) {
			if r.URL.Host == "dead.test" {
				return response(503, `{"error":{"message":"down","type":"server_error"}}`), nil
			}
			healthyAttempts++
			if healthyAttempts%2 == 1 {
				return response(529, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`), nil
			}
			return response(200, `{"content":[]}`), nil
		}}
		tr := New(f, WithoutCircuitBreaker(), WithRetryBudget(0.2, 5))
		for range 10 {
			resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://dead.test/v1/chat/completions"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		if b := tr.budgets.of("dead.test"); b.milli.Load() >= 1000 {
			t.Fatalf("the dead host's budget has %d milli-tokens left, want drained", b.milli.Load())
		}
		for i := range 5 {
			resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://other.test/v1/messages"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("call %d to the other host: %d, want 200 after a retry", i, resp.StatusCode)
			}
		}
	})
}

func TestBudgetsBounded(t *testing.T) {
	bs := newBudgets(0.2, 5)
	for i := range maxBudgets + 10 {
		bs.of(strings.Repeat("h", i%7) + string(rune('a'+i%26)) + string(rune(i)))
	}
	if n := bs.n.Load(); n != maxBudgets {
		t.Errorf("%d budgets, want %d", n, maxBudgets)
	}
	if bs.of("another.test") != bs.overflow {
		t.Error("a host beyond the cap does not share the overflow budget")
	}
}
