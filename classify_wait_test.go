package llmtransport

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"
)

// TestClassifyWaitOnEveryClass checks that a wait hint is reported
// whatever the class, and that it never makes a class retryable.
func TestClassifyWaitOnEveryClass(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{name: "quota with Retry-After", resp: resp(429, "Retry-After", "3600"),
			body:  `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}`,
			class: ClassQuotaExhausted, retry: no, wait: time.Hour},
		{name: "quota with a short hint in the message", resp: resp(403),
			body:  `{"error":{"message":"token quota is not enough, try again in 30 seconds","type":"new_api_error","code":"pre_consume_token_quota_failed"}}`,
			class: ClassQuotaExhausted, retry: no, wait: 30 * time.Second},
		{name: "auth with Retry-After", resp: resp(401, "Retry-After", "5"),
			body: `{"error":{"message":"Invalid token","type":"new_api_error","code":""}}`, class: ClassAuth, retry: no, wait: 5 * time.Second},
		{name: "daily limit with reset header", resp: resp(429, "Retry-After-Ms", "60000"),
			body:  `{"error":{"message":"Rate limit exceeded","code":429,"metadata":{"limit_source":"openrouter_free_tier_daily"}}}`,
			class: ClassQuotaExhausted, retry: no, wait: time.Minute},
		{name: "rate limit above the cap", resp: resp(429),
			body:  `{"error":{"code":"429","message":"Please retry after 86400 seconds."}}`,
			class: ClassRateLimited, retry: no, wait: 24 * time.Hour},
		{name: "invalid request with Retry-After", resp: resp(400, "Retry-After", "1"),
			body: `{"error":{"message":"bad","type":"invalid_request_error","code":"unknown_parameter"}}`, class: ClassInvalidRequest, retry: no, wait: time.Second},
	})
}

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
				c := Classify(resp, []byte(tc.body))
				if c.Class != tc.class || c.RetryAfter != tc.wait || c.Retryable {
					t.Errorf("class %v, wait %v, retryable %v; want %v, %v, false", c.Class, c.RetryAfter, c.Retryable, tc.class, tc.wait)
				}
			})
		})
	}
}
