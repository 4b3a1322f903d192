package llmtransport

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// TestProvidersOverFakeGateway: the Transport over llmtransporttest's
// Gemini and Anthropic endpoints. Gemini's 429 is retried after its body's
// retryDelay and its 503 UNAVAILABLE retried; its circuit is keyed by the
// model of the path. Anthropic's 529 is retried; its 400 credit error is
// not.
func TestProvidersOverFakeGateway(t *testing.T) {
	checkLeaks(t)
	const hint = 60 * time.Millisecond
	gw := llmtransporttest.NewServer(
		llmtransporttest.WithScript("gemini-2.5-flash", llmtransporttest.GeminiRateLimited(hint), llmtransporttest.GeminiUnavailable()),
		llmtransporttest.WithScript("claude-sonnet-4-5", llmtransporttest.Overloaded()),
		llmtransporttest.WithModel("claude-broke", func(int) llmtransporttest.Fault {
			return llmtransporttest.AnthropicError(400, "invalid_request_error", "Your credit balance is too low to access the Anthropic API.")
		}),
	)
	defer gw.Close()
	base := gw.Client().Transport.(*http.Transport)
	defer base.CloseIdleConnections()
	tr := New(base, WithBackoff(time.Millisecond, time.Millisecond))

	send := func(path, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, gw.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	start := time.Now()
	if resp := send("/v1beta/models/gemini-2.5-flash:generateContent", `{"contents":[{"parts":[{"text":"hi"}]}]}`); resp.StatusCode != 200 {
		t.Errorf("Gemini: got %d, want 200", resp.StatusCode)
	}
	if d := time.Since(start); d < hint {
		t.Errorf("Gemini: answered after %v, before the %v retryDelay", d, hint)
	}
	if n := gw.Requests("gemini-2.5-flash"); n != 3 {
		t.Errorf("Gemini: %d requests, want 3", n)
	}
	if _, ok := circuitModels(tr)["gemini-2.5-flash"]; !ok {
		t.Errorf("circuits %v, want one for gemini-2.5-flash", circuitModels(tr))
	}
	msg := func(model string) string {
		return `{"model":"` + model + `","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`
	}
	if resp := send("/v1/messages", msg("claude-sonnet-4-5")); resp.StatusCode != 200 || gw.Requests("claude-sonnet-4-5") != 2 {
		t.Errorf("Anthropic 529: got %d after %d requests, want 200 after 2", resp.StatusCode, gw.Requests("claude-sonnet-4-5"))
	}
	if resp := send("/v1/messages", msg("claude-broke")); resp.StatusCode != 400 || gw.Requests("claude-broke") != 1 || resp.Header.Get("X-Should-Retry") != "false" {
		t.Errorf("Anthropic credit 400: got %d after %d requests, X-Should-Retry %q; want the 400 once, marked false",
			resp.StatusCode, gw.Requests("claude-broke"), resp.Header.Get("X-Should-Retry"))
	}
}
