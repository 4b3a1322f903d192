package llmtransport

import (
	"testing"
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
