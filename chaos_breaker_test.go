package llmtransport

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// TestChaosHealthyModelsKeepTheirCircuits runs the fake gateway with models
// that are healthy by any sensible measure and requires that no circuit
// ever opens, with the default breaker:
//
//   - "wave": 200 calls at once, 4 % of which fail fast (a 503 at once)
//     while the successes are slow (200 ms);
//   - "flaky-20" and "flaky-30": 64 callers, 20 % and 30 % of attempts
//     failing with 503s, 529s and connection resets, which the retries
//     rescue.
//
// A model that fails every call, alongside, is cut off.
func TestChaosHealthyModelsKeepTheirCircuits(t *testing.T) {
	checkLeaks(t)
	transient := []llmtransporttest.Fault{
		llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel for this model"),
		llmtransporttest.Overloaded(),
		llmtransporttest.ResetBeforeHeaders(),
	}
	const wave, failEvery = 200, 25
	gw := llmtransporttest.NewServer(
		llmtransporttest.WithModel("wave", func(n int) llmtransporttest.Fault {
			if n < wave && n%failEvery == 0 {
				return transient[0]
			}
			return llmtransporttest.Delay(200*time.Millisecond, llmtransporttest.OK())
		}),
		llmtransporttest.WithModel("flaky-20", llmtransporttest.Random(0.2, 20, transient...)),
		llmtransporttest.WithModel("flaky-30", llmtransporttest.Random(0.3, 30, transient...)),
		llmtransporttest.WithModel("dead", func(int) llmtransporttest.Fault { return transient[0] }),
	)
	defer gw.Close()
	base := &http.Transport{MaxIdleConnsPerHost: wave}
	defer base.CloseIdleConnections()
	var (
		mu     sync.Mutex
		opened []string
	)
	tr := New(base, WithBackoff(time.Millisecond, 10*time.Millisecond),
		WithOnCircuitStateChange(func(ch CircuitStateChange) {
			if ch.To == CircuitOpen {
				mu.Lock()
				opened = append(opened, ch.Model)
				mu.Unlock()
			}
		}))
	url := gw.URL + "/v1/chat/completions"
	call := func(model string) int {
		resp, err := tr.RoundTrip(modelRequest(t, t.Context(), url, model))
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	var wg sync.WaitGroup
	var waveBad atomic.Int64
	for range wave {
		wg.Go(func() {
			if call("wave") != 200 {
				waveBad.Add(1)
			}
		})
	}
	wg.Wait()

	var bad [2]atomic.Int64
	const callers, each = 64, 10
	for w := range callers {
		wg.Go(func() {
			for i := range each {
				m := (w + i) % 2
				if call(fmt.Sprintf("flaky-%d", 20+10*m)) != 200 {
					bad[m].Add(1)
				}
			}
			if w == 0 {
				for range 5 {
					call("dead")
				}
			}
		})
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(opened) != 1 || opened[0] != "dead" {
		t.Errorf("circuits opened: %v, want only the dead model's", opened)
	}
	if n := waveBad.Load(); n != 0 {
		t.Errorf("%d of %d wave calls failed; their retries should rescue all", n, wave)
	}
	// A call fails when its 4 attempts all do (0.3⁴ < 1 %), or when the
	// host's retry budget, which 64 callers retrying at once can drain for
	// a moment, refuses a retry: a few per cent at most.
	for m, n := range []int64{bad[0].Load(), bad[1].Load()} {
		if n > callers*each/2/20 {
			t.Errorf("flaky-%d: %d of %d calls failed, want ≤ 5 %%", 20+10*m, n, callers*each/2)
		}
	}
	if h := gw.Requests("dead"); h != DefaultBreakerMinFailures*(DefaultMaxRetries+1) {
		t.Errorf("the dead model got %d attempts, want %d", h, DefaultBreakerMinFailures*(DefaultMaxRetries+1))
	}
}
