package llmtransport

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// fakeLimiter is a SharedState that shares no hold and implements
// SharedLimiter: it records every Reservation and answers the waits of
// answer, in turn (0 once they run out).
type fakeLimiter struct {
	nopState
	mu     sync.Mutex
	asked  []Reservation
	answer []time.Duration
	block  bool // Reserve waits for its context, then answers 0
}

var _ SharedLimiter = (*fakeLimiter)(nil)

func (f *fakeLimiter) Fingerprint(cred string) uint64 {
	if cred == "" {
		return 0
	}
	return uint64(len(cred))<<32 | 0xf1ee7
}

func (f *fakeLimiter) Reserve(ctx context.Context, r Reservation) time.Duration {
	f.mu.Lock()
	f.asked = append(f.asked, r)
	var w time.Duration
	if len(f.answer) > 0 {
		w, f.answer = f.answer[0], f.answer[1:]
	}
	block := f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return 0
	}
	return w
}

func (f *fakeLimiter) reservations() []Reservation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Reservation(nil), f.asked...)
}

// tokenHeaders are OpenAI's headers of both dimensions: 100 requests and
// 10,000 tokens per window, resets as given.
func tokenHeaders(remReqs, remTokens string, reset string) []string {
	return append(limitHeaders("100", remReqs, reset),
		"X-Ratelimit-Limit-Tokens", "10000",
		"X-Ratelimit-Remaining-Tokens", remTokens,
		"X-Ratelimit-Reset-Tokens", reset)
}

// The limiter is asked only once pacing has learned a rate: with the
// rate (limit per the longest reset reported), the request's estimated
// cost in each known dimension, the host, model and the shared state's
// fingerprint of the API key. A dimension the request costs more of than
// a whole window is left out; with none left, the limiter is not asked.
func TestFleetLimiterAskedOnceLearned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		headers := [][]string{nil, tokenHeaders("99", "9900", "6s"), tokenHeaders("98", "9800", "2s")}
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			return response(200, `{"id":"x"}`, headers[min(i, len(headers)-1)]...), nil
		}}
		fl := &fakeLimiter{}
		tr := New(f, WithPacing(), WithSharedState(fl))
		defer tr.Close()
		body := `{"model":"gpt-4o-mini","max_tokens":100,"messages":[]}` // 55 bytes: 14 + 100 tokens
		for i := range 4 {
			if st, err := pacedSend(t, tr, t.Context(), body); err != nil || st != 200 {
				t.Fatalf("request %d: %d, %v", i, st, err)
			}
		}
		got := fl.reservations()
		if len(got) != 2 {
			t.Fatalf("%d reservations, want 2 (none before a response said anything): %+v", len(got), got)
		}
		req, _ := http.NewRequest(http.MethodPost, gw, nil)
		req.Header.Set("Authorization", "Bearer sk-test-pacing-0123456789")
		cred := tr.cooldowns.credentialOf(req)
		if cred != fl.Fingerprint("Bearer sk-test-pacing-0123456789") {
			t.Fatalf("the credential is not the shared state's fingerprint")
		}
		want := Reservation{Host: "gw.test", Model: "gpt-4o-mini", Credential: cred,
			Requests: RateCost{Limit: 100, Window: 6 * time.Second, Cost: 1},
			Tokens:   RateCost{Limit: 10000, Window: 6 * time.Second, Cost: 114}}
		for i, r := range got {
			if r != want {
				t.Errorf("reservation %d: %+v, want %+v (the window stays the longest reset)", i, r, want)
			}
		}
		if n := tr.pacer.InFlight(); n != 0 {
			t.Errorf("%d tickets in flight", n)
		}

		// A request that costs more tokens than a window allows: only its
		// request dimension is asked for.
		big := `{"model":"gpt-4o-mini","max_tokens":20000,"messages":[]}`
		if st, err := pacedSend(t, tr, t.Context(), big); err != nil || st != 200 {
			t.Fatalf("big request: %d, %v", st, err)
		}
		if got := fl.reservations(); len(got) != 3 || got[2].Tokens != (RateCost{}) || got[2].Requests.Cost != 1 {
			t.Errorf("reservation of a request over the token limit: %+v", got[len(got)-1])
		}
	})
}

// No limiter is asked without pacing, nor when the shared state does not
// implement SharedLimiter.
func TestFleetLimiterNeedsPacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			return response(200, `{"id":"x"}`, tokenHeaders("0", "0", "1s")...), nil
		}}
		fl := &fakeLimiter{}
		tr := New(f, WithSharedState(fl))
		defer tr.Close()
		if tr.limiter != nil {
			t.Fatal("a limiter without WithPacing")
		}
		for range 3 {
			if st, err := pacedSend(t, tr, t.Context(), pacedBody); err != nil || st != 200 {
				t.Fatalf("got %d, %v", st, err)
			}
		}
		if n := len(fl.reservations()); n != 0 {
			t.Errorf("the limiter was asked %d times without pacing", n)
		}
		if tr := New(f, WithPacing(), WithSharedState(nopState{})); tr.limiter != nil {
			t.Error("a limiter from a shared state that has none")
		}
	})
}

// A wait the limiter answers is waited, then pacing and the limiter are
// asked again; it is a "paced" event and a MetricPacingWait point with
// llm.pacing.source "fleet".
func TestFleetLimiterWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t)
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			return response(200, `{"id":"x"}`, limitHeaders("100", "99", "1m0s")...), nil
		}}
		fl := &fakeLimiter{answer: []time.Duration{0, 300 * time.Millisecond, 200 * time.Millisecond}}
		tr := New(f, tel.options(WithPacing(), WithSharedState(fl))...)
		defer tr.Close()
		for range 3 {
			if st, err := pacedSend(t, tr, t.Context(), pacedBody); err != nil || st != 200 {
				t.Fatalf("got %d, %v", st, err)
			}
		}
		if g := f.gap(2); g != 500*time.Millisecond {
			t.Errorf("third request sent %v after the second, want the limiter's 300 ms + 200 ms", g)
		}
		if n := len(fl.reservations()); n != 4 {
			t.Errorf("the limiter was asked %d times, want 4 (1 for the second request, 3 for the third)", n)
		}
		var waits []float64
		for _, s := range tel.spans("chat gpt-4o-mini") {
			for _, e := range s.Events() {
				if e.Name != eventPaced {
					continue
				}
				set := attribute.NewSet(e.Attributes...)
				w, _ := set.Value(keyPacingWait)
				waited, _ := set.Value(keyPacingWaited)
				src, _ := set.Value(keyPacingSource)
				if !waited.AsBool() || src.AsString() != "fleet" {
					t.Errorf("paced event: waited %v, source %q; want true, fleet", waited.AsBool(), src.AsString())
				}
				waits = append(waits, w.AsFloat64())
			}
		}
		if len(waits) != 2 || waits[0] != 0.3 || waits[1] != 0.2 {
			t.Errorf("paced events of %v s, want 0.3 and 0.2", waits)
		}
		if n, _ := sum(tel.collect(t), MetricPacingWait, map[string]string{"llm.pacing.source": "fleet", "llm.pacing.waited": "true"}); n != 2 {
			t.Errorf("MetricPacingWait: %v fleet waits, want 2", n)
		}
		if n := tr.pacer.InFlight(); n != 0 {
			t.Errorf("%d tickets in flight", n)
		}
	})
}

// A wait past WithMaxRetryWait or the deadline is not taken: the attempt
// goes at once (waited false), with pacing's reservation and without
// asking the limiter again. A caller that gives up during a wait holds
// nothing. A limiter that does not answer is bounded by the context.
func TestFleetLimiterWaitRules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t)
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			return response(200, `{"id":"x"}`, limitHeaders("100", "99", "1m0s")...), nil
		}}
		fl := &fakeLimiter{}
		tr := New(f, tel.options(WithPacing(), WithSharedState(fl), WithMaxRetryWait(2*time.Second))...)
		defer tr.Close()
		if st, err := pacedSend(t, tr, t.Context(), pacedBody); err != nil || st != 200 {
			t.Fatalf("got %d, %v", st, err)
		}

		// Past the cap: 1.5 s waited, then 1 s more would pass 2 s.
		fl.mu.Lock()
		fl.answer = []time.Duration{1500 * time.Millisecond, time.Second}
		fl.mu.Unlock()
		if st, err := pacedSend(t, tr, t.Context(), pacedBody); err != nil || st != 200 {
			t.Fatalf("got %d, %v", st, err)
		}
		if g := f.gap(1); g != 1500*time.Millisecond {
			t.Errorf("sent %v after the first, want 1.5 s (the second wait is past the cap)", g)
		}
		// Past the deadline.
		fl.mu.Lock()
		fl.answer = []time.Duration{time.Second}
		fl.mu.Unlock()
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		if st, err := pacedSend(t, tr, ctx, pacedBody); err != nil || st != 200 {
			t.Fatalf("got %d, %v", st, err)
		}
		cancel()
		if g := f.gap(2); g != 0 {
			t.Errorf("sent %v after the previous, want at once (the wait is past the deadline)", g)
		}
		if n := len(fl.reservations()); n != 3 {
			t.Errorf("the limiter was asked %d times, want 3", n)
		}
		if n, _ := sum(tel.collect(t), MetricPacingWait, map[string]string{"llm.pacing.source": "fleet", "llm.pacing.waited": "false"}); n != 2 {
			t.Errorf("MetricPacingWait: %v fleet waits not taken, want 2", n)
		}

		// Given up during the wait: the context's error, nothing held.
		fl.mu.Lock()
		fl.answer = []time.Duration{time.Second}
		fl.mu.Unlock()
		ctx, cancel = context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		if _, err := pacedSend(t, tr, ctx, pacedBody); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled during the limiter's wait: %v", err)
		}
		if n := f.attempts(); n != 3 {
			t.Errorf("%d attempts, want 3: none after the cancellation", n)
		}

		// A limiter that hangs until the context ends: the request goes.
		fl.mu.Lock()
		fl.block = true
		fl.mu.Unlock()
		ctx, cancel = context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		_, _ = pacedSend(t, tr, ctx, pacedBody)
		if d := time.Since(start); d != time.Second {
			t.Errorf("a hanging limiter held the request %v, want its context's 1 s", d)
		}
		if n := tr.pacer.InFlight(); n != 0 {
			t.Errorf("%d tickets in flight", n)
		}
	})
}

// Two Transports (processes) on one fake limiter that does GCRA in memory
// share a limit of 10 requests per second that pacing learns from the
// headers: the fleet sends at the limit's rate, whatever each one's
// pacing thinks is left.
func TestFleetLimiterSharesRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gc := &memGCRA{}
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			// The server always says 9 of 10 are left for a second: each
			// process's pacing alone would never wait.
			return response(200, `{"id":"x"}`, limitHeaders("10", "9", "1s")...), nil
		}}
		var trs []*Transport
		for range 2 {
			tr := New(f, WithPacing(), WithSharedState(gc))
			defer tr.Close()
			trs = append(trs, tr)
		}
		var wg sync.WaitGroup
		start := time.Now()
		for _, tr := range trs {
			for range 3 {
				wg.Go(func() {
					for time.Since(start) < 5*time.Second {
						if st, err := pacedSend(t, tr, t.Context(), pacedBody); err != nil || st != 200 {
							t.Errorf("got %d, %v", st, err)
							return
						}
					}
				})
			}
		}
		wg.Wait()
		// The first request of each worker goes unasked (nothing learned),
		// then 10 per second with a burst of 10: about 6 + 10 + 50.
		t.Logf("%d requests in 5 s", f.attempts())
		if n := f.attempts(); n < 65 || n > 71 {
			t.Errorf("%d requests in 5 s, want 65 to 71: 6 unasked, a burst of 10, 10 per second after it, and each waiting worker's last", n)
		}
	})
}

// memGCRA is a GCRA in memory (the rate of each dimension, a burst of a
// whole window), for tests of the core alone.
type memGCRA struct {
	nopState
	mu  sync.Mutex
	tat map[string]time.Time
}

func (g *memGCRA) Reserve(_ context.Context, r Reservation) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tat == nil {
		g.tat = map[string]time.Time{}
	}
	now := time.Now()
	dims := map[string]RateCost{"r": r.Requests, "t": r.Tokens, "i": r.InputTokens, "o": r.OutputTokens}
	next := map[string]time.Time{}
	var wait time.Duration
	for name, d := range dims {
		if d.Limit <= 0 {
			continue
		}
		k := strings.Join([]string{r.Host, r.Model, name}, "|")
		tat := g.tat[k]
		if tat.Before(now) {
			tat = now
		}
		tat = tat.Add(time.Duration(int64(d.Window) / d.Limit * d.Cost))
		if w := tat.Sub(now) - d.Window; w > wait {
			wait = w
		}
		next[k] = tat
	}
	if wait > 0 {
		return wait
	}
	for k, v := range next {
		g.tat[k] = v
	}
	return 0
}
