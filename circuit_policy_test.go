package llmtransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/codes"
)

// The trip policy with the default options: it judges the model, not the
// order in which answers arrive. Each test here fails with a breaker that
// counts attempts, or that leaves calls in flight out of the ratio.

// waveServer answers the first n requests: every failEvery-th of them at
// once with a 503, the others (and every later request) with a 200 held
// until release is closed. It counts what arrived.
type waveServer struct {
	n, failEvery int
	release      chan struct{}
	arrived      atomic.Int64
	failed       atomic.Int64
	want         int64         // arrivals after which allIn is closed
	allIn        chan struct{} // closed when want requests have arrived
}

func (s *waveServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	n := s.arrived.Add(1)
	if n == s.want {
		close(s.allIn)
	}
	i := int(n) - 1
	w.Header().Set("Content-Type", "application/json")
	if i < s.n && i%s.failEvery == 0 {
		s.failed.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":{"message":"upstream overloaded, try again","type":"server_error"}}`)
		return
	}
	select {
	case <-s.release:
	case <-r.Context().Done():
		return
	}
	io.WriteString(w, `{"choices":[{"message":{"content":"ok"}}]}`)
}

// TestBreakerWaveOfSlowSuccessesNeverOpens: 200 concurrent calls to a
// real server, 4 % of which fail fast while the successes are slow (held
// until every fast failure is in): the fast failures are all the circuit
// has seen when they come back, but they are 4 % of the calls, and the
// circuit stays closed, with retries and without.
func TestBreakerWaveOfSlowSuccessesNeverOpens(t *testing.T) {
	for _, retries := range []int{0, DefaultMaxRetries} {
		t.Run(fmt.Sprintf("retries=%d", retries), func(t *testing.T) {
			const calls, failEvery = 200, 25 // 8 fast failures
			// The server has all it will get before release: every call's
			// first attempt and, with retries, the fast failures' retries.
			s := &waveServer{n: calls, failEvery: failEvery, release: make(chan struct{}), want: calls, allIn: make(chan struct{})}
			if retries > 0 {
				s.want += calls / failEvery
			}
			failuresBack := make(chan struct{}) // closed when the failed calls have ended (no retries)
			if retries > 0 {
				close(failuresBack)
			}
			srv := httptest.NewServer(s)
			defer srv.Close()
			var changes stateLog
			tr := New(srv.Client().Transport, WithMaxRetries(retries),
				WithBackoff(time.Millisecond, 5*time.Millisecond), WithOnCircuitStateChange(changes.record))
			defer tr.CloseIdleConnections()
			var (
				wg         sync.WaitGroup
				ended      atomic.Int64 // calls that ended with a failure
				statuses   sync.Map
				refused    = make(chan struct{}) // closed at the first call refused or not rescued
				refuseOnce sync.Once
			)
			for range calls {
				wg.Go(func() {
					status, err := send(t, tr, t.Context(), srv.URL+"/v1/chat/completions", "model-a")
					if err != nil {
						t.Errorf("call: %v", err)
						refuseOnce.Do(func() { close(refused) })
						return
					}
					if status != 200 && retries > 0 {
						// A call the retries did not rescue: the
						// circuit refused them.
						refuseOnce.Do(func() { close(refused) })
					}
					if status != 200 && ended.Add(1) == calls/failEvery && retries == 0 {
						close(failuresBack)
					}
					v, _ := statuses.LoadOrStore(status, new(atomic.Int64))
					v.(*atomic.Int64).Add(1)
				})
			}
			// Every fast failure is in, and its call has ended (without
			// retries) or its retry waits at the server with the others.
			select {
			case <-s.allIn:
			case <-refused:
			}
			select {
			case <-failuresBack:
			case <-refused:
			}
			if c, _ := circuitOf(tr, "model-a"); c.State != CircuitClosed {
				t.Errorf("with the fast failures in: %+v, want closed", c)
			}
			close(s.release)
			wg.Wait()
			if got := changes.String(); got != "" {
				t.Errorf("state changes: %s, want none", got)
			}
			wantOK := int64(calls)
			if retries == 0 {
				wantOK -= calls / failEvery
			}
			if v, ok := statuses.Load(200); !ok || v.(*atomic.Int64).Load() != wantOK {
				t.Errorf("%d calls got 200, want %d", v, wantOK)
			}
		})
	}
}

// TestBreakerFlakyModelRescuedByRetriesNeverOpens: a model failing a share
// of attempts at random, whose calls the retries rescue, is healthy: one
// caller at 30 %, 64 callers at 20 %.
func TestBreakerFlakyModelRescuedByRetriesNeverOpens(t *testing.T) {
	for _, tt := range []struct {
		callers, each int
		rate          float64
	}{
		{1, 400, 0.3},
		{64, 20, 0.2},
	} {
		t.Run(fmt.Sprintf("c=%d,rate=%v", tt.callers, tt.rate), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				rng := rand.New(rand.NewPCG(1, 2))
				f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
					mu.Lock()
					fail := rng.Float64() < tt.rate
					mu.Unlock()
					if fail {
						return response(503, `{"error":{"message":"overloaded","type":"server_error"}}`), nil
					}
					return response(200, `{"choices":[]}`), nil
				}}
				var changes stateLog
				tr := New(f, WithOnCircuitStateChange(changes.record))
				var wg sync.WaitGroup
				var refused atomic.Int64
				for range tt.callers {
					wg.Go(func() {
						for range tt.each {
							if _, err := send(t, tr, t.Context(), gw, "model-a"); errors.Is(err, ErrCircuitOpen) {
								refused.Add(1)
							}
						}
					})
				}
				wg.Wait()
				if got := changes.String(); got != "" || refused.Load() != 0 {
					t.Errorf("state changes: %q, %d calls refused; want none (%d attempts)", got, refused.Load(), f.attempts())
				}
				if f.attempts() < int(float64(tt.callers*tt.each)*1.1) {
					t.Errorf("only %d attempts for %d calls: the faults did not happen", f.attempts(), tt.callers*tt.each)
				}
			})
		})
	}
}

// TestBreakerDeadModelOpensFast: a model that fails every call, by status,
// reset or first-byte timeout, is cut off after 3 calls at one call at a
// time (4 attempts each), while another model keeps working.
func TestBreakerDeadModelOpensFast(t *testing.T) {
	for _, fault := range []string{"503", "reset", "first-byte timeout"} {
		t.Run(fault, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{respond: func(_ int, r *http.Request) (*http.Response, error) {
					if !strings.Contains(r.Header.Get("X-Model"), "dead") {
						return response(200, `{"choices":[]}`), nil
					}
					switch fault {
					case "503":
						return response(503, `{"error":{"message":"no healthy upstream","type":"server_error"}}`), nil
					case "reset":
						return nil, fmt.Errorf("read tcp: %w", syscall.ECONNRESET)
					}
					<-r.Context().Done()
					return nil, context.Cause(r.Context())
				}}
				tr := New(f, WithFirstByteTimeout(time.Second))
				deadAttempts := 0
				for i := range 10 {
					before := f.attempts()
					_, err := sendWithHeader(t, tr, "model-dead")
					deadAttempts += f.attempts() - before
					if i >= DefaultBreakerMinFailures && !errors.Is(err, ErrCircuitOpen) {
						t.Fatalf("call %d: %v, want ErrCircuitOpen", i, err)
					}
					if status, err := sendWithHeader(t, tr, "model-ok"); status != 200 {
						t.Fatalf("healthy model, call %d: %d, %v", i, status, err)
					}
				}
				if want := DefaultBreakerMinFailures * (DefaultMaxRetries + 1); deadAttempts != want {
					t.Errorf("the dead model got %d attempts, want %d", deadAttempts, want)
				}
			})
		})
	}
}

// sendWithHeader sends a chat request for model that also names it in the
// X-Model header, for fakes that answer by model.
func sendWithHeader(t *testing.T, tr *Transport, model string) (int, error) {
	req := modelRequest(t, t.Context(), gw, model)
	req.Header.Set("X-Model", model)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestBreakerDeadModelOpensWithinAWave: 200 concurrent calls to a model
// that fails every call, over a real server: the circuit opens within the
// first wave of attempts (each call's first, and the retries the budget
// allows), and the next calls are refused without reaching the server.
func TestBreakerDeadModelOpensWithinAWave(t *testing.T) {
	b := newModelBackend()
	b.set("model-dead", 503)
	srv := httptest.NewServer(b)
	defer srv.Close()
	tr := New(srv.Client().Transport, WithBackoff(time.Millisecond, 5*time.Millisecond))
	defer tr.CloseIdleConnections()
	const calls = 200
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() { send(t, tr, t.Context(), srv.URL+"/v1/chat/completions", "model-dead") })
	}
	wg.Wait()
	if c, _ := circuitOf(tr, "model-dead"); c.State != CircuitOpen {
		t.Fatalf("after a wave of %d failed calls: %+v, want open", calls, c)
	}
	if h := b.hitsOf("model-dead"); h > calls+DefaultBudgetBurst {
		t.Errorf("the dead model got %d attempts, want at most %d (a wave and the budget)", h, calls+DefaultBudgetBurst)
	}
	before := b.hitsOf("model-dead")
	if _, err := send(t, tr, t.Context(), srv.URL+"/v1/chat/completions", "model-dead"); !errors.Is(err, ErrCircuitOpen) {
		t.Errorf("after the wave: %v, want ErrCircuitOpen", err)
	}
	if status, err := send(t, tr, t.Context(), srv.URL+"/v1/chat/completions", "model-ok"); status != 200 {
		t.Errorf("another model: %d, %v", status, err)
	}
	if b.hitsOf("model-dead") != before {
		t.Error("a refused call reached the server")
	}
}

// cancelBodyRT answers with a 200 event stream whose first event never
// comes: its body blocks until the request's context is done.
type cancelBodyRT struct{ calls atomic.Int64 }

func (rt *cancelBodyRT) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.calls.Add(1)
	resp := response(200, "", "Content-Type", "text/event-stream")
	resp.Body = &ctxBody{ctx: r.Context()}
	resp.Request = r
	return resp, nil
}

// ctxBody is a body that sends a comment, then blocks until ctx is done.
type ctxBody struct {
	ctx  context.Context
	sent bool
}

func (b *ctxBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, ": connected\n\n"), nil
	}
	<-b.ctx.Done()
	return 0, context.Cause(b.ctx)
}

func (b *ctxBody) Close() error { return nil }

// TestBreakerCallerCancelsDuringPeek: a caller that gives up while the
// transport waits for a stream's first event (a user pressing stop before
// the first token) says nothing about the model: no failure, no retry,
// no span marked Error, however many do it.
func TestBreakerCallerCancelsDuringPeek(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t)
		rt := &cancelBodyRT{}
		tr := New(rt, tel.options()...)
		const n = 10
		for i := range n {
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error)
			go func() {
				resp, err := tr.RoundTrip(chatRequest(t, ctx, "https://api.openai.com/v1/chat/completions"))
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				done <- err
			}()
			synctest.Wait() // the peek waits for the first event
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("call %d: %v, want context.Canceled", i, err)
			}
		}
		if got := rt.calls.Load(); got != n {
			t.Errorf("%d attempts for %d cancelled calls, want no retry", got, n)
		}
		c := tr.Circuits()
		if len(c) != 1 || c[0].State != CircuitClosed || c[0].Failures != 0 || c[0].Excluded != n {
			t.Errorf("circuits: %+v, want closed with %d excluded", c, n)
		}
		for _, s := range append(tel.spans("chat gpt-4o"), tel.spans("POST")...) {
			if s.Status().Code == codes.Error {
				t.Errorf("%s: status %v, want not an error", s.Name(), s.Status())
			}
		}
	})
}

// TestBreakerSurvivesPanics: a classifier (or hook, or observer) that
// panics never leaves a call in flight for ever, nor a half-open circuit
// waiting for a probe that will not report.
func TestBreakerSurvivesPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newModelBackend()
		b.set("model-a", 503)
		var panicking atomic.Bool
		classify := func(resp *http.Response, body []byte) Classification {
			if panicking.Load() {
				panic("classifier bug")
			}
			return Classify(resp, body)
		}
		tr := New(b, WithMaxRetries(0), WithClassifier(classify))
		call := func() (err error, panicked bool) {
			defer func() {
				if recover() != nil {
					panicked = true
				}
			}()
			_, err = send(t, tr, t.Context(), gw, "model-a")
			return err, false
		}
		panicking.Store(true)
		for range 5 {
			if _, p := call(); !p {
				t.Fatal("the classifier's panic did not reach the caller")
			}
		}
		if c, _ := circuitOf(tr, "model-a"); c.InFlight != 0 {
			t.Fatalf("after 5 panicking calls: %+v, want none in flight", c)
		}
		panicking.Store(false)
		for range DefaultBreakerMinFailures {
			call()
		}
		if c, _ := circuitOf(tr, "model-a"); c.State != CircuitOpen {
			t.Fatalf("after %d failed calls: %+v, want open", DefaultBreakerMinFailures, c)
		}
		time.Sleep(DefaultBreakerOpenTimeout + time.Millisecond)
		panicking.Store(true)
		if _, p := call(); !p { // the probe panics
			t.Fatal("the probe's panic did not reach the caller")
		}
		panicking.Store(false)
		b.set("model-a", 200)
		time.Sleep(DefaultBreakerOpenTimeout + time.Millisecond)
		if err, _ := call(); err != nil {
			t.Fatalf("after the panicked probe's open period: %v, want a probe that goes out", err)
		}
		if c, _ := circuitOf(tr, "model-a"); c.State != CircuitClosed {
			t.Errorf("after a successful probe: %+v, want closed", c)
		}
	})
}
