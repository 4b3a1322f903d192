package classify

import (
	"testing"
	"time"
)

// TestClassifyAbsentCodes checks that the ways gateways print a null code
// or type ("<nil>", "null", "None", "") count as no code at all.
func TestClassifyAbsentCodes(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{name: "new-api claude route <nil> type", resp: resp(500, "Content-Type", jsonCT),
			body:  `{"error":{"type":"<nil>","message":"upstream said no"},"type":"error"}`,
			class: ClassUpstreamTransient, code: "-", typ: "-", msg: "upstream said no"},
		{name: "code None falls through to a specific type", resp: resp(429),
			body:  `{"error":{"code":"None","type":"rate_limit_error","message":"slow"}}`,
			class: ClassRateLimited, code: "rate_limit_error", typ: "rate_limit_error"},
		{name: "code null string", resp: resp(503),
			body:  `{"error":{"code":"null","type":"null","message":"busy"}}`,
			class: ClassUpstreamTransient, code: "-", typ: "-"},
		{name: "code <nil> before a real duplicate", resp: resp(400),
			body:  `{"error":{"code":"<nil>","message":"x","code":"unknown_parameter"}}`,
			class: ClassInvalidRequest, code: "unknown_parameter"},
		{name: "blank code", resp: resp(401),
			body:  `{"error":{"code":"  ","message":"Invalid token (request id: 2026abc)","type":"new_api_error"}}`,
			class: ClassAuth, code: "-", typ: "new_api_error"},
		{name: "python None type", resp: resp(400),
			body:  `{"error":{"message":"bad","type":"None","param":null,"code":"400"}}`,
			class: ClassInvalidRequest, code: "-", typ: "-"},
	})
}

// TestClassifyCodeNotGenericType checks that Code is a code or a reason,
// never a catch-all type, which stays in Type.
func TestClassifyCodeNotGenericType(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{name: "upstream_error type only", resp: resp(502),
			body:  `{"error":{"message":"Upstream request failed","type":"upstream_error"}}`,
			class: ClassUpstreamTransient, code: "-", typ: "upstream_error"},
		{name: "new_api_error with empty code", resp: resp(403),
			body:  `{"error":{"code":"","message":"该令牌无权使用模型：gpt-5","type":"new_api_error"}}`,
			class: ClassPermission, code: "-", typ: "new_api_error"},
		{name: "invalid_request_error type only", resp: resp(400),
			body:  `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}`,
			class: ClassInvalidRequest, code: "-", typ: "invalid_request_error"},
		{name: "specific anthropic type is the code", resp: resp(529),
			body:  `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
			class: ClassOverloaded, code: "overloaded_error", typ: "overloaded_error"},
		{name: "code beats the generic type", resp: resp(400),
			body:  `{"error":{"message":"x","type":"invalid_request_error","code":"unsupported_value"}}`,
			class: ClassInvalidRequest, code: "unsupported_value", typ: "invalid_request_error"},
	})
}

// TestClassifyMostSpecificReason checks which of several codes in one body
// becomes Code.
func TestClassifyMostSpecificReason(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{name: "google ErrorInfo reason over status", resp: resp(400),
			body: `{"error":{"code":400,"message":"API key expired. Please renew the API key.","status":"INVALID_ARGUMENT",` +
				`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}`,
			class: ClassAuth, code: "API_KEY_INVALID"},
		{name: "google capacity reason over status", resp: resp(429),
			body: `{"error":{"code":429,"message":"No capacity available for model gemini-2.5-pro on the server","status":"RESOURCE_EXHAUSTED",` +
				`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"MODEL_CAPACITY_EXHAUSTED"}]}}`,
			class: ClassOverloaded, code: "MODEL_CAPACITY_EXHAUSTED"},
		{name: "legacy errors reason below status", resp: resp(429),
			body:  `[{"error":{"code":429,"message":"Resource exhausted.","errors":[{"reason":"rateLimitExceeded"}],"status":"RESOURCE_EXHAUSTED"}}]`,
			class: ClassRateLimited, code: "RESOURCE_EXHAUSTED"},
		{name: "provider code in metadata.raw over wrapper code", resp: resp(429),
			body: `{"error":{"message":"Provider returned error","code":"bad_response_status_code","type":"upstream_error",` +
				`"metadata":{"raw":"{\"error\":{\"message\":\"You exceeded your current quota\",\"type\":\"insufficient_quota\",\"code\":\"insufficient_quota\"}}","provider_name":"OpenAI"}}}`,
			class: ClassQuotaExhausted, code: "insufficient_quota", typ: "upstream_error"},
		{name: "provider code in message over numeric wrapper", resp: resp(500),
			body: `{"error":{"message":"Provider returned error ({\"error\":{\"type\":\"invalid_request_error\",\"code\":\"context_length_exceeded\",` +
				`\"message\":\"too long\"}})","code":502,"type":"upstream_error"}}`,
			class: ClassContextLength, code: "context_length_exceeded"},
		{name: "specific outer code kept over nested", resp: resp(500),
			body: `{"error":{"message":"Provider returned error ({\"error\":{\"code\":\"server_error\"}})","code":"channel:invalid_key",` +
				`"type":"new_api_error"}}`,
			class: ClassUpstreamTransient, code: "channel:invalid_key"},
		{name: "numeric code of another status is no code", resp: resp(500),
			body:  `{"error":{"code":"404","message":"boom"}}`,
			class: ClassUpstreamTransient, code: "-"},
	})
}

// TestClassifyCodesBeforeStatuses checks that a rate-limit, quota,
// overload, context, filter or timeout code (or type) decides the class
// whatever status an admin's status_code_mapping or new-api's own choices
// put on the response.
func TestClassifyCodesBeforeStatuses(t *testing.T) {
	oaErr := func(msg, typ, code string) string {
		return `{"error":{"message":"` + msg + `","type":"` + typ + `","param":"","code":"` + code + `"}}`
	}
	runRuleCases(t, []ruleCase{
		{name: "rate_limit_exceeded sent as 500", resp: resp(500, "Content-Type", jsonCT),
			body:  oaErr("Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 7s.", "requests", "rate_limit_exceeded"),
			class: ClassRateLimited, code: "rate_limit_exceeded", retry: yes, breaker: no, wait: 7 * time.Second},
		{name: "rate_limit_error type sent as 400", resp: resp(400),
			body:  `{"error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"},"type":"error"}`,
			class: ClassRateLimited, code: "rate_limit_error", retry: yes, breaker: no},
		{name: "too many tokens with a rate-limit code sent as 500", resp: resp(500),
			body:  oaErr("Too many tokens, please wait before trying again.", "upstream_error", "rate_limit_exceeded"),
			class: ClassRateLimited},
		{name: "gemini numeric 429 relayed and remapped to 500", resp: resp(500),
			body:  `{"error":{"message":"Resource has been exhausted (e.g. check quota).","type":"upstream_error","param":"","code":429}}`,
			class: ClassRateLimited, code: "-", typ: "upstream_error", retry: yes, breaker: no},
		{name: "gemini RESOURCE_EXHAUSTED per-minute as 503", resp: resp(503),
			body:  `{"error":{"code":503,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED"}}`,
			class: ClassRateLimited, code: "RESOURCE_EXHAUSTED"},
		{name: "openrouter 402 remapped to 500", resp: resp(500),
			body:  `{"error":{"message":"Payment required","code":402}}`,
			class: ClassQuotaExhausted, retry: no},
		{name: "anthropic 529 rewritten flat and remapped to 500", resp: resp(500),
			body:  `{"message":"Overloaded","type":"overloaded_error","code":null}`,
			class: ClassOverloaded, code: "overloaded_error", retry: yes, breaker: yes},
		{name: "numeric 529 remapped to 500", resp: resp(500),
			body:  `{"error":{"message":"busy","code":529}}`,
			class: ClassOverloaded},
		{name: "timeout_error sent as 500", resp: resp(500),
			body:  `{"type":"error","error":{"type":"timeout_error","message":"Request timed out"}}`,
			class: ClassTimeout, code: "timeout_error"},
		{name: "request too large beats its rate-limit code", resp: resp(500),
			body:  oaErr("Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 31538.", "tokens", "rate_limit_exceeded"),
			class: ClassInvalidRequest, retry: no},
		{name: "quota text beats a rate-limit type", resp: resp(500),
			body:  `{"error":{"type":"rate_limit_error","message":"usage limit exceeded, 5-hour usage limit reached"}}`,
			class: ClassQuotaExhausted},
		{name: "insufficient_quota sent as 500", resp: resp(500), body: oaErr("quota", "insufficient_quota", "insufficient_quota"),
			class: ClassQuotaExhausted, retry: no},
		{name: "context code sent as 500", resp: resp(500), body: oaErr("too long", "invalid_request_error", "context_length_exceeded"),
			class: ClassContextLength, retry: no, breaker: no},
		{name: "content_filter relayed with upstream_error type", resp: resp(500),
			body:  oaErr("The response was filtered due to the prompt triggering Azure OpenAI's content management policy.", "upstream_error", "content_filter"),
			class: ClassContentFiltered, code: "content_filter", typ: "upstream_error"},
		{name: "validation error sent as 500", resp: resp(500), body: oaErr("field messages is required", "new_api_error", "invalid_request"),
			class: ClassInvalidRequest, retry: no, breaker: no},
		{name: "oversize body sent as 400", resp: resp(400), body: oaErr("request body too large", "new_api_error", "read_request_body_failed"),
			class: ClassInvalidRequest, code: "read_request_body_failed"},
	})
}

// TestClassifyDocExamples checks the examples of the Classify doc comment
// and of the README's classification section.
func TestClassifyDocExamples(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{name: "500 rate_limit_exceeded", resp: resp(500), body: `{"error":{"code":"rate_limit_exceeded","message":"… try again in 7s"}}`,
			class: ClassRateLimited, retry: yes, wait: 7 * time.Second},
		{name: "500 overloaded_error flat", resp: resp(500), body: `{"message":"Overloaded","type":"overloaded_error","code":null}`, class: ClassOverloaded},
		{name: "500 numeric 429", resp: resp(500), body: `{"error":{"code":429,"type":"upstream_error","message":"…"}}`, class: ClassRateLimited},
		{name: "400 read_request_body_failed", resp: resp(400), body: `{"error":{"code":"read_request_body_failed","type":"new_api_error"}}`, class: ClassInvalidRequest},
		{name: "google reason", resp: resp(400), body: `{"error":{"status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}`,
			class: ClassAuth, code: "API_KEY_INVALID"},
		{name: "raw over wrapper", resp: resp(429), body: `{"error":{"code":429,"metadata":{"raw":"{\"error\":{\"code\":\"insufficient_quota\"}}"}}}`,
			class: ClassQuotaExhausted, code: "insufficient_quota"},
		{name: "generic type", resp: resp(400), body: `{"type":"error","error":{"type":"invalid_request_error"}}`,
			class: ClassInvalidRequest, code: "-", typ: "invalid_request_error"},
		{name: "specific type", resp: resp(529), body: `{"type":"error","error":{"type":"overloaded_error"}}`, class: ClassOverloaded, code: "overloaded_error"},
		{name: "filtered 200", resp: resp(200), body: `{"choices":[{"finish_reason":"content_filter"}]}`, class: ClassContentFiltered, code: "content_filter"},
	})
}
