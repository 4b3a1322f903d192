package retryable_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
	"github.com/llmtransport/llmtransport/retryable"
)

func chat(model string) []byte {
	return []byte(`{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`)
}

// do sends one chat completion for model through c and returns the
// response with its body read, and the error.
func do(t *testing.T, c *retryablehttp.Client, url, model string) (*http.Response, string, error) {
	t.Helper()
	req, err := retryablehttp.NewRequestWithContext(t.Context(), http.MethodPost, url+"/v1/chat/completions", chat(model))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(b), nil
}

// fast is a Transport over gw with short waits.
func fast(gw *llmtransporttest.Server, opts ...llmtransport.Option) *llmtransport.Transport {
	return llmtransport.New(gw.Client().Transport,
		append([]llmtransport.Option{llmtransport.WithBackoff(time.Millisecond, time.Millisecond)}, opts...)...)
}

// lastBody is the body of the last response gw sent.
func lastBody(gw *llmtransporttest.Server) string {
	log := gw.Log()
	return string(log[len(log)-1].ResponseBody)
}

// TestStackedAttempts: a model that always answers 500 costs 1 + N upstream
// requests through NewClient (N = llmtransport's retries), where
// go-retryablehttp's defaults stacked on the same Transport cost
// (1 + RetryMax) × (1 + N) = 20; the caller gets the real last 500, body
// intact, marked X-Should-Retry: false.
func TestStackedAttempts(t *testing.T) {
	fail := llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error: do request failed")
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("m", func(int) llmtransporttest.Fault { return fail }))
	defer gw.Close()

	naive := retryablehttp.NewClient()
	naive.Logger = nil
	naive.RetryWaitMin, naive.RetryWaitMax = time.Millisecond, time.Millisecond
	naive.HTTPClient = &http.Client{Transport: fast(gw, llmtransport.WithoutCircuitBreaker())}
	if _, _, err := do(t, naive, gw.URL, "m"); err == nil {
		t.Fatal("go-retryablehttp's defaults: want its giving-up error")
	}
	if got, want := gw.Requests("m"), (1+naive.RetryMax)*(1+llmtransport.DefaultMaxRetries); got != want {
		t.Errorf("go-retryablehttp's defaults: %d upstream requests, want %d", got, want)
	}

	before := gw.Requests("m")
	c := retryable.NewClient(fast(gw))
	resp, body, err := do(t, c, gw.URL, "m")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := gw.Requests("m")-before, 1+llmtransport.DefaultMaxRetries; got != want {
		t.Errorf("NewClient: %d upstream requests, want %d", got, want)
	}
	if resp.StatusCode != 500 || resp.Header.Get("X-Should-Retry") != "false" {
		t.Errorf("got %d, X-Should-Retry %q; want the last 500, marked false", resp.StatusCode, resp.Header.Get("X-Should-Retry"))
	}
	if want := lastBody(gw); body != want || !strings.Contains(body, "do_request_failed") {
		t.Errorf("body %q, want the gateway's %q", body, want)
	}
}

// TestStackedQuotaSentOnce: insufficient_quota (a 429 not worth retrying)
// is sent once, and comes back as it was.
func TestStackedQuotaSentOnce(t *testing.T) {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("m", func(int) llmtransporttest.Fault { return llmtransporttest.InsufficientQuota() }))
	defer gw.Close()
	// Both ways the package documents: NewClient, and CheckRetry and
	// Backoff on a Client of one's own, with retryablehttp's default
	// ErrorHandler.
	own := retryablehttp.NewClient()
	own.Logger = nil
	own.CheckRetry, own.Backoff = retryable.CheckRetry, retryable.Backoff
	own.HTTPClient = &http.Client{Transport: fast(gw)}
	for name, c := range map[string]*retryablehttp.Client{"NewClient": retryable.NewClient(fast(gw)), "CheckRetry": own} {
		before := gw.Requests("m")
		resp, body, err := do(t, c, gw.URL, "m")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := gw.Requests("m") - before; got != 1 {
			t.Errorf("%s: %d upstream requests, want 1", name, got)
		}
		if resp.StatusCode != 429 || !strings.Contains(body, "insufficient_quota") {
			t.Errorf("%s: got %d %q, want the 429 insufficient_quota", name, resp.StatusCode, body)
		}
	}
}

// TestStackedCircuitOpen: once the model's circuit is open, a call comes
// back at once, without an upstream request, and errors.Is finds
// ErrCircuitOpen in the error, through NewClient (the error as it is) and
// through retryablehttp's default ErrorHandler ("giving up after 1
// attempt(s): …").
func TestStackedCircuitOpen(t *testing.T) {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("dead", func(int) llmtransporttest.Fault { return llmtransporttest.Overloaded() }))
	defer gw.Close()
	tr := fast(gw, llmtransport.WithBreakerThreshold(0.5, 3), llmtransport.WithBreakerOpenTimeout(time.Hour))
	c := retryable.NewClient(tr)
	for i := 0; ; i++ {
		resp, _, err := do(t, c, gw.URL, "dead")
		if errors.Is(err, llmtransport.ErrCircuitOpen) {
			break
		}
		if err != nil || resp.StatusCode != 529 || i == 5 {
			t.Fatalf("call %d: got %v, %v; want the 529 until the circuit opens", i, resp, err)
		}
	}
	own := retryablehttp.NewClient()
	own.Logger = nil
	own.CheckRetry, own.Backoff = retryable.CheckRetry, retryable.Backoff
	own.HTTPClient = &http.Client{Transport: tr}
	for name, c := range map[string]*retryablehttp.Client{"NewClient": c, "CheckRetry": own} {
		before := gw.Requests("dead")
		start := time.Now()
		_, _, err := do(t, c, gw.URL, "dead")
		if !errors.Is(err, llmtransport.ErrCircuitOpen) {
			t.Errorf("%s: got %v, want ErrCircuitOpen", name, err)
		}
		var coe *llmtransport.CircuitOpenError
		if !errors.As(err, &coe) || coe.Model != "dead" {
			t.Errorf("%s: errors.As *CircuitOpenError: %v", name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: took %v, want at once", name, d)
		}
		if n := gw.Requests("dead") - before; n != 0 {
			t.Errorf("%s: %d upstream requests, want 0", name, n)
		}
	}
}

// TestRetryLayer: over a Transport with WithMaxRetries(0), go-retryablehttp
// is the retry layer, by classification: a 429 is retried after its hint,
// an overloaded 529 retried, a 400 not.
func TestRetryLayer(t *testing.T) {
	const hint = 80 * time.Millisecond
	gw := llmtransporttest.NewServer(
		llmtransporttest.WithScript("limited", llmtransporttest.RateLimited(llmtransporttest.BodyRetryDelay, hint)),
		llmtransporttest.WithScript("overloaded", llmtransporttest.Overloaded(), llmtransporttest.Overloaded()),
		llmtransporttest.WithModel("bad", func(int) llmtransporttest.Fault {
			return llmtransporttest.OpenAIError(400, "invalid_request_error", "invalid_value", "bad")
		}),
	)
	defer gw.Close()
	c := retryable.NewClient(fast(gw, llmtransport.WithMaxRetries(0)))
	c.RetryWaitMin, c.RetryWaitMax = time.Millisecond, 2*time.Millisecond

	start := time.Now()
	resp, _, err := do(t, c, gw.URL, "limited")
	if err != nil || resp.StatusCode != 200 || gw.Requests("limited") != 2 {
		t.Fatalf("limited: got %v, %v after %d requests; want 200 after 2", resp, err, gw.Requests("limited"))
	}
	if d := time.Since(start); d < hint {
		t.Errorf("limited: answered after %v, before the %v retryDelay", d, hint)
	}
	if resp, _, err := do(t, c, gw.URL, "overloaded"); err != nil || resp.StatusCode != 200 || gw.Requests("overloaded") != 3 {
		t.Errorf("overloaded: got %v, %v after %d requests; want 200 after 3", resp, err, gw.Requests("overloaded"))
	}
	if resp, body, err := do(t, c, gw.URL, "bad"); err != nil || resp.StatusCode != 400 || gw.Requests("bad") != 1 || !strings.Contains(body, "invalid_value") {
		t.Errorf("bad: got %v, %q, %v after %d requests; want the 400 once", resp, body, err, gw.Requests("bad"))
	}
}

// TestCheckRetryKeepsTheBody: CheckRetry reads the start of an error body to
// classify it; the caller still reads every byte, however long the body.
func TestCheckRetryKeepsTheBody(t *testing.T) {
	long := `{"error":{"message":"` + strings.Repeat("x", 200<<10) + `","type":"invalid_request_error","code":"bad"}}`
	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("m", llmtransporttest.Response(400, nil, long)))
	defer gw.Close()
	c := retryable.NewClient(gw.Client().Transport)
	resp, body, err := do(t, c, gw.URL, "m")
	if err != nil || resp.StatusCode != 400 || body != long {
		t.Fatalf("got %v, %d bytes, %v; want the 400 and its %d bytes", resp, len(body), err, len(long))
	}
}

// TestCheckRetryRules: the rules, one response each.
func TestCheckRetryRules(t *testing.T) {
	resp := func(status int, body string, kv ...string) *http.Response {
		h := http.Header{"Content-Type": {"application/json"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
	}
	overloaded := `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	soon, stop := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer stop()
	cases := []struct {
		name  string
		ctx   context.Context
		resp  *http.Response
		err   error
		retry bool
	}{
		{"529 overloaded", context.Background(), resp(529, overloaded), nil, true},
		{"529 marked false by llmtransport", context.Background(), resp(529, overloaded, "X-Should-Retry", "false"), nil, false},
		{"400 marked true by the server", context.Background(), resp(400, `{"error":{"type":"invalid_request_error"}}`, "X-Should-Retry", "true"), nil, true},
		{"429 insufficient_quota", context.Background(), resp(429, `{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}`), nil, false},
		{"429 with a hint of a day", context.Background(), resp(429, `{"error":{"code":"rate_limit_exceeded"}}`, "Retry-After", "86400"), nil, false},
		{"429 with a hint past the deadline", soon, resp(429, `{"error":{"code":"rate_limit_exceeded"}}`, "Retry-After", "1"), nil, false},
		{"429 rate limited", context.Background(), resp(429, `{"error":{"code":"rate_limit_exceeded"}}`, "Retry-After", "1"), nil, true},
		{"200", context.Background(), resp(200, `{"id":"x"}`), nil, false},
		{"circuit open", context.Background(), nil, &llmtransport.CircuitOpenError{Model: "m"}, false},
		{"transport error", context.Background(), nil, io.ErrUnexpectedEOF, false},
	}
	for _, tc := range cases {
		retry, err := retryable.CheckRetry(tc.ctx, tc.resp, tc.err)
		if retry != tc.retry || err != nil {
			t.Errorf("%s: got %v, %v; want %v, nil", tc.name, retry, err, tc.retry)
		}
	}
	if retry, err := retryable.CheckRetry(cancelled, resp(529, overloaded), nil); retry || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v, %v; want false, context.Canceled", retry, err)
	}
}

// TestBackoff: a hint is waited for in full, whatever min and max, even
// after go-retryablehttp drained the body it came in; without one, the
// waits grow from min to max, jittered down by at most a quarter.
func TestBackoff(t *testing.T) {
	r := &http.Response{StatusCode: 429, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"quota","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.5s"}]}}`))}
	if retry, _ := retryable.CheckRetry(context.Background(), r, nil); !retry {
		t.Fatal("want the 429 retried")
	}
	io.Copy(io.Discard, r.Body) // as go-retryablehttp does before Backoff
	r.Body.Close()
	if got := retryable.Backoff(time.Millisecond, time.Millisecond, 0, r); got != 1500*time.Millisecond {
		t.Errorf("Gemini retryDelay 1.5s: waited %v", got)
	}
	hdr := &http.Response{StatusCode: 429, Header: http.Header{"Retry-After-Ms": {"250"}}, Body: http.NoBody}
	if got := retryable.Backoff(time.Millisecond, time.Millisecond, 3, hdr); got != 250*time.Millisecond {
		t.Errorf("retry-after-ms 250: waited %v", got)
	}
	for n, step := range []time.Duration{100, 200, 400, 800, 800, 800} {
		step *= time.Millisecond
		for range 20 {
			got := retryable.Backoff(100*time.Millisecond, 800*time.Millisecond, n, nil)
			if got > step || got < step*3/4 {
				t.Fatalf("attempt %d: waited %v, want within [%v, %v]", n, got, step*3/4, step)
			}
		}
	}
}
