package llmtransport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// modelBackend answers requests by model: with the status set for the
// model (200 by default), counting the requests that reach it. It is a
// RoundTripper (for synctest bubbles) and an http.Handler (for httptest).
type modelBackend struct {
	mu     sync.Mutex
	status map[string]int
	hits   map[string]int
	// gate, when set, holds every request until it is closed or the
	// request's context is done.
	gate chan struct{}
}

func newModelBackend() *modelBackend {
	return &modelBackend{status: map[string]int{}, hits: map[string]int{}}
}

func (b *modelBackend) set(model string, status int) {
	b.mu.Lock()
	b.status[model] = status
	b.mu.Unlock()
}

func (b *modelBackend) hitsOf(model string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits[model]
}

// modelOf finds the model the way a server would: a full decode of the
// body, or the path.
func modelOf(r *http.Request) string {
	if r.Body != nil {
		var v struct{ Model string }
		if json.NewDecoder(r.Body).Decode(&v) == nil && v.Model != "" {
			return v.Model
		}
	}
	p := r.URL.Path
	if i := strings.LastIndex(p, "/models/"); i >= 0 {
		m, _, _ := strings.Cut(p[i+len("/models/"):], ":")
		return m
	}
	if _, rest, ok := strings.Cut(p, "/openai/deployments/"); ok {
		m, _, _ := strings.Cut(rest, "/")
		return m
	}
	return ""
}

func (b *modelBackend) answer(r *http.Request) (int, string) {
	model := modelOf(r)
	b.mu.Lock()
	b.hits[model]++
	status, ok := b.status[model]
	gate := b.gate
	b.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return 0, ""
		}
	}
	if !ok {
		status = 200
	}
	if body, ok := clientErrorBodies[status]; ok {
		return status, body
	}
	if status == 200 {
		return status, `{"choices":[{"message":{"content":"ok"}}]}`
	}
	return status, fmt.Sprintf(`{"error":{"message":"status %d","type":"server_error"}}`, status)
}

// clientErrorBodies are OpenAI-style bodies of errors caused by the caller,
// which must never count against the model.
var clientErrorBodies = map[int]string{
	400: `{"error":{"message":"Invalid value for 'temperature': must be between 0 and 2.","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}`,
	401: `{"error":{"message":"Incorrect API key provided: sk-abc***xyz.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`,
	403: `{"error":{"message":"Project does not have access to this model","type":"invalid_request_error","param":null,"code":"model_access_denied"}}`,
	404: `{"error":{"message":"Invalid URL (POST /v1/chat/completion)","type":"invalid_request_error","param":null,"code":null}}`,
	413: `{"error":{"message":"Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 45000.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`,
	422: `{"error":{"message":"messages: field required","type":"invalid_request_error","param":"messages","code":null}}`,
	429: `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`,
}

func (b *modelBackend) RoundTrip(r *http.Request) (*http.Response, error) {
	status, body := b.answer(r)
	if r.Body != nil {
		r.Body.Close()
	}
	if status == 0 {
		return nil, r.Context().Err()
	}
	resp := response(status, body)
	resp.Request = r
	return resp, nil
}

func (b *modelBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status, body := b.answer(r)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func modelRequest(t testing.TB, ctx context.Context, rawURL, model string) *http.Request {
	t.Helper()
	body := fmt.Sprintf(`{"messages":[{"role":"user","content":"hi"}],"model":%q}`, model)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// send sends a request for model through rt and returns its status, or 0
// and the error.
func send(t testing.TB, rt http.RoundTripper, ctx context.Context, rawURL, model string) (int, error) {
	t.Helper()
	resp, err := rt.RoundTrip(modelRequest(t, ctx, rawURL, model))
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func circuitOf(tr *Transport, model string) (CircuitStatus, bool) {
	for _, c := range tr.Circuits() {
		if c.Model == model {
			return c, true
		}
	}
	return CircuitStatus{}, false
}

// stateLog records state changes.
type stateLog struct {
	mu      sync.Mutex
	changes []string
}

func (l *stateLog) record(ch CircuitStateChange) {
	l.mu.Lock()
	l.changes = append(l.changes, fmt.Sprintf("%s %s→%s", ch.Model, ch.From, ch.To))
	l.mu.Unlock()
}

func (l *stateLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.changes, ", ")
}

const gw = "http://gw.test/v1/chat/completions"

func TestBreakerIsolatesFailingModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newModelBackend()
		b.set("model-a", 500)
		var log stateLog
		tr := New(b, WithBackoff(10*time.Millisecond, 100*time.Millisecond), WithOnCircuitStateChange(log.record))
		var refused int
		for i := range 20 {
			status, err := send(t, tr, t.Context(), gw, "model-a")
			switch {
			case err == nil && status == 500 && i < DefaultBreakerMinFailures:
			case errors.Is(err, ErrCircuitOpen) && i >= DefaultBreakerMinFailures:
				refused++
			default:
				t.Fatalf("request %d for model-a: got %d, %v", i, status, err)
			}
			if status, err := send(t, tr, t.Context(), gw, "model-b"); err != nil || status != 200 {
				t.Fatalf("request %d for model-b: got %d, %v; want 200", i, status, err)
			}
		}
		// Each call makes 4 attempts; the end of the third failed call
		// opens the circuit.
		if got, want := b.hitsOf("model-a"), 4*DefaultBreakerMinFailures; got != want {
			t.Errorf("model-a reached the server %d times, want %d", got, want)
		}
		if got := b.hitsOf("model-b"); got != 20 {
			t.Errorf("model-b reached the server %d times, want 20", got)
		}
		if a, _ := circuitOf(tr, "model-a"); a.State != CircuitOpen || a.RetryIn <= 0 || a.RetryIn > DefaultBreakerOpenTimeout {
			t.Errorf("model-a circuit: %+v, want open with 0 < RetryIn ≤ the open timeout", a)
		}
		if bs, _ := circuitOf(tr, "model-b"); bs.State != CircuitClosed || bs.Successes != 20 {
			t.Errorf("model-b circuit: %+v, want closed with 20 successes", bs)
		}
		if got, want := log.String(), "model-a closed→open"; got != want {
			t.Errorf("state changes: %q, want %q", got, want)
		}
	})
}

func TestBreakerConcurrentOverLoopback(t *testing.T) {
	b := newModelBackend()
	b.set("model-a", 500)
	srv := httptest.NewServer(b)
	defer srv.Close()
	tr := New(srv.Client().Transport, WithMaxRetries(0))
	client := &http.Client{Transport: tr}
	const workers, each = 8, 40
	var (
		wg               sync.WaitGroup
		aFailed, aRefuse atomic.Int64
		bad              atomic.Value
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				model := "model-a"
				if (i+w)%2 == 0 {
					model = "model-b"
				}
				resp, err := client.Do(modelRequest(t, t.Context(), srv.URL+"/v1/chat/completions", model))
				switch {
				case err == nil:
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if model == "model-b" && resp.StatusCode != 200 || model == "model-a" && resp.StatusCode != 500 {
						bad.Store(fmt.Sprintf("%s got %d", model, resp.StatusCode))
					}
					if model == "model-a" {
						aFailed.Add(1)
					}
				case model == "model-a" && errors.Is(err, ErrCircuitOpen):
					aRefuse.Add(1)
				default:
					bad.Store(fmt.Sprintf("%s got %v", model, err))
				}
			}
		})
	}
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	// Once the 5th failure opens the circuit, only requests already in
	// flight (at most one per worker) still reach the server.
	if h := b.hitsOf("model-a"); h < DefaultBreakerMinFailures || h > DefaultBreakerMinFailures+workers {
		t.Errorf("model-a reached the server %d times, want between 5 and %d", h, DefaultBreakerMinFailures+workers)
	}
	if h := b.hitsOf("model-b"); h != workers*each/2 {
		t.Errorf("model-b reached the server %d times, want %d", h, workers*each/2)
	}
	if aRefuse.Load() == 0 || aFailed.Load()+aRefuse.Load() != workers*each/2 {
		t.Errorf("model-a: %d failed, %d refused", aFailed.Load(), aRefuse.Load())
	}

	// Now model-a fails fast, without reaching the server, with an error
	// that errors.Is and errors.As see through the *url.Error.
	before := b.hitsOf("model-a")
	_, err := client.Do(modelRequest(t, t.Context(), srv.URL+"/v1/chat/completions", "model-a"))
	var (
		urlErr *url.Error
		coe    *CircuitOpenError
	)
	if !errors.As(err, &urlErr) || !errors.Is(err, ErrCircuitOpen) || !errors.As(err, &coe) {
		t.Fatalf("got %T %v, want a *url.Error wrapping a *CircuitOpenError", err, err)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	if coe.Model != "model-a" || coe.Host != host || coe.RetryIn <= 0 || coe.RetryIn > DefaultBreakerOpenTimeout {
		t.Errorf("got %+v, want model-a on %s, 0 < RetryIn ≤ the open timeout", coe, host)
	}
	if !strings.Contains(err.Error(), "circuit open for model model-a") {
		t.Errorf("error text %q", err)
	}
	if after := b.hitsOf("model-a"); after != before {
		t.Errorf("a refused request reached the server (%d → %d hits)", before, after)
	}
}

func TestBreakerHalfOpenRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newModelBackend()
		b.set("model-a", 503)
		var log stateLog
		tr := New(b, WithMaxRetries(0), WithOnCircuitStateChange(log.record))
		for range DefaultBreakerMinFailures {
			send(t, tr, t.Context(), gw, "model-a")
		}
		time.Sleep(DefaultBreakerOpenTimeout - time.Second)
		if _, err := send(t, tr, t.Context(), gw, "model-a"); !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("1 s before the end of the open period: got %v, want ErrCircuitOpen", err)
		}
		time.Sleep(time.Second + time.Millisecond)

		// A failing probe opens it again, for a full period.
		if status, err := send(t, tr, t.Context(), gw, "model-a"); status != 503 || err != nil {
			t.Fatalf("probe: got %d, %v; want 503", status, err)
		}
		if a, _ := circuitOf(tr, "model-a"); a.State != CircuitOpen || a.RetryIn != DefaultBreakerOpenTimeout {
			t.Fatalf("after a failed probe: %+v, want open for the open timeout", a)
		}

		// The server heals; the next probe closes the circuit.
		b.set("model-a", 200)
		time.Sleep(DefaultBreakerOpenTimeout + time.Millisecond)
		if a, _ := circuitOf(tr, "model-a"); a.State != CircuitHalfOpen {
			t.Fatalf("after the open period: %+v, want half-open", a)
		}
		for i := range 3 {
			if status, err := send(t, tr, t.Context(), gw, "model-a"); status != 200 || err != nil {
				t.Fatalf("request %d after healing: got %d, %v", i, status, err)
			}
		}
		if a, _ := circuitOf(tr, "model-a"); a.State != CircuitClosed {
			t.Errorf("after healing: %+v, want closed", a)
		}
		want := "model-a closed→open, model-a open→half-open, model-a half-open→open, model-a open→half-open, model-a half-open→closed"
		if got := log.String(); got != want {
			t.Errorf("state changes:\n got %s\nwant %s", got, want)
		}
		if got := b.hitsOf("model-a"); got != DefaultBreakerMinFailures+1+3 {
			t.Errorf("model-a reached the server %d times, want %d", got, DefaultBreakerMinFailures+4)
		}
	})
}

// tripAndWait opens the circuit of model and waits out its open period.
func tripAndWait(t *testing.T, tr *Transport, b *modelBackend, model string) {
	t.Helper()
	b.set(model, 500)
	for range DefaultBreakerMinFailures {
		send(t, tr, t.Context(), gw, model)
	}
	if c, _ := circuitOf(tr, model); c.State != CircuitOpen {
		t.Fatalf("circuit of %s: %+v, want open", model, c)
	}
	time.Sleep(DefaultBreakerOpenTimeout + time.Millisecond)
	b.set(model, 200)
}

func TestBreakerHalfOpenAdmitsBoundedProbes(t *testing.T) {
	for _, probes := range []int{1, 3} {
		t.Run(fmt.Sprint(probes), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newModelBackend()
				tr := New(b, WithMaxRetries(0), WithBreakerProbes(probes))
				tripAndWait(t, tr, b, "model-a")
				gate := make(chan struct{})
				b.mu.Lock()
				b.gate = gate
				b.mu.Unlock()
				var wg sync.WaitGroup
				for range probes {
					wg.Go(func() {
						if status, err := send(t, tr, t.Context(), gw, "model-a"); status != 200 {
							t.Errorf("probe: got %d, %v; want 200", status, err)
						}
					})
				}
				synctest.Wait() // the probes are at the server
				_, err := send(t, tr, t.Context(), gw, "model-a")
				var coe *CircuitOpenError
				if !errors.As(err, &coe) || coe.RetryIn != 0 {
					t.Errorf("request beyond the probes: got %v, want a *CircuitOpenError with RetryIn 0", err)
				}
				close(gate)
				wg.Wait()
				if c, _ := circuitOf(tr, "model-a"); c.State != CircuitClosed {
					t.Errorf("after %d successful probes: %+v, want closed", probes, c)
				}
			})
		})
	}
}

func TestBreakerProbeIsNeverWedged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newModelBackend()
		tr := New(b, WithMaxRetries(0))
		tripAndWait(t, tr, b, "model-a")

		// A probe cancelled by its caller says nothing: the next request
		// is a probe again.
		gate := make(chan struct{})
		b.mu.Lock()
		b.gate = gate
		b.mu.Unlock()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() {
			_, err := send(t, tr, ctx, gw, "model-a")
			done <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled probe: got %v", err)
		}
		b.mu.Lock()
		b.gate = nil
		b.mu.Unlock()
		if c, _ := circuitOf(tr, "model-a"); c.State != CircuitHalfOpen || c.Excluded != 1 {
			t.Fatalf("after a cancelled probe: %+v, want half-open with 1 excluded", c)
		}

		// A probe whose body is never read still reports its success.
		resp, err := tr.RoundTrip(modelRequest(t, t.Context(), gw, "model-a"))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("probe: %v", err)
		}
		if c, _ := circuitOf(tr, "model-a"); c.State != CircuitClosed {
			t.Errorf("before the probe's body is read: %+v, want closed", c)
		}
		resp.Body.Close()
	})
}

func TestBreakerClientErrorsNeverTrip(t *testing.T) {
	for _, status := range []int{400, 401, 403, 404, 413, 422, 429} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newModelBackend()
				b.set("model-a", status)
				tr := New(b, WithMaxRetries(0))
				const n = 30
				for i := range n {
					if got, err := send(t, tr, t.Context(), gw, "model-a"); got != status {
						t.Fatalf("request %d: got %d, %v; want %d", i, got, err, status)
					}
				}
				c, _ := circuitOf(tr, "model-a")
				if c.State != CircuitClosed || c.Failures != 0 || c.Successes != 0 || c.Excluded != n {
					t.Errorf("got %+v, want closed with %d excluded", c, n)
				}
				if got := b.hitsOf("model-a"); got != n {
					t.Errorf("server saw %d requests, want %d", got, n)
				}
			})
		})
	}
}

func TestBreakerExcludedDoNotBreakARun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newModelBackend()
		tr := New(b, WithMaxRetries(0))
		for i := range DefaultBreakerMinFailures {
			b.set("model-a", 502)
			send(t, tr, t.Context(), gw, "model-a")
			if i < DefaultBreakerMinFailures-1 {
				b.set("model-a", 400) // says nothing about the model
				send(t, tr, t.Context(), gw, "model-a")
			}
		}
		if c, _ := circuitOf(tr, "model-a"); c.State != CircuitOpen {
			t.Errorf("got %+v, want open: client errors between failures do not reset the run", c)
		}
	})
}

func TestBreakerCancelledRequestsDoNotCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newModelBackend()
		b.gate = make(chan struct{}) // never opened
		tr := New(b)
		const n = 20
		for i := range n {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			if _, err := send(t, tr, ctx, gw, "model-a"); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("request %d: got %v, want the deadline", i, err)
			}
			cancel()
		}
		c, _ := circuitOf(tr, "model-a")
		if c.State != CircuitClosed || c.Failures != 0 || c.Excluded != n {
			t.Errorf("got %+v, want closed with %d excluded", c, n)
		}
	})
}

func TestBreakerOpenPeriodHonoursWaitHint(t *testing.T) {
	for _, tt := range []struct {
		name string
		hint time.Duration
		want time.Duration
	}{
		{"long hint", 5 * time.Minute, 5 * time.Minute},
		{"short hint", time.Second, DefaultBreakerOpenTimeout},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newModelBackend()
				b.set("model-a", 503)
				classify := func(resp *http.Response, body []byte) Classification {
					cl := Classify(resp, body)
					if resp.StatusCode == 503 {
						cl.RetryAfter, cl.RetryAfterSource = tt.hint, "retry-after"
					}
					return cl
				}
				tr := New(b, WithMaxRetries(0), WithClassifier(classify))
				for range DefaultBreakerMinFailures {
					send(t, tr, t.Context(), gw, "model-a")
				}
				_, err := send(t, tr, t.Context(), gw, "model-a")
				var coe *CircuitOpenError
				if !errors.As(err, &coe) || coe.RetryIn != tt.want {
					t.Fatalf("got %v, want next probe in %v", err, tt.want)
				}
				time.Sleep(tt.want - time.Second)
				if _, err := send(t, tr, t.Context(), gw, "model-a"); !errors.As(err, &coe) || coe.RetryIn != time.Second {
					t.Fatalf("1 s before the end: got %v, want open for 1s more", err)
				}
				time.Sleep(time.Second + time.Millisecond)
				b.set("model-a", 200)
				if status, err := send(t, tr, t.Context(), gw, "model-a"); status != 200 {
					t.Fatalf("after %v: got %d, %v; want a probe through", tt.want, status, err)
				}
			})
		})
	}
}

func TestBreakerCallbackMayCallBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newModelBackend()
		b.set("model-a", 500)
		var (
			tr   *Transport
			seen []string
		)
		tr = New(b, WithMaxRetries(0), WithOnCircuitStateChange(func(ch CircuitStateChange) {
			// Calling back into the transport must not deadlock, and
			// the snapshot already shows the new state.
			c, _ := circuitOf(tr, ch.Model)
			seen = append(seen, c.State.String())
			// Neither may sending a request for another model.
			send(t, tr, context.Background(), gw, "model-b")
		}))
		for range DefaultBreakerMinFailures {
			send(t, tr, t.Context(), gw, "model-a")
		}
		time.Sleep(DefaultBreakerOpenTimeout + time.Millisecond)
		send(t, tr, t.Context(), gw, "model-a")
		if got, want := strings.Join(seen, ","), "open,half-open,open"; got != want {
			t.Errorf("states seen from the callback: %s, want %s", got, want)
		}
		if got := b.hitsOf("model-b"); got != 3 {
			t.Errorf("the callback's requests: %d, want 3", got)
		}
	})
}

func TestBreakerObserversGetTheRequestContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type ctxKey struct{}
		b := newModelBackend()
		b.set("model-a", 500)
		var got []any
		tr := New(b, WithMaxRetries(0))
		tr.cfg.breaker.observers = append(tr.cfg.breaker.observers, func(ctx context.Context, ch CircuitStateChange) {
			got = append(got, ctx.Value(ctxKey{}))
		})
		for i := range DefaultBreakerMinFailures {
			send(t, tr, context.WithValue(t.Context(), ctxKey{}, i), gw, "model-a")
		}
		if len(got) != 1 || got[0] != DefaultBreakerMinFailures-1 {
			t.Errorf("observer saw contexts %v, want that of the request that tripped the circuit", got)
		}
	})
}

func TestBreakerPathsAndLargeBodies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newModelBackend()
		tr := New(b, WithMaxRetries(0))
		for _, m := range []string{"gemini-bad", "azure-bad", "big-bad"} {
			b.set(m, 503)
		}
		gemini := func(model string) *http.Request {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost,
				"https://generativelanguage.googleapis.com/v1beta/models/"+model+":streamGenerateContent?alt=sse",
				strings.NewReader(`{"contents":[{"parts":[{"text":"hi"}]}]}`))
			return req
		}
		azure := func(model string) *http.Request {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost,
				"https://res.openai.azure.com/openai/deployments/"+model+"/chat/completions?api-version=2024-10-21",
				strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
			return req
		}
		big := func(model string) *http.Request {
			body := bigChatBody(1<<20, model)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, gw, strings.NewReader(string(body)))
			return req
		}
		for range DefaultBreakerMinFailures + 2 {
			for _, r := range []*http.Request{gemini("gemini-bad"), gemini("gemini-good"), azure("azure-bad"), azure("azure-good"), big("big-bad"), big("big-good")} {
				resp, err := tr.RoundTrip(r)
				if err == nil {
					resp.Body.Close()
				}
			}
		}
		want := map[circuitKey]CircuitState{
			{"generativelanguage.googleapis.com", "gemini-bad"}:  CircuitOpen,
			{"generativelanguage.googleapis.com", "gemini-good"}: CircuitClosed,
			{"res.openai.azure.com", "azure-bad"}:                CircuitOpen,
			{"res.openai.azure.com", "azure-good"}:               CircuitClosed,
			{"gw.test", "big-bad"}:                               CircuitOpen,
			{"gw.test", "big-good"}:                              CircuitClosed,
		}
		got := map[circuitKey]CircuitState{}
		for _, c := range tr.Circuits() {
			got[circuitKey{c.Host, c.Model}] = c.State
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("circuits:\n got %v\nwant %v", got, want)
		}
		for _, m := range []string{"gemini-bad", "azure-bad", "big-bad"} {
			if h := b.hitsOf(m); h != DefaultBreakerMinFailures {
				t.Errorf("%s reached the server %d times, want %d", m, h, DefaultBreakerMinFailures)
			}
		}
		for _, m := range []string{"gemini-good", "azure-good", "big-good"} {
			if h := b.hitsOf(m); h != DefaultBreakerMinFailures+2 {
				t.Errorf("%s reached the server %d times, want %d", m, h, DefaultBreakerMinFailures+2)
			}
		}
	})
}

func TestBreakerFailureRatioOverWindow(t *testing.T) {
	for _, tt := range []struct {
		name     string
		pause    time.Duration // before the last failure
		wantOpen bool
	}{
		{"within the window", 0, true},
		{"after the window", DefaultBreakerWindow + DefaultBreakerWindow/10, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newModelBackend()
				tr := New(b, WithMaxRetries(0), WithBreakerThreshold(0.5, 3))
				// 2 successes and 2 failures, alternating: too few
				// failures to judge.
				for i := range 4 {
					b.set("model-a", [...]int{200, 500}[i%2])
					send(t, tr, t.Context(), gw, "model-a")
				}
				if c, _ := circuitOf(tr, "model-a"); c.State != CircuitClosed {
					t.Fatalf("after 4 outcomes: %+v, want closed", c)
				}
				time.Sleep(tt.pause)
				b.set("model-a", 500)
				send(t, tr, t.Context(), gw, "model-a")
				if c, _ := circuitOf(tr, "model-a"); (c.State == CircuitOpen) != tt.wantOpen {
					t.Errorf("after the 3rd failure: %+v, want open: %v", c, tt.wantOpen)
				}
			})
		})
	}
}

func TestBreakerOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newModelBackend()
		b.set("model-a", 500)
		tr := New(b, WithMaxRetries(0), WithoutCircuitBreaker())
		for range 20 {
			if status, err := send(t, tr, t.Context(), gw, "model-a"); status != 500 {
				t.Fatalf("got %d, %v; want 500", status, err)
			}
		}
		if c := tr.Circuits(); c != nil {
			t.Errorf("Circuits() = %v, want nil", c)
		}
	})
}

func TestCircuitStateString(t *testing.T) {
	for s, want := range map[CircuitState]string{CircuitClosed: "closed", CircuitHalfOpen: "half-open", CircuitOpen: "open", 9: "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("%d: got %q, want %q", s, got, want)
		}
	}
}
