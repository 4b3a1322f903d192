package llmtransporttest_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport/llmtransporttest"
)

func postBody(t *testing.T, s *llmtransporttest.Server, body string) *http.Response {
	t.Helper()
	resp, err := s.Client().Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestRateLimitRequests(t *testing.T) {
	s := llmtransporttest.NewServer(llmtransporttest.WithRateLimit(llmtransporttest.RateLimit{Requests: 3, Window: time.Hour}))
	defer s.Close()
	for i := range 3 {
		resp := post(t, s, "m", false)
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("X-Ratelimit-Limit-Requests") != "3" || h.Get("X-Ratelimit-Remaining-Requests") != strconv.Itoa(2-i) {
			t.Fatalf("request %d: %d, limit %q remaining %q", i, resp.StatusCode, h.Get("X-Ratelimit-Limit-Requests"), h.Get("X-Ratelimit-Remaining-Requests"))
		}
		if d, err := time.ParseDuration(h.Get("X-Ratelimit-Reset-Requests")); err != nil || d <= 0 || d > time.Hour {
			t.Fatalf("request %d: reset %q", i, h.Get("X-Ratelimit-Reset-Requests"))
		}
		if h.Get("X-Ratelimit-Limit-Tokens") != "" {
			t.Fatalf("token headers without a token limit: %v", h)
		}
	}
	resp := post(t, s, "m", false)
	var e struct {
		Error struct{ Code, Message string }
	}
	json.NewDecoder(resp.Body).Decode(&e)
	if resp.StatusCode != 429 || e.Error.Code != "rate_limit_exceeded" || !strings.Contains(e.Error.Message, "Please try again in ") ||
		resp.Header.Get("X-Ratelimit-Remaining-Requests") != "0" || resp.Header.Get("X-Ratelimit-Reset-Requests") == "" {
		t.Fatalf("over the limit: %d %+v %v", resp.StatusCode, e, resp.Header)
	}
	if n := s.FaultCount(llmtransporttest.RateLimitedFault); n != 1 {
		t.Errorf("FaultCount(%q) = %d, want 1", llmtransporttest.RateLimitedFault, n)
	}
	// Each model has its own window.
	if resp := post(t, s, "other", false); resp.StatusCode != 200 {
		t.Errorf("another model: %d", resp.StatusCode)
	}
}

func TestRateLimitTokens(t *testing.T) {
	s := llmtransporttest.NewServer(llmtransporttest.WithRateLimit(llmtransporttest.RateLimit{Tokens: 200, Window: time.Hour}))
	defer s.Close()
	body := `{"model":"m","max_tokens":50,"n":2,"messages":[{"role":"user","content":"hi"}]}` // 79 bytes: 20 + 2 × 50
	if (len(body)+3)/4 != 20 {
		t.Fatalf("body of %d bytes", len(body))
	}
	resp := postBody(t, s, body)
	if resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Remaining-Tokens") != "80" || resp.Header.Get("X-Ratelimit-Limit-Requests") != "" {
		t.Fatalf("first: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := postBody(t, s, body); resp.StatusCode != 429 || resp.Header.Get("X-Ratelimit-Remaining-Tokens") != "80" {
		t.Fatalf("second (120 tokens of 80 left): %d %v", resp.StatusCode, resp.Header)
	}
	small := `{"model":"m","max_completion_tokens":10,"messages":[]}` // 53 bytes: 14 + 10
	if (len(small)+3)/4 != 14 {
		t.Fatalf("body of %d bytes", len(small))
	}
	if resp := postBody(t, s, small); resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Remaining-Tokens") != "56" {
		t.Fatalf("a smaller one: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestRateLimitWindow: the window gives back the whole limit when the next
// one starts, and scripted faults count against it and carry the headers.
func TestRateLimitWindow(t *testing.T) {
	s := llmtransporttest.NewServer(
		llmtransporttest.WithRateLimit(llmtransporttest.RateLimit{Requests: 1, Window: 200 * time.Millisecond}),
		llmtransporttest.WithScript("m", llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error")),
	)
	defer s.Close()
	// Start at the start of a window, so that the next two requests share
	// one.
	probe := post(t, s, "probe", false)
	d, err := time.ParseDuration(probe.Header.Get("X-Ratelimit-Reset-Requests"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	resp := post(t, s, "m", false)
	if resp.StatusCode != 500 || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "0" {
		t.Fatalf("scripted fault: %d %v", resp.StatusCode, resp.Header)
	}
	resp = post(t, s, "m", false)
	if resp.StatusCode != 429 {
		t.Fatalf("second in the window: %d", resp.StatusCode)
	}
	d, err = time.ParseDuration(resp.Header.Get("X-Ratelimit-Reset-Requests"))
	if err != nil || d <= 0 || d > 200*time.Millisecond {
		t.Fatalf("reset %q", resp.Header.Get("X-Ratelimit-Reset-Requests"))
	}
	time.Sleep(d) // the reset is rounded up: the next window has started
	if resp := post(t, s, "m", false); resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "0" {
		t.Fatalf("next window: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestRateLimitOff(t *testing.T) {
	s := llmtransporttest.NewServer(llmtransporttest.WithRateLimit(llmtransporttest.RateLimit{Window: time.Second}))
	defer s.Close()
	for range 3 {
		if resp := post(t, s, "m", false); resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Limit-Requests") != "" {
			t.Fatalf("no limit: %d %v", resp.StatusCode, resp.Header)
		}
	}
}
