package llmtransport

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// simGateway is a gateway for the fleet simulation: model "limited" allows
// one request per second per key (a fixed window; others get a 429 with
// retry-after-ms until the window's end), model "dead" answers every
// request 503 overloaded, any other model 200. It counts the 429s and the
// dead model's attempts.
type simGateway struct {
	mu             sync.Mutex
	epoch          time.Time
	window         map[string]int64 // key → the window of its last allowed request
	limited, fails int
}

func (g *simGateway) rt() http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		inner := (&fleetGW{answer: g.answer}).rt("")
		return inner.RoundTrip(r)
	})
}

func (g *simGateway) answer(model, key string) *http.Response {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch model {
	case "dead":
		g.fails++
		return overloaded()
	case "limited":
		since := time.Since(g.epoch)
		w := int64(since / time.Second)
		if last, ok := g.window[key]; ok && last == w {
			g.limited++
			wait := time.Duration(w+1)*time.Second - since
			return response(429, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`,
				"Retry-After-Ms", strconv.FormatInt((wait+time.Millisecond-1).Milliseconds(), 10)) // rounded up
		}
		g.window[key] = w
	}
	return nil
}

// simulateFleet runs 8 replicas for 30 s of fake time against one
// rate-limited key and one dead model, each replica starting 500 ms after
// the previous one and sending, every 100 ms, one request for each; with
// shared, through one fake fleet. It returns the upstream 429s and the
// failed attempts on the dead model.
func simulateFleet(t *testing.T, shared bool) (limited, fails int) {
	var out [2]int
	synctest.Test(t, func(t *testing.T) {
		g := &simGateway{epoch: time.Now(), window: map[string]int64{}}
		f := newFakeFleet()
		var wg sync.WaitGroup
		end := time.Now().Add(30 * time.Second)
		for i := range 8 {
			opts := []Option{WithMaxRetries(0)}
			if shared {
				opts = append(opts, WithSharedState(f.member()))
			}
			tr := New(g.rt(), opts...)
			defer tr.Close()
			wg.Go(func() {
				time.Sleep(time.Duration(i) * 500 * time.Millisecond)
				for time.Now().Before(end) {
					var each sync.WaitGroup
					for _, model := range []string{"limited", "dead"} {
						each.Go(func() { fleetCall(t, nil, tr, model, "k") })
					}
					each.Wait()
					time.Sleep(100 * time.Millisecond)
				}
			})
		}
		wg.Wait()
		out = [2]int{g.limited, g.fails}
	})
	return out[0], out[1]
}

// TestFleetSimulation: 8 replicas against one rate-limited key and one dead
// model collect at least 5× fewer upstream 429s and failed attempts with
// shared state than without.
func TestFleetSimulation(t *testing.T) {
	l0, f0 := simulateFleet(t, false)
	l1, f1 := simulateFleet(t, true)
	t.Logf("8 replicas, 30 s: upstream 429s %d without shared state, %d with; failed attempts on the dead model %d without, %d with", l0, l1, f0, f1)
	if l1*5 > l0 {
		t.Errorf("429s: %d with shared state, %d without: want ≥ 5× fewer", l1, l0)
	}
	if f1*5 > f0 {
		t.Errorf("failed attempts: %d with shared state, %d without: want ≥ 5× fewer", f1, f0)
	}
}
