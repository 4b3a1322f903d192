package llmtransport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// fbBody is the chat body of the fallback tests, "model" first.
func fbBody(model string, stream bool) string {
	s := ""
	if stream {
		s = `,"stream":true`
	}
	return `{"model":"` + model + `","messages":[{"role":"user","content":"say \"model\": hi"}],"temperature":0.5` + s + `}`
}

// fbRequest is a POST of fbBody to the server's chat completions.
func fbRequest(t *testing.T, ctx context.Context, base, model string, stream bool) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(fbBody(model, stream)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-test-fallback-0123456789")
	req.Header.Set("X-Custom", "kept")
	return req
}

// fbOptions are quick retries and the chain a → b → c.
func fbOptions(more ...Option) []Option {
	return append([]Option{
		WithBackoff(time.Millisecond, time.Millisecond),
		WithMaxRetryWait(time.Second),
		WithFallbacks(map[string][]string{"a": {"b", "c"}}),
	}, more...)
}

// always is a script that answers every request with f.
func always(f llmtransporttest.Fault) func(int) llmtransporttest.Fault {
	return func(int) llmtransporttest.Fault { return f }
}

// readClose reads resp's body and closes it.
func readClose(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return string(b)
}

// googleModelQuota is a Gemini per-day quota of one model: the model's
// quota, not the account's.
const googleModelQuota = `{"error":{"code":429,"message":"Quota exceeded for metric: generativelanguage.googleapis.com/generate_requests_per_model_per_day, limit: 0","status":"RESOURCE_EXHAUSTED"}}`

// TestFallbackTriggers: which class of the primary's answer makes the
// transport fall back, and how many attempts the primary gets first.
func TestFallbackTriggers(t *testing.T) {
	json429 := http.Header{"Content-Type": {"application/json"}}
	tests := []struct {
		name     string
		fault    llmtransporttest.Fault
		opts     []Option
		fallback bool
		reason   string
		primary  int // requests the primary gets
	}{
		{"overloaded", llmtransporttest.Overloaded(), nil, true, "overloaded", 4},
		{"rate limited", llmtransporttest.RateLimited(llmtransporttest.RetryAfterMs, time.Millisecond), []Option{WithoutCooldowns()}, true, "rate_limited", 4},
		{"rate limit above the wait cap", llmtransporttest.RateLimited(llmtransporttest.RetryAfterSeconds, time.Hour), nil, true, "rate_limited", 1},
		{"bad gateway", llmtransporttest.BadGatewayHTML(), nil, true, "upstream_transient", 4},
		{"gateway timeout", llmtransporttest.OpenAIError(504, "server_error", "", "Gateway Timeout"), nil, true, "timeout", 4},
		{"reset before headers", llmtransporttest.ResetBeforeHeaders(), nil, true, "upstream_transient", 4},
		{"model not found", llmtransporttest.OpenAIError(404, "invalid_request_error", "model_not_found", "The model `a` does not exist"), nil, true, "model_not_found", 1},
		{"model's quota", llmtransporttest.Response(429, json429, googleModelQuota), nil, true, "quota_exhausted", 1},
		{"account's quota", llmtransporttest.InsufficientQuota(), nil, false, "", 1},
		{"account's quota, opted in", llmtransporttest.InsufficientQuota(), []Option{WithFallbackOn(ClassQuotaExhausted)}, true, "quota_exhausted", 1},
		{"invalid request", llmtransporttest.OpenAIError(400, "invalid_request_error", "invalid_value", "Invalid value for 'temperature'"), nil, false, "", 1},
		{"auth", llmtransporttest.OpenAIError(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided"), []Option{WithFallbackOn(ClassAuth)}, false, "", 1},
		{"permission", llmtransporttest.OpenAIError(403, "invalid_request_error", "model_not_allowed", "You are not allowed to use this model"), nil, false, "", 1},
		{"context length", llmtransporttest.OpenAIError(400, "invalid_request_error", "context_length_exceeded", "This model's maximum context length is 8192 tokens"), nil, false, "", 1},
		{"context length, opted in", llmtransporttest.OpenAIError(400, "invalid_request_error", "context_length_exceeded", "This model's maximum context length is 8192 tokens"), []Option{WithFallbackOn(ClassContextLength)}, true, "context_length", 1},
		{"content filtered", llmtransporttest.OpenAIError(400, "invalid_request_error", "content_filter", "The response was filtered"), nil, false, "", 1},
		{"content filtered, opted in", llmtransporttest.OpenAIError(400, "invalid_request_error", "content_filter", "The response was filtered"), []Option{WithFallbackOn(ClassContentFiltered)}, true, "content_filtered", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := llmtransporttest.NewServer(llmtransporttest.WithModel("a", always(tt.fault)))
			defer srv.Close()
			tr := New(nil, fbOptions(append(tt.opts, WithoutCircuitBreaker())...)...)
			defer tr.CloseIdleConnections()
			resp, err := tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "a", false))
			if err != nil {
				t.Fatal(err)
			}
			body := readClose(t, resp)
			fb, ok := FallbackOf(resp)
			if ok != tt.fallback {
				t.Fatalf("fell back: %v, want %v (status %d, %s)", ok, tt.fallback, resp.StatusCode, body)
			}
			if got := srv.Requests("a"); got != tt.primary {
				t.Errorf("the primary got %d requests, want %d", got, tt.primary)
			}
			if !tt.fallback {
				if srv.Requests("b") != 0 || resp.StatusCode == 200 {
					t.Errorf("status %d, b got %d requests: want the primary's answer", resp.StatusCode, srv.Requests("b"))
				}
				return
			}
			if resp.StatusCode != 200 || fb != (Fallback{Model: "b", From: "a", Reason: tt.reason}) {
				t.Errorf("status %d, %+v", resp.StatusCode, fb)
			}
			if !strings.Contains(body, `"model":"b"`) {
				t.Errorf("body %s", body)
			}
		})
	}
}

// TestFallbackModelScopedQuotaIsTheModels: the fixture of the model's
// quota is classified as a model's quota (it counts against the circuit).
func TestFallbackModelScopedQuotaIsTheModels(t *testing.T) {
	cl := Classify(&http.Response{StatusCode: 429, Header: http.Header{}}, []byte(googleModelQuota))
	if cl.Class != ClassQuotaExhausted || !cl.BreakerFailure {
		t.Fatalf("%+v", cl)
	}
}

// TestFallbackChainOrder: the targets are tried in order, each at most
// 1 + DefaultFallbackRetries times and the chain within WithMaxRetries
// retries; when every target fails the primary's last response goes back,
// body intact, with X-Should-Retry: false.
func TestFallbackChainOrder(t *testing.T) {
	srv := llmtransporttest.NewServer(
		llmtransporttest.WithModel("a", always(llmtransporttest.OpenAIError(529, "overloaded_error", "", "a is overloaded"))),
		llmtransporttest.WithModel("b", always(llmtransporttest.OpenAIError(503, "server_error", "", "b is down"))),
		llmtransporttest.WithModel("c", always(llmtransporttest.OpenAIError(503, "server_error", "", "c is down"))),
	)
	defer srv.Close()
	var events []FallbackEvent
	tr := New(nil, fbOptions(WithoutCircuitBreaker(), WithMaxRetries(1), WithOnFallback(func(ev FallbackEvent) { events = append(events, ev) }))...)
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "a", false))
	if err != nil {
		t.Fatal(err)
	}
	body := readClose(t, resp)
	if resp.StatusCode != 529 || !strings.Contains(body, "a is overloaded") || resp.Header.Get("X-Should-Retry") != "false" {
		t.Errorf("status %d, X-Should-Retry %q, body %s", resp.StatusCode, resp.Header.Get("X-Should-Retry"), body)
	}
	if _, ok := FallbackOf(resp); ok {
		t.Error("a failed chain says it fell back")
	}
	var order []string
	for _, r := range srv.Log() {
		order = append(order, r.Model)
	}
	// a and its one retry use the chain's one retry: b and c get one
	// attempt each.
	if got := strings.Join(order, ","); got != "a,a,b,c" {
		t.Errorf("requests %s, want a,a,b,c", got)
	}
	if len(events) != 2 || events[0].From != "a" || events[0].To != "b" || events[0].Reason != "overloaded" ||
		events[1].From != "b" || events[1].To != "c" || events[1].Reason != "upstream_transient" {
		t.Errorf("events %+v", events)
	}
}

// TestFallbackRetriesPerTarget: a target is retried at most
// WithFallbackRetries times, and the chain never makes more than
// 1 + targets + WithMaxRetries attempts.
func TestFallbackRetriesPerTarget(t *testing.T) {
	srv := llmtransporttest.NewServer(
		llmtransporttest.WithModel("a", always(llmtransporttest.ResetBeforeHeaders())),
		llmtransporttest.WithModel("b", always(llmtransporttest.Overloaded())),
		llmtransporttest.WithModel("c", always(llmtransporttest.Overloaded())),
	)
	defer srv.Close()
	tr := New(nil, fbOptions(WithoutCircuitBreaker(), WithMaxRetries(5))...)
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "a", false))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	// a: 1 + 5 retries uses the whole allowance; b and c one each. Its
	// last target's response goes back: a gave none.
	if a, b, c := srv.Requests("a"), srv.Requests("b"), srv.Requests("c"); a != 6 || b != 1 || c != 1 {
		t.Errorf("a %d, b %d, c %d requests, want 6, 1, 1", a, b, c)
	}
	if resp.StatusCode != 529 || resp.Header.Get("X-Should-Retry") != "false" {
		t.Errorf("status %d", resp.StatusCode)
	}

	srv2 := llmtransporttest.NewServer(
		llmtransporttest.WithModel("a", always(llmtransporttest.OpenAIError(404, "invalid_request_error", "model_not_found", "no a"))),
		llmtransporttest.WithModel("b", always(llmtransporttest.Overloaded())),
	)
	defer srv2.Close()
	tr2 := New(nil, fbOptions(WithoutCircuitBreaker(), WithFallbackRetries(2))...)
	defer tr2.CloseIdleConnections()
	resp, err = tr2.RoundTrip(fbRequest(t, t.Context(), srv2.URL, "a", false))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	if a, b, c := srv2.Requests("a"), srv2.Requests("b"), srv2.Requests("c"); a != 1 || b != 3 || c != 1 {
		t.Errorf("a %d, b %d, c %d requests, want 1, 3, 1", a, b, c)
	}
	if fb, _ := FallbackOf(resp); resp.StatusCode != 200 || fb.Model != "c" {
		t.Errorf("status %d, %+v, want c's answer", resp.StatusCode, fb)
	}
}

// openCircuits makes calls for model through tr until the circuits of
// every model in open are open.
func openCircuits(t *testing.T, tr *Transport, base, model string, open ...string) {
	t.Helper()
	for range 10 {
		if resp, err := tr.RoundTrip(fbRequest(t, t.Context(), base, model, false)); err == nil {
			readClose(t, resp)
		}
		n := 0
		for _, s := range tr.Circuits() {
			for _, m := range open {
				if s.Model == m && s.State == CircuitOpen {
					n++
				}
			}
		}
		if n == len(open) {
			return
		}
	}
	t.Fatalf("the circuits of %v did not open: %+v", open, tr.Circuits())
}

// TestFallbackCircuitOpen: a primary whose circuit is open gets no attempt,
// and a target whose circuit is open is skipped; with every circuit of the
// chain open, the caller gets the primary's ErrCircuitOpen.
func TestFallbackCircuitOpen(t *testing.T) {
	srv := llmtransporttest.NewServer(
		llmtransporttest.WithModel("a", always(llmtransporttest.Overloaded())),
		llmtransporttest.WithModel("b", always(llmtransporttest.Overloaded())),
	)
	defer srv.Close()
	tr := New(nil, fbOptions(WithMaxRetries(0))...)
	defer tr.CloseIdleConnections()
	// Each call fails on a and b, and c answers it, until a's and b's
	// circuits open.
	openCircuits(t, tr, srv.URL, "a", "a", "b")
	before := srv.Total()
	resp, err := tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "a", false))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	fb, _ := FallbackOf(resp)
	if fb != (Fallback{Model: "c", From: "a", Reason: "circuit_open"}) || resp.StatusCode != 200 {
		t.Errorf("status %d, %+v", resp.StatusCode, fb)
	}
	if log := srv.Log()[before:]; len(log) != 1 || log[0].Model != "c" {
		t.Errorf("requests after the circuits opened: %+v", log)
	}

	tr2 := New(nil, fbOptions(WithMaxRetries(0), WithFallbacks(map[string][]string{"a": {"b"}}))...)
	defer tr2.CloseIdleConnections()
	openCircuits(t, tr2, srv.URL, "a", "a", "b")
	before = srv.Total()
	_, err = tr2.RoundTrip(fbRequest(t, t.Context(), srv.URL, "a", false))
	var coe *CircuitOpenError
	if !errors.As(err, &coe) || coe.Model != "a" {
		t.Errorf("err %v, want the primary's circuit open", err)
	}
	if srv.Total() != before {
		t.Errorf("%d requests with every circuit open", srv.Total()-before)
	}
}

// TestFallbackCooldown: a target whose rate-limit cooldown runs is
// skipped; a primary whose cooldown runs goes to its targets at once.
func TestFallbackCooldown(t *testing.T) {
	limited := always(llmtransporttest.RateLimited(llmtransporttest.RetryAfterSeconds, 30*time.Second))
	srv := llmtransporttest.NewServer(llmtransporttest.WithModel("a", limited), llmtransporttest.WithModel("b", limited))
	defer srv.Close()
	tr := New(nil, fbOptions(WithoutCircuitBreaker(), WithMaxRetryWait(time.Minute), WithMaxRetries(0))...)
	defer tr.CloseIdleConnections()
	// b's 429 starts its cooldown (b has no chain of its own).
	resp, err := tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "b", false))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	for i, want := range []struct {
		reason string
		log    string
	}{
		{"rate_limited", "a,c"}, // a's 429 starts a's cooldown; b is skipped
		{"cooldown", "c"},       // a is skipped too
	} {
		before := srv.Total()
		resp, err = tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "a", false))
		if err != nil {
			t.Fatal(err)
		}
		readClose(t, resp)
		fb, _ := FallbackOf(resp)
		if fb != (Fallback{Model: "c", From: "a", Reason: want.reason}) {
			t.Errorf("call %d: %+v", i, fb)
		}
		var got []string
		for _, r := range srv.Log()[before:] {
			got = append(got, r.Model)
		}
		if strings.Join(got, ",") != want.log {
			t.Errorf("call %d: requests %v, want %s", i, got, want.log)
		}
	}
}

// TestFallbackWhatUpstreamSees: the target's request is the caller's with
// only the model changed: same headers, same body bytes otherwise, a
// consistent Content-Length; the caller's request is untouched.
func TestFallbackWhatUpstreamSees(t *testing.T) {
	srv := llmtransporttest.NewServer(llmtransporttest.WithModel("a", always(llmtransporttest.Overloaded())))
	defer srv.Close()
	tr := New(nil, fbOptions(WithMaxRetries(0))...)
	defer tr.CloseIdleConnections()
	req := fbRequest(t, t.Context(), srv.URL, "a", false)
	url, hdr, ctx, cl := req.URL.String(), req.Header.Clone(), req.Context(), req.ContentLength
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	log := srv.Log()
	if len(log) != 2 {
		t.Fatalf("%d requests", len(log))
	}
	if want := strings.Replace(fbBody("a", false), `"model":"a"`, `"model":"b"`, 1); string(log[1].Body) != want {
		t.Errorf("b got\n%s\nwant\n%s", log[1].Body, want)
	}
	if string(log[0].Body) != fbBody("a", false) {
		t.Errorf("a got %s", log[0].Body)
	}
	for _, h := range []string{"Authorization", "Content-Type", "X-Custom", "User-Agent"} {
		if log[0].Header.Get(h) != log[1].Header.Get(h) {
			t.Errorf("%s: a got %q, b %q", h, log[0].Header.Get(h), log[1].Header.Get(h))
		}
	}
	if got := log[1].Header.Get("Content-Length"); got != "" && got != itoa(len(log[1].Body)) {
		t.Errorf("Content-Length %s for %d bytes", got, len(log[1].Body))
	}
	// The caller's request is as it was, its body still readable through
	// GetBody.
	if req.URL.String() != url || req.Context() != ctx || req.ContentLength != cl || !equalHeader(req.Header, hdr) {
		t.Error("the caller's request was modified")
	}
	rc, _ := req.GetBody()
	if b, _ := io.ReadAll(rc); string(b) != fbBody("a", false) {
		t.Errorf("the caller's body: %s", b)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}

// TestFallbackPathAndQuery: a model named in an Azure or Gemini path, or a
// model= query parameter, is rewritten there; nothing else changes.
func TestFallbackPathAndQuery(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.URL.RequestURI()+" "+string(b))
		mu.Unlock()
		if strings.Contains(r.URL.RequestURI(), "-a") {
			w.WriteHeader(503)
			io.WriteString(w, `{"error":{"message":"down","type":"server_error"}}`)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	tr := New(nil, WithMaxRetries(0), WithFallbacks(map[string][]string{"dep-a": {"dep-b"}, "gem-a": {"gem-b"}, "rt-a": {"rt-b"}}))
	defer tr.CloseIdleConnections()
	for _, tc := range []struct{ path, body, want string }{
		{"/openai/deployments/dep-a/chat/completions?api-version=2024-10-21", `{"messages":[]}`, `/openai/deployments/dep-b/chat/completions?api-version=2024-10-21 {"messages":[]}`},
		{"/v1beta/models/gem-a:streamGenerateContent?alt=sse", `{"contents":[]}`, `/v1beta/models/gem-b:streamGenerateContent?alt=sse {"contents":[]}`},
		{"/v1/realtime?x=%2F&model=rt-a&y=1", ``, `/v1/realtime?x=%2F&model=rt-b&y=1 `},
	} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+tc.path, body)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		readClose(t, resp)
		mu.Lock()
		if len(seen) != 2 || seen[1] != tc.want || resp.StatusCode != 200 {
			t.Errorf("%s: status %d, seen %q", tc.path, resp.StatusCode, seen)
		}
		mu.Unlock()
	}
}

// TestFallbackCrossHost: a route sends the target to another gateway with
// another key.
func TestFallbackCrossHost(t *testing.T) {
	a := llmtransporttest.NewServer(llmtransporttest.WithModel("gpt-4o", always(llmtransporttest.Overloaded())))
	defer a.Close()
	b := llmtransporttest.NewServer(llmtransporttest.WithAPIKey("sk-key-of-b"))
	defer b.Close()
	bURL := strings.TrimPrefix(b.URL, "http://")
	var ev FallbackEvent
	tr := New(nil,
		WithMaxRetries(0),
		WithFallbacks(map[string][]string{"gpt-4o": {"gpt-4o at B"}}),
		WithFallbackRoute("gpt-4o at B", "gpt-4o-b", func(r *http.Request) {
			r.URL.Host, r.Host = bURL, ""
			r.Header.Set("Authorization", "Bearer sk-key-of-b")
		}),
		WithOnFallback(func(e FallbackEvent) { ev = e }),
	)
	defer tr.CloseIdleConnections()
	req := fbRequest(t, t.Context(), a.URL, "gpt-4o", false)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	if fb, _ := FallbackOf(resp); resp.StatusCode != 200 || fb.Model != "gpt-4o-b" {
		t.Fatalf("status %d, %+v", resp.StatusCode, fb)
	}
	if a.Total() != 1 || b.Requests("gpt-4o-b") != 1 {
		t.Errorf("A got %d, B %d", a.Total(), b.Total())
	}
	if ev.ToHost != bURL || ev.Host == bURL {
		t.Errorf("event %+v", ev)
	}
	if req.Header.Get("Authorization") != "Bearer sk-test-fallback-0123456789" {
		t.Error("the caller's header was modified")
	}
	found := false
	for _, s := range tr.Circuits() {
		found = found || s.Host == bURL && s.Model == "gpt-4o-b"
	}
	if !found {
		t.Errorf("no circuit for B: %+v", tr.Circuits())
	}
}

// TestFallbackStreams: a stream whose error comes after lifecycle events
// only (response.created) falls back; one whose error comes after content
// goes through to the caller as it is.
func TestFallbackStreams(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		switch {
		case bytes.Contains(b, []byte(`"model":"created-then-error"`)):
			io.WriteString(w, "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\"}}\n\n")
			w.(http.Flusher).Flush()
			io.WriteString(w, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
		case bytes.Contains(b, []byte(`"model":"content-then-error"`)):
			io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n")
			w.(http.Flusher).Flush()
			io.WriteString(w, "data: {\"error\":{\"message\":\"upstream died\",\"type\":\"server_error\"}}\n\n")
		default:
			io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"fine\"}}]}\n\ndata: [DONE]\n\n")
		}
	}))
	defer srv.Close()
	tr := New(nil, WithMaxRetries(0), WithFallbacks(map[string][]string{"created-then-error": {"good"}, "content-then-error": {"good"}}))
	defer tr.CloseIdleConnections()

	resp, err := tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "created-then-error", true))
	if err != nil {
		t.Fatal(err)
	}
	body := readClose(t, resp)
	if fb, ok := FallbackOf(resp); !ok || fb.Model != "good" || fb.Reason != "overloaded" || !strings.Contains(body, "fine") {
		t.Errorf("%+v, body %q", fb, body)
	}

	resp, err = tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "content-then-error", true))
	if err != nil {
		t.Fatal(err)
	}
	body = readClose(t, resp)
	if _, ok := FallbackOf(resp); ok || !strings.Contains(body, "Hel") || !strings.Contains(body, "upstream died") {
		t.Errorf("fell back %v, body %q", ok, body)
	}
}

// TestFallbackFirstByteTimeout: a primary that sends nothing within the
// first-byte timeout is not retried: the next target answers.
func TestFallbackFirstByteTimeout(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	hits := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if bytes.Contains(b, []byte(`"model":"slow"`)) {
			mu.Lock()
			hits["slow"]++
			mu.Unlock()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		mu.Lock()
		hits["fast"]++
		mu.Unlock()
		io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	defer close(release)
	tr := New(nil, WithFirstByteTimeout(100*time.Millisecond), WithBackoff(time.Millisecond, time.Millisecond),
		WithFallbacks(map[string][]string{"slow": {"fast"}}))
	defer tr.CloseIdleConnections()
	start := time.Now()
	resp, err := tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "slow", false))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	fb, _ := FallbackOf(resp)
	if fb.Model != "fast" || fb.Reason != "timeout" {
		t.Errorf("%+v", fb)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits["slow"] != 1 || hits["fast"] != 1 {
		t.Errorf("hits %v, want one each", hits)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestFallbackOneDeadline: the chain runs within the request's deadline;
// when it passes, the caller gets the context's error.
func TestFallbackOneDeadline(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if bytes.Contains(b, []byte(`"model":"a"`)) {
			w.WriteHeader(503)
			io.WriteString(w, `{"error":{"message":"down","type":"server_error"}}`)
			return
		}
		select { // b, c: slower than the deadline
		case <-time.After(hangGuard):
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	tr := New(nil, fbOptions(WithoutCircuitBreaker())...)
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	resp, err := tr.RoundTrip(fbRequest(t, ctx, srv.URL, "a", false))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("status %d, want the deadline's error", resp.StatusCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v for a 300 ms deadline", d)
	}
}

// TestFallbackNoChainForOtherModels: a model without a chain, and a call
// that succeeds, take the usual path.
func TestFallbackNoChainForOtherModels(t *testing.T) {
	srv := llmtransporttest.NewServer(llmtransporttest.WithModel("z", always(llmtransporttest.Overloaded())))
	defer srv.Close()
	tr := New(nil, fbOptions(WithMaxRetries(0))...)
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "z", false))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	if resp.StatusCode != 529 || srv.Total() != 1 {
		t.Errorf("status %d, %d requests", resp.StatusCode, srv.Total())
	}
}

// TestFallbackTelemetry: the span event, the metric and the headers.
func TestFallbackTelemetry(t *testing.T) {
	tel := newTelemetry(t)
	srv := llmtransporttest.NewServer(llmtransporttest.WithModel("a", always(llmtransporttest.Overloaded())))
	defer srv.Close()
	tr := New(nil, tel.options(WithMaxRetries(0), WithFallbacks(map[string][]string{"a": {"b"}}))...)
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "a", false))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	spans := tel.spans("chat a")
	if len(spans) != 1 {
		t.Fatalf("%d call spans", len(spans))
	}
	found := false
	for _, ev := range spans[0].Events() {
		if ev.Name == "fallback" {
			wantAttrs(t, "fallback event", ev.Attributes, map[string]string{"llm.fallback.from": "a", "llm.fallback.to": "b", "llm.error.class": "overloaded"})
			found = true
		}
	}
	if !found {
		t.Errorf("no fallback event: %s", dump(spans[0]))
	}
	if n, _ := sum(tel.collect(t), MetricFallbacks, map[string]string{"llm.fallback.from": "a", "llm.fallback.to": "b", "llm.error.class": "overloaded"}); n != 1 {
		t.Errorf("%s = %v", MetricFallbacks, n)
	}
	if n, _ := sum(tel.collect(t), MetricAttempts, map[string]string{"gen_ai.request.model": "b", "llm.error.class": "success"}); n != 1 {
		t.Errorf("attempts of b: %v", n)
	}
	if n, _ := sum(tel.collect(t), MetricAttempts, map[string]string{"gen_ai.request.model": "a", "llm.error.class": "overloaded"}); n != 1 {
		t.Errorf("attempts of a: %v", n)
	}
}

// TestFallbackCallerCancel: the caller's cancellation never falls back.
func TestFallbackCallerCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		cancel()
		<-r.Context().Done()
	}))
	defer srv.Close()
	n := 0
	tr := New(nil, fbOptions(WithOnFallback(func(FallbackEvent) { n++ }))...)
	defer tr.CloseIdleConnections()
	_, err := tr.RoundTrip(fbRequest(t, ctx, srv.URL, "a", false))
	if !errors.Is(err, context.Canceled) || n != 0 {
		t.Errorf("err %v, %d fallbacks", err, n)
	}
}

// TestFallbackNoLeaks: every connection of a fallback chain is released,
// whichever response goes back, and no goroutine is left.
func TestFallbackNoLeaks(t *testing.T) {
	checkLeaks(t)
	srv, ct, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch {
		case bytes.Contains(b, []byte(`"model":"a"`)):
			w.WriteHeader(503)
			io.WriteString(w, strings.Repeat(`{"error":{"message":"down","type":"server_error"}}`, 3000)) // larger than the peek
		case bytes.Contains(b, []byte(`"model":"s"`)):
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n")
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
			io.WriteString(w, "data: [DONE]\n\n")
		case bytes.Contains(b, []byte(`"model":"b"`)):
			w.WriteHeader(529)
			io.WriteString(w, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
		default:
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"choices\":[]}\n\ndata: [DONE]\n\n")
		}
	})
	tr := New(base, WithBackoff(time.Millisecond, time.Millisecond), WithoutCircuitBreaker(), WithMaxRetries(1),
		WithFallbacks(map[string][]string{"a": {"b"}, "s": {"b", "c"}}))
	for range 3 {
		for _, m := range []string{"a", "s"} {
			for _, stream := range []bool{false, true} {
				resp, err := tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, m, stream))
				if err != nil {
					t.Fatal(err)
				}
				// a's 503 is held through b's attempts: its body is cut
				// at the 64 KiB the transport kept (errBodyCut).
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
	tr.CloseIdleConnections()
	ct.waitClosed(t)
}

// TestFallbackCoolingPrimaryIsTheLastResort: a primary skipped for its
// cooldown is tried after all, once its cooldown is over, when no target
// answers.
func TestFallbackCoolingPrimaryIsTheLastResort(t *testing.T) {
	srv := llmtransporttest.NewServer(llmtransporttest.WithScript("a",
		llmtransporttest.RateLimited(llmtransporttest.RetryAfterMs, 200*time.Millisecond), llmtransporttest.OK()))
	defer srv.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadHost := strings.TrimPrefix(dead.URL, "http://")
	dead.Close() // connections to it are refused
	tr := New(nil, WithMaxRetries(0), WithoutCircuitBreaker(),
		WithFallbacks(map[string][]string{"a": {"gone"}}),
		WithFallbackRoute("gone", "a", func(r *http.Request) { r.URL.Host, r.Host = deadHost, "" }))
	defer tr.CloseIdleConnections()
	// a's 429 (and its cooldown); the target is refused: a's 429 goes back.
	resp, err := tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "a", false))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	if resp.StatusCode != 429 || resp.Header.Get("X-Should-Retry") != "false" {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// a cools: the target first, refused again, then a after its cooldown.
	resp, err = tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "a", false))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	if _, ok := FallbackOf(resp); resp.StatusCode != 200 || ok || srv.Requests("a") != 2 {
		t.Errorf("status %d, fell back %v, a got %d requests", resp.StatusCode, ok, srv.Requests("a"))
	}
}

// TestFallbackHeadersNotSpoofable: on a call with fallbacks, headers an
// upstream sends under the names FallbackOf reads are dropped: only the
// transport says that a fallback answered.
func TestFallbackHeadersNotSpoofable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(HeaderModel, "spoofed")
		w.Header().Set(HeaderFallbackFrom, "a")
		w.Header().Set(HeaderFallbackReason, "overloaded")
		io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","choices":[]}`)
	}))
	defer srv.Close()
	tr := New(nil, fbOptions()...)
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(fbRequest(t, t.Context(), srv.URL, "a", false))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	if fb, ok := FallbackOf(resp); ok || resp.Header.Get(HeaderModel) != "" {
		t.Fatalf("FallbackOf = %+v, %v (model header %q) for the primary's own answer", fb, ok, resp.Header.Get(HeaderModel))
	}
}
