package main

import (
	"bytes"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// TestRun runs the demo briefly, as CI's proof that it works.
func TestRun(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	// 1.2 s, not 1 s: with 2 callers a call starts every 50 ms, and the
	// 20th, for the no-quota model, starts at 1 s, when a 1 s run's load
	// ends (under -race it was often left out).
	cfg := config{duration: 1200 * time.Millisecond, concurrency: 2, faultRate: 0.2, seed: 1, budgetRatio: 0.1, progress: 250 * time.Millisecond}
	var out bytes.Buffer
	res, err := simulate(t.Context(), cfg, &out)
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, out.String())
	}
	for _, c := range []*client{res.with, res.without} {
		h := c.models[modelHealthy]
		if h.calls == 0 || h.ok != h.calls {
			t.Errorf("%s: healthy model got %d of %d calls ok, want all of at least one", c.name, h.ok, h.calls)
		}
		tot := c.totals()
		if tot.upstream < tot.calls-tot.refused {
			t.Errorf("%s: the gateway saw %d requests for %d calls", c.name, tot.upstream, tot.calls)
		}
	}
	// The no-quota model: the SDK alone sends each call 3 times (openai-go
	// retries every 429), llmtransport once.
	if q := res.without.models[modelNoQuota]; q.calls == 0 || q.wasted != 2*q.calls || q.ok != 0 {
		t.Errorf("SDK alone, %s: %d calls, %d ok, %d wasted requests; want some calls, none ok, 2 wasted per call", modelNoQuota, q.calls, q.ok, q.wasted)
	}
	if w := res.with.totals().wasted; w != 0 {
		t.Errorf("SDK + llmtransport: %d wasted requests, want 0", w)
	}
	// Both clients start calls on their own tickers: one call either way.
	a := res.with.totals().calls + int(res.with.skipped.Load())
	b := res.without.totals().calls + int(res.without.skipped.Load())
	if a < b-1 || a > b+1 {
		t.Errorf("the clients got different loads: %d and %d calls", a, b)
	}
	for _, want := range []string{"llmtransport demo:", "[", "== Headline", "emulates openai-go", "== SDK + llmtransport", "== SDK alone", "Legend", modelDead, modelNoQuota} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := config{duration: time.Second, concurrency: 1, faultRate: 0.5, budgetRatio: 0.1}
	if err := good.validate(); err != nil {
		t.Errorf("valid config: got %v", err)
	}
	for _, bad := range []config{
		{duration: 0, concurrency: 1},
		{duration: time.Second, concurrency: 0},
		{duration: time.Second, concurrency: 1, faultRate: 1.5},
		{duration: time.Second, concurrency: 1, budgetRatio: -1},
	} {
		if err := bad.validate(); err == nil {
			t.Errorf("config %+v: got no error", bad)
		}
	}
}

// TestSDKRetryPolicy checks that the demo's client retries as openai-go
// v3.96.0 does: which answers, how long it waits, and how many times.
func TestSDKRetryPolicy(t *testing.T) {
	resp := func(status int, kv ...string) *http.Response {
		r := &http.Response{StatusCode: status, Header: http.Header{}}
		for i := 0; i < len(kv); i += 2 {
			r.Header.Set(kv[i], kv[i+1])
		}
		return r
	}
	for _, tc := range []struct {
		res  *http.Response
		want bool
	}{
		{nil, true}, // a connection error
		{resp(408), true}, {resp(409), true}, {resp(429), true}, {resp(500), true}, {resp(529), true},
		{resp(400), false}, {resp(401), false}, {resp(404), false},
		{resp(500, "x-should-retry", "false"), false},
		{resp(400, "x-should-retry", "true"), true},
	} {
		status := 0
		if tc.res != nil {
			status = tc.res.StatusCode
		}
		if got := shouldRetry(tc.res, nil); got != tc.want {
			t.Errorf("shouldRetry(%d %v) = %t, want %t", status, tc.res, got, tc.want)
		}
	}
	for n, base := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		for range 50 {
			d, ok := retryDelay(resp(500), n)
			if !ok || d > base || d <= base*3/4 {
				t.Fatalf("retryDelay after %d retries = %v, %t; want in (%v, %v]", n, d, ok, base*3/4, base)
			}
		}
	}
	for _, tc := range []struct {
		res   *http.Response
		want  time.Duration
		retry bool
	}{
		{resp(429, "Retry-After-Ms", "150"), 150 * time.Millisecond, true},
		{resp(429, "Retry-After-Ms", "150", "Retry-After", "5"), 150 * time.Millisecond, true},
		{resp(429, "Retry-After", "1.5"), 1500 * time.Millisecond, true},
		{resp(429, "Retry-After", "120"), 2 * time.Minute, true},
		{resp(429, "Retry-After", "121"), 0, false}, // above openai-go's cap: no retry
		{resp(429, "Retry-After", strconv.Itoa(3600)), 0, false},
	} {
		d, ok := retryDelay(tc.res, 0)
		if d != tc.want || ok != tc.retry {
			t.Errorf("retryDelay(%v) = %v, %t; want %v, %t", tc.res.Header, d, ok, tc.want, tc.retry)
		}
	}

	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("m",
		llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error"),
		llmtransporttest.RateLimited(llmtransporttest.RetryAfterMs, 10*time.Millisecond),
		llmtransporttest.ResetBeforeHeaders(),
		llmtransporttest.InsufficientQuota()))
	defer gw.Close()
	c := &sdk{baseURL: gw.URL + "/v1", httpClient: &http.Client{}, maxRetries: sdkMaxRetries}
	if _, err := c.chat(t.Context(), "m", false, "1"); err == nil {
		t.Fatal("three faults in a row: got no error")
	}
	if got := gw.Requests("m"); got != 3 {
		t.Errorf("got %d requests, want 1 + 2 retries", got)
	}
	// openai-go retries a 429 whatever its code, insufficient_quota too.
	if _, err := c.chat(t.Context(), "m", false, "2"); err != nil || gw.Requests("m") != 5 {
		t.Errorf("insufficient_quota then OK: got %v after %d requests in all, want success after 5", err, gw.Requests("m"))
	}
	text, err := c.chat(t.Context(), "m", true, "3")
	if err != nil || text != llmtransporttest.DefaultReply {
		t.Errorf("stream: got %q, %v; want %q", text, err, llmtransporttest.DefaultReply)
	}
}

// TestDefaultBuildHasNoOTelSDK checks that the default build of the demo
// does not depend on the OpenTelemetry SDK, whose compile costs about 10 s
// of the first `go run .` on a fresh machine (README, "The demo on a fresh
// machine"), and that the otlp build does. It asks the go command that runs
// the test (go test puts its GOROOT/bin first in PATH).
func TestDefaultBuildHasNoOTelSDK(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the demo's dependencies: %v", err)
	}
	deps := func(tags string) []string {
		// -tags on the command line overrides any -tags in GOFLAGS.
		out, err := exec.Command(gobin, "list", "-deps", "-tags="+tags, ".").CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps -tags=%q .: %v\n%s", tags, err, out)
		}
		return strings.Fields(string(out))
	}
	sdk := func(pkgs []string) (found []string) {
		for _, p := range pkgs {
			if p == "go.opentelemetry.io/otel/sdk" || strings.HasPrefix(p, "go.opentelemetry.io/otel/sdk/") {
				found = append(found, p)
			}
		}
		return found
	}
	def := deps("")
	if !slices.Contains(def, "go.opentelemetry.io/otel/trace") {
		t.Fatalf("go list -deps . does not list go.opentelemetry.io/otel/trace; its output is not what this test expects:\n%s", strings.Join(def, "\n"))
	}
	if found := sdk(def); len(found) > 0 {
		t.Errorf("the default build imports the OpenTelemetry SDK: %s", strings.Join(found, " "))
	}
	if found := sdk(deps("otlp")); len(found) == 0 {
		t.Error("the otlp build lists no go.opentelemetry.io/otel/sdk package: the check above would not see the SDK either")
	}
}

// TestEndpointWithoutExporter checks what the demo does with
// OTEL_EXPORTER_OTLP_ENDPOINT set: without -tags otlp it keeps the spans in
// memory and says how to export them; with it, it exports them under
// service llmtransport-demo.
func TestEndpointWithoutExporter(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	tr, err := setupTracing(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	tr.printTree(&out)
	if err := tr.shutdown(t.Context()); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if tr.rec != nil { // the default build
		want := "the spans stayed in memory. To export them:\n  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 go run -tags otlp ."
		if !strings.Contains(out.String(), want) {
			t.Errorf("output %q lacks %q", out.String(), want)
		}
		return
	}
	if want := "Spans were sent to http://127.0.0.1:4318 over OTLP/HTTP (service llmtransport-demo)."; !strings.Contains(out.String(), want) {
		t.Errorf("output %q lacks %q", out.String(), want)
	}
}
