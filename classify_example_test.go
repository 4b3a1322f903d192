package llmtransport_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/llmtransport/llmtransport"
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
	c := llmtransport.Classify(resp, body)
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
	c := llmtransport.Classify(resp, body)
	fmt.Println(c.Class, c.Code)
	fmt.Println("retryable:", c.Retryable, "after", c.RetryAfter, "from", c.RetryAfterSource)
	// Output:
	// rate_limited RESOURCE_EXHAUSTED
	// retryable: true after 26s from body:retryDelay
}
