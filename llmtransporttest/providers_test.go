package llmtransporttest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport/classify"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// postTo sends body to gw's path and returns the response, its body read.
func postTo(t *testing.T, gw *llmtransporttest.Server, path, body string, kv ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, gw.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := gw.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// sseEvents splits an event stream into "name data" lines, one per event.
func sseEvents(b []byte) []string {
	var out []string
	for _, block := range strings.Split(strings.TrimSpace(string(b)), "\n\n") {
		name, data := "", ""
		for _, line := range strings.Split(block, "\n") {
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				name = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				data = v
			}
		}
		out = append(out, name+" "+data)
	}
	return out
}

const messages = `{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`
const streamMessages = `{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}`

func TestAnthropicMessages(t *testing.T) {
	gw := llmtransporttest.NewServer(llmtransporttest.WithReply("Hi there friend"))
	defer gw.Close()

	resp, b := postTo(t, gw, "/v1/messages", messages)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || resp.StatusCode != 200 {
		t.Fatalf("got %d %s: %v", resp.StatusCode, b, err)
	}
	if m["type"] != "message" || m["role"] != "assistant" || m["model"] != "claude-sonnet-4-5" || m["stop_reason"] != "end_turn" {
		t.Errorf("message %s", b)
	}
	if c := m["content"].([]any)[0].(map[string]any); c["type"] != "text" || c["text"] != "Hi there friend" {
		t.Errorf("content %v", c)
	}
	if resp.Header.Get("Request-Id") == "" || resp.Header.Get("Request-Id") != resp.Header.Get("X-Request-Id") {
		t.Errorf("request-id %q, x-request-id %q", resp.Header.Get("Request-Id"), resp.Header.Get("X-Request-Id"))
	}

	resp, b = postTo(t, gw, "/v1/messages", streamMessages)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	var names []string
	var text strings.Builder
	for _, e := range sseEvents(b) {
		name, data, _ := strings.Cut(e, " ")
		names = append(names, name)
		var d struct {
			Type  string `json:"type"`
			Delta struct {
				Text       string `json:"text"`
				StopReason string `json:"stop_reason"`
			} `json:"delta"`
		}
		if err := json.Unmarshal([]byte(data), &d); err != nil || d.Type != name {
			t.Errorf("event %q: type %q, %v", name, d.Type, err)
		}
		text.WriteString(d.Delta.Text)
		if name == "message_delta" && d.Delta.StopReason != "end_turn" {
			t.Errorf("message_delta stop_reason %q", d.Delta.StopReason)
		}
	}
	want := "message_start ping content_block_start content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("events %s\nwant %s", got, want)
	}
	if text.String() != "Hi there friend" {
		t.Errorf("text %q", text.String())
	}
	if cl := classify.Classify(resp, b); cl.Class != classify.ClassSuccess {
		t.Errorf("a healthy stream classified %v", cl.Class)
	}
	if n := gw.Requests("claude-sonnet-4-5"); n != 2 {
		t.Errorf("Requests = %d, want 2", n)
	}
	if l := gw.Log(); l[0].Path != "/v1/messages" || !l[1].Stream {
		t.Errorf("log %+v", l)
	}
}

func TestAnthropicFaults(t *testing.T) {
	gw := llmtransporttest.NewServer(
		llmtransporttest.WithScript("claude-sonnet-4-5",
			llmtransporttest.Overloaded(),
			llmtransporttest.AnthropicRateLimited(1500*time.Millisecond),
			llmtransporttest.MidStreamOverloaded(1),
			llmtransporttest.MidStreamOverloaded(0),
			llmtransporttest.AnthropicError(400, "invalid_request_error", "Your credit balance is too low to access the Anthropic API."),
		),
	)
	defer gw.Close()

	resp, b := postTo(t, gw, "/v1/messages", messages)
	if cl := classify.Classify(resp, b); resp.StatusCode != 529 || cl.Class != classify.ClassOverloaded || !cl.Retryable {
		t.Errorf("529: got %d %s, %v", resp.StatusCode, b, cl.Class)
	}

	resp, b = postTo(t, gw, "/v1/messages", messages)
	cl := classify.Classify(resp, b)
	if resp.StatusCode != 429 || cl.Class != classify.ClassRateLimited || resp.Header.Get("Retry-After") != "2" {
		t.Errorf("429: got %d, %v, retry-after %q", resp.StatusCode, cl.Class, resp.Header.Get("Retry-After"))
	}
	if cl.RetryAfter < time.Second || cl.RetryAfter > 2*time.Second {
		t.Errorf("429: wait %v (%s), want 1.5s rounded up", cl.RetryAfter, cl.RetryAfterSource)
	}
	for _, h := range []string{"Requests", "Tokens", "Input-Tokens", "Output-Tokens"} {
		for _, k := range []string{"Limit", "Remaining", "Reset"} {
			if resp.Header.Get("Anthropic-Ratelimit-"+h+"-"+k) == "" {
				t.Errorf("429: no anthropic-ratelimit-%s-%s", h, k)
			}
		}
	}
	if _, err := time.Parse(time.RFC3339, resp.Header.Get("Anthropic-Ratelimit-Requests-Reset")); err != nil {
		t.Errorf("requests reset: %v", err)
	}
	var body struct {
		Type  string `json:"type"`
		Error struct{ Type string }
		ReqID string `json:"request_id"`
	}
	if json.Unmarshal(b, &body); body.Type != "error" || body.Error.Type != "rate_limit_error" || body.ReqID != resp.Header.Get("Request-Id") {
		t.Errorf("429 body %s", b)
	}

	for i, want := range []string{
		"message_start ping content_block_start content_block_delta error",
		"message_start ping content_block_start error",
	} {
		resp, b = postTo(t, gw, "/v1/messages", streamMessages)
		var names []string
		for _, e := range sseEvents(b) {
			name, _, _ := strings.Cut(e, " ")
			names = append(names, name)
		}
		if got := strings.Join(names, " "); resp.StatusCode != 200 || got != want {
			t.Errorf("mid-stream %d: got %d %s, want %s", i, resp.StatusCode, got, want)
		}
		if cl := classify.Classify(resp, b); cl.Class != classify.ClassOverloaded {
			t.Errorf("mid-stream %d: classified %v", i, cl.Class)
		}
	}

	resp, b = postTo(t, gw, "/v1/messages", messages)
	if cl := classify.Classify(resp, b); resp.StatusCode != 400 || cl.Class != classify.ClassQuotaExhausted {
		t.Errorf("credit 400: got %d, %v", resp.StatusCode, cl.Class)
	}
	if got := gw.FaultCount("anthropic:rate_limited") + gw.FaultCount("overloaded") + gw.FaultCount("mid_stream_overloaded") + gw.FaultCount("anthropic:invalid_request_error"); got != 5 {
		t.Errorf("fault counts %v", gw.Stats().ByFault)
	}
}

func TestGemini(t *testing.T) {
	const model = "gemini-2.5-flash"
	gw := llmtransporttest.NewServer(llmtransporttest.WithReply("Hi there"),
		llmtransporttest.WithScript(model, llmtransporttest.OK(), llmtransporttest.OK(), llmtransporttest.OK(),
			llmtransporttest.GeminiRateLimited(1500*time.Millisecond),
			llmtransporttest.GeminiUnavailable(),
			llmtransporttest.GeminiBadRequest("API_KEY_INVALID", "API key not valid. Please pass a valid API key."),
			llmtransporttest.GeminiRateLimited(time.Second)),
	)
	defer gw.Close()
	body := `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`

	resp, b := postTo(t, gw, "/v1beta/models/"+model+":generateContent", body)
	var r struct {
		Candidates []struct {
			Content struct {
				Parts []struct{ Text string }
			}
			FinishReason string
		}
	}
	if err := json.Unmarshal(b, &r); err != nil || resp.StatusCode != 200 || r.Candidates[0].Content.Parts[0].Text != "Hi there" || r.Candidates[0].FinishReason != "STOP" {
		t.Fatalf("generateContent: %d %s %v", resp.StatusCode, b, err)
	}

	resp, b = postTo(t, gw, "/v1beta/models/"+model+":streamGenerateContent?alt=sse", body)
	ev := sseEvents(b)
	if resp.Header.Get("Content-Type") != "text/event-stream" || len(ev) != 2 || !strings.Contains(ev[1], `"finishReason":"STOP"`) || strings.Contains(ev[0], "finishReason") {
		t.Errorf("streamGenerateContent?alt=sse: %s", b)
	}
	if cl := classify.Classify(resp, b); cl.Class != classify.ClassSuccess {
		t.Errorf("a healthy Gemini stream classified %v", cl.Class)
	}
	_, b = postTo(t, gw, "/v1/models/"+model+":streamGenerateContent", body)
	var arr []json.RawMessage
	if err := json.Unmarshal(b, &arr); err != nil || len(arr) != 2 {
		t.Errorf("streamGenerateContent without alt=sse: %s, %v", b, err)
	}

	resp, b = postTo(t, gw, "/v1beta/models/"+model+":generateContent", body)
	cl := classify.Classify(resp, b)
	if resp.StatusCode != 429 || cl.Class != classify.ClassRateLimited || cl.RetryAfter != 1500*time.Millisecond || cl.RetryAfterSource != "body:retryDelay" {
		t.Errorf("429: %d, %+v", resp.StatusCode, cl)
	}
	if !strings.HasSuffix(string(b), "}\n") || !strings.Contains(string(b), "\n  \"error\"") || !strings.Contains(string(b), `"status": "RESOURCE_EXHAUSTED"`) {
		t.Errorf("429 body not Gemini's: %s", b)
	}
	resp, b = postTo(t, gw, "/v1beta/models/"+model+":generateContent", body)
	if cl := classify.Classify(resp, b); resp.StatusCode != 503 || cl.Class != classify.ClassOverloaded {
		t.Errorf("503: %d, %v", resp.StatusCode, cl.Class)
	}
	resp, b = postTo(t, gw, "/v1beta/models/"+model+":generateContent", body)
	if cl := classify.Classify(resp, b); resp.StatusCode != 400 || cl.Class != classify.ClassAuth || !strings.Contains(string(b), `"reason": "API_KEY_INVALID"`) {
		t.Errorf("400: %d, %v, %s", resp.StatusCode, cl.Class, b)
	}
	// A stream's error comes before any event, as Gemini sends it.
	resp, _ = postTo(t, gw, "/v1beta/models/"+model+":streamGenerateContent?alt=sse", body)
	if resp.StatusCode != 429 {
		t.Errorf("stream 429: %d", resp.StatusCode)
	}
	if n := gw.Requests(model); n != 7 {
		t.Errorf("Requests(%q) = %d, want 7", model, n)
	}
	if l := gw.Log(); l[1].Path != "/v1beta/models/"+model+":streamGenerateContent" || !l[1].Stream || l[0].Stream {
		t.Errorf("log %+v", l[:2])
	}
}

func TestProviderKeys(t *testing.T) {
	gw := llmtransporttest.NewServer(llmtransporttest.WithAPIKey("sk-test"))
	defer gw.Close()
	if resp, b := postTo(t, gw, "/v1/messages", messages, "X-Api-Key", "sk-test"); resp.StatusCode != 200 {
		t.Errorf("x-api-key: %d %s", resp.StatusCode, b)
	}
	if resp, b := postTo(t, gw, "/v1/messages", messages, "X-Api-Key", "wrong"); resp.StatusCode != 401 || !strings.Contains(string(b), "authentication_error") {
		t.Errorf("wrong x-api-key: %d %s", resp.StatusCode, b)
	}
	if resp, b := postTo(t, gw, "/v1beta/models/g:generateContent", `{}`, "X-Goog-Api-Key", "sk-test"); resp.StatusCode != 200 {
		t.Errorf("x-goog-api-key: %d %s", resp.StatusCode, b)
	}
	if resp, _ := postTo(t, gw, "/v1beta/models/g:generateContent?key=sk-test", `{}`); resp.StatusCode != 200 {
		t.Errorf("?key=: %d", resp.StatusCode)
	}
	if resp, b := postTo(t, gw, "/v1beta/models/g:generateContent", `{}`); resp.StatusCode != 400 || !strings.Contains(string(b), "API_KEY_INVALID") {
		t.Errorf("no key: %d %s", resp.StatusCode, b)
	}
}
