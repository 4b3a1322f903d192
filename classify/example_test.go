package classify_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/llmtransport/llmtransport/classify"
)

// record builds a response the way a server would send it, without a
// network.
func record(status int, header map[string]string, body string) (*http.Response, []byte) {
	rec := httptest.NewRecorder()
	for k, v := range header {
		rec.Header().Set(k, v)
	}
	rec.WriteHeader(status)
	io.WriteString(rec, body)
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

// An OpenAI 429 that is not a rate limit: the account is out of credits.
// Retrying cannot help, and the model is not at fault.
func ExampleClassify_insufficientQuota() {
	resp, body := record(http.StatusTooManyRequests, map[string]string{
		"Content-Type": "application/json",
		"X-Request-Id": "req_9f2c1a7e5b3d4c6f8a0b1c2d3e4f5a6b",
	}, `{
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "param": null,
        "code": "insufficient_quota"
    }
}`)
	c := classify.Classify(resp, body)
	fmt.Println(c.Class, c.Code)
	fmt.Println("retryable:", c.Retryable, "breaker failure:", c.BreakerFailure)
	fmt.Println("request id:", c.RequestID)
	// Output:
	// quota_exhausted insufficient_quota
	// retryable: false breaker failure: false
	// request id: req_9f2c1a7e5b3d4c6f8a0b1c2d3e4f5a6b
}

// A Gemini 429 carries its wait hint only in the body, in a
// google.rpc.RetryInfo detail.
func ExampleClassify_geminiRetryDelay() {
	resp, body := record(http.StatusTooManyRequests, map[string]string{
		"Content-Type": "application/json; charset=UTF-8",
	}, `{
  "error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
          {
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            "quotaDimensions": {"location": "global", "model": "gemini-2.0-flash"},
            "quotaValue": "15"
          }
        ]
      },
      {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": "26s"
      }
    ]
  }
}
`)
	c := classify.Classify(resp, body)
	fmt.Println(c.Class, c.Code)
	fmt.Println("retryable:", c.Retryable, "after", c.RetryAfter, "from", c.RetryAfterSource)
	// Output:
	// rate_limited RESOURCE_EXHAUSTED
	// retryable: true after 26s from body:retryDelay
}

// Retryable is the server's verdict, and the wait it asks for is reported
// beside it: whether a wait is too long is the caller's cap to decide (the
// transport's is WithMaxRetryWait, 120 s by default).
func ExampleClassification_retryable() {
	resp, body := record(http.StatusTooManyRequests, map[string]string{
		"Content-Type": "application/json",
		"Retry-After":  "3600",
	}, `{"error":{"message":"Rate limit reached for requests","type":"requests","code":"rate_limit_exceeded"}}`)
	c := classify.Classify(resp, body)
	const maxWait = 2 * time.Minute
	fmt.Println(c.Class, "retryable:", c.Retryable, "after", c.RetryAfter)
	fmt.Println("retry now:", c.Retryable && c.RetryAfter <= maxWait)
	// Output:
	// rate_limited retryable: true after 1h0m0s
	// retry now: false
}
