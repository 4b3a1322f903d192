package llmtransport

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestRetryBudgetRefundsRetriesThatWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dead := false
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			if dead || i%2 == 0 {
				return response(503, `{}`), nil
			}
			return response(200, `{}`), nil
		}}
		tr := New(f, WithoutCircuitBreaker(), WithRetryBudget(0.2, 2))
		call := func() int {
			resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		// A flaky upstream whose retries work never drains the budget.
		for i := range 20 {
			if got := call(); got != 200 {
				t.Fatalf("call %d: got %d, want 200 (retries that work are free)", i, got)
			}
		}
		// A dead one drains it: 2 tokens, then no more retries.
		dead = true
		before := f.attempts()
		for range 5 {
			call()
		}
		if got := f.attempts() - before; got != 5+2 {
			t.Fatalf("got %d attempts for 5 calls to a dead upstream, want 7 (5 + the 2 tokens)", got)
		}
	})
}

// TestRetryNotIntoOpenCircuit: a call whose retry the circuit would refuse
// (another call opened it) hands its response back at once instead of
// waiting to be refused.
func TestRetryNotIntoOpenCircuit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		f := &fakeRT{respond: func(_ int, req *http.Request) (*http.Response, error) {
			if req.Header.Get("X-Call") == "slow" {
				<-release
			}
			return response(500, `{"error":{"message":"boom","type":"server_error"}}`, "Retry-After", "1"), nil
		}}
		tr := New(f, WithBreakerThreshold(0.5, 1))
		slow := newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions")
		slow.Header.Set("X-Call", "slow")
		done := make(chan *http.Response)
		go func() {
			resp, err := tr.RoundTrip(slow)
			if err != nil {
				t.Error(err)
			}
			done <- resp
		}()
		synctest.Wait() // the slow call's first attempt is in flight
		// Another call fails all its attempts: 1 failed call of 2 (one in
		// flight) opens the circuit.
		resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if c := tr.Circuits(); len(c) != 1 || c[0].State != CircuitOpen {
			close(release)
			t.Fatalf("circuits %+v, want one open", c)
		}
		before, start := f.attempts(), time.Now()
		close(release)
		resp = <-done
		if resp == nil {
			return
		}
		resp.Body.Close()
		if f.attempts() != before || resp.StatusCode != 500 || time.Since(start) != 0 {
			t.Fatalf("got %d after %d more attempts and %v; want the 500 at once", resp.StatusCode, f.attempts()-before, time.Since(start))
		}
	})
}

func TestRetryOpenCircuitClosesCallerBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) { return response(500, `{}`), nil }}
		tr := New(f, WithBreakerThreshold(1, 1), WithMaxRetries(0))
		resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		body := &trackBody{Reader: strings.NewReader(chatBody)}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://gw.test/v1/chat/completions", body)
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(chatBody)), nil }
		if _, err := tr.RoundTrip(req); !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("got %v, want ErrCircuitOpen", err)
		}
		if !body.isClosed() {
			t.Fatal("the caller's body was not closed when the circuit refused the request")
		}
	})
}
