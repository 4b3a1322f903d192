package llmtransport

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"
)

// TestTransportHintDoesNotRetry checks, through the transport, that a hint
// on a class that is not retried does not make it retried, that the hint
// reaches the caller, and that a hint above the cap stops the retry of a
// retryable class.
func TestTransportHintDoesNotRetry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		kv     []string
		class  Class
		wait   time.Duration
	}{
		{"quota with a 1s Retry-After", 429, `{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}`,
			[]string{"Retry-After", "1"}, ClassQuotaExhausted, time.Second},
		{"gemini per-day quota with retryDelay", 429, `{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[` +
			`{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},` +
			`{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"2s"}]}}`, nil, ClassQuotaExhausted, 2 * time.Second},
		{"auth with Retry-After", 401, `{"error":{"message":"Invalid token","type":"new_api_error","code":""}}`,
			[]string{"Retry-After", "1"}, ClassAuth, time.Second},
		{"rate limit above the cap", 429, `{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}`,
			[]string{"Retry-After", "121"}, ClassRateLimited, 121 * time.Second},
		// An absurd hint is kept, capped at 31 days (classify's
		// TestWaitHintHugeIsAboveCap): far above the cap, never waited for.
		{"rate limit with a wait of centuries", 429, `{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}`,
			[]string{"Retry-After", "99999999999"}, ClassRateLimited, 31 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
					return response(tc.status, tc.body, tc.kv...), nil
				}}
				var got []Classification
				tr := New(f, WithoutCircuitBreaker(), WithOnRetry(func(ev RetryEvent) { got = append(got, ev.Classification) }))
				resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if f.attempts() != 1 || len(got) != 0 {
					t.Fatalf("%d attempts, %d retries; want 1 attempt and no retry", f.attempts(), len(got))
				}
				// What reaches the caller: the class and the hint, and an
				// X-Should-Retry: false the transport added (it retries
				// itself), which makes the response not Retryable for an
				// SDK above.
				c := Classify(resp, []byte(tc.body))
				if c.Class != tc.class || c.RetryAfter != tc.wait || c.Retryable {
					t.Errorf("class %v, wait %v, retryable %v; want %v, %v, false", c.Class, c.RetryAfter, c.Retryable, tc.class, tc.wait)
				}
				// The server's verdict is the class's, whatever the hint:
				// the cap that stopped the rate limit's retry is the
				// transport's.
				if s := Classify(response(tc.status, tc.body, tc.kv...), []byte(tc.body)); s.Retryable != tc.class.Retryable() {
					t.Errorf("as the server sent it: retryable %v, want %v", s.Retryable, tc.class.Retryable())
				}
			})
		})
	}
}
