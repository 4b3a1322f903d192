package classify

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport/internal/redact"
)

// resp builds a response with status and headers given as "Name", "value"
// pairs.
func resp(status int, kv ...string) *http.Response {
	h := make(http.Header)
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return &http.Response{StatusCode: status, Header: h}
}

const jsonCT = "application/json"

// ruleCase is one named classification check. Fields left zero are not
// checked, except class.
type ruleCase struct {
	name    string
	resp    *http.Response
	body    string
	class   Class
	code    string // "-" means must be empty
	typ     string // Type; "-" means must be empty
	retry   *bool  // Retryable
	breaker *bool
	wait    time.Duration
	msg     string // substring of Message
}

var yes, no = func() *bool { b := true; return &b }(), func() *bool { b := false; return &b }()

func runRuleCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Classify(tc.resp, []byte(tc.body))
			if got.Class != tc.class {
				t.Errorf("class = %v, want %v (code %q, msg %q)", got.Class, tc.class, got.Code, got.Message)
			}
			switch tc.code {
			case "":
			case "-":
				if got.Code != "" {
					t.Errorf("code = %q, want none", got.Code)
				}
			default:
				if got.Code != tc.code {
					t.Errorf("code = %q, want %q", got.Code, tc.code)
				}
			}
			switch tc.typ {
			case "":
			case "-":
				if got.Type != "" {
					t.Errorf("type = %q, want none", got.Type)
				}
			default:
				if got.Type != tc.typ {
					t.Errorf("type = %q, want %q", got.Type, tc.typ)
				}
			}
			if tc.retry != nil && got.Retryable != *tc.retry {
				t.Errorf("retryable = %v, want %v", got.Retryable, *tc.retry)
			}
			if tc.breaker != nil && got.BreakerFailure != *tc.breaker {
				t.Errorf("breaker = %v, want %v", got.BreakerFailure, *tc.breaker)
			}
			if tc.wait != 0 && !closeTo(got.RetryAfter, tc.wait) {
				t.Errorf("retry after = %v (%s), want %v", got.RetryAfter, got.RetryAfterSource, tc.wait)
			}
			if tc.msg != "" && !strings.Contains(got.Message, tc.msg) {
				t.Errorf("message = %q, want it to contain %q", got.Message, tc.msg)
			}
		})
	}
}

// TestClassifyBodyShapes checks that every body shape yields its code,
// type and message.
func TestClassifyBodyShapes(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{name: "openai code string", resp: resp(400, "Content-Type", jsonCT),
			body:  `{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":"unknown_parameter"}}`,
			class: ClassInvalidRequest, code: "unknown_parameter", msg: "bad"},
		{name: "code number equal to status", resp: resp(429),
			body: `{"error":{"code":429,"message":"slow down"}}`, class: ClassRateLimited, code: "-"},
		{name: "code digit string equal to status", resp: resp(429),
			body: `{"error":{"code":"429","message":"slow down"}}`, class: ClassRateLimited, code: "-"},
		{name: "code digit string not the status", resp: resp(429),
			body: `{"error":{"code":"1302","message":"slow down"}}`, class: ClassRateLimited, code: "1302"},
		{name: "code empty and a generic type is no code", resp: resp(400),
			body: `{"error":{"code":"","message":"x","type":"invalid_request_error"}}`, class: ClassInvalidRequest, code: "-"},
		{name: "code null falls back to type", resp: resp(500),
			body: `{"error":{"code":null,"message":"x","type":"server_error"}}`, class: ClassUpstreamTransient, code: "server_error"},
		{name: "flat code message data", resp: resp(429),
			body:  `{"code":"too_many_requests","message":"busy","data":{"retry_after":7}}`,
			class: ClassRateLimited, code: "too_many_requests", wait: 7 * time.Second, msg: "busy"},
		{name: "anthropic envelope", resp: resp(400),
			body:  `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"},"request_id":"req_011abc"}`,
			class: ClassInvalidRequest, code: "-", msg: "max_tokens"},
		{name: "google status with details", resp: resp(400),
			body: `{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",` +
				`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}`,
			class: ClassAuth, code: "API_KEY_INVALID"},
		{name: "google top-level array", resp: resp(503),
			body:  "[{\n \"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}]",
			class: ClassOverloaded, code: "UNAVAILABLE"},
		{name: "legacy object error", resp: resp(404),
			body:  `{"object":"error","message":"The model ` + "`x`" + ` does not exist.","type":"NotFoundError","param":null,"code":404}`,
			class: ClassModelNotFound, code: "NotFoundError", breaker: yes},
		{name: "error as string", resp: resp(400),
			body: `{"error":"messages must not be empty"}`, class: ClassInvalidRequest, code: "-", msg: "must not be empty"},
		{name: "message only", resp: resp(429),
			body: `{"message":"Requests rate limit exceeded"}`, class: ClassRateLimited, code: "-", msg: "Requests rate limit"},
		{name: "detail string", resp: resp(404),
			body: `{"detail":"Not Found"}`, class: ClassNotFound, msg: "Not Found"},
		{name: "detail list", resp: resp(422),
			body:  `{"detail":[{"loc":["body","model"],"msg":"field required","type":"value_error.missing"}]}`,
			class: ClassInvalidRequest, msg: "field required"},
		{name: "midjourney", resp: resp(400),
			body: `{"code":4,"description":"quota_not_enough ","type":"upstream_error"}`, class: ClassQuotaExhausted, code: "quota_not_enough"},
		{name: "openrouter metadata.raw holds JSON", resp: resp(429),
			body: `{"error":{"message":"Provider returned error","code":429,"metadata":{"raw":"{\"error\":{\"code\":429,` +
				`\"message\":\"Resource has been exhausted\",\"status\":\"RESOURCE_EXHAUSTED\",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"12s\"}]}}",` +
				`"provider_name":"Google"}},"user_id":"user_1"}`,
			class: ClassRateLimited, code: "RESOURCE_EXHAUSTED", wait: 12 * time.Second, retry: yes},
		{name: "litellm python repr in message", resp: resp(400),
			body:  `{"error":{"message":"litellm.BadRequestError: OpenAIException - {'error': {'message': 'too long', 'type': 'invalid_request_error', 'param': None, 'code': 'context_length_exceeded'}}","type":null,"param":null,"code":"400"}}`,
			class: ClassContextLength, code: "context_length_exceeded"},
		{name: "html page", resp: resp(502, "Content-Type", "text/html"),
			body: "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", class: ClassUpstreamTransient, msg: "502 Bad Gateway"},
		{name: "plain text", resp: resp(503, "Content-Type", "text/plain"),
			body: "upstream connect error or disconnect/reset before headers", class: ClassUpstreamTransient, msg: "upstream connect error"},
		{name: "empty 400", resp: resp(400), body: "", class: ClassInvalidRequest, code: "-"},
		{name: "empty 500", resp: resp(500), body: "", class: ClassUpstreamTransient, retry: yes},
		{name: "truncated JSON", resp: resp(429),
			body:  `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insuff`,
			class: ClassQuotaExhausted, code: "insufficient_quota", retry: no},
		{name: "truncated inside message", resp: resp(400),
			body:  `{"error":{"code":"context_length_exceeded","message":"This model's maximum context len`,
			class: ClassContextLength, code: "context_length_exceeded", msg: "maximum context len"},
		{name: "BOM and blank lines", resp: resp(402),
			body:  "\ufeff\n\n\r\n  {\"error\":{\"message\":\"Insufficient Balance\",\"type\":\"unknown_error\",\"code\":\"invalid_request_error\"}}",
			class: ClassQuotaExhausted, code: "invalid_request_error"},
		{name: "escapes decoded", resp: resp(400),
			body: `{"error":{"message":"bad \"x\" \u00e9\ud83d\ude00\n","code":"c"}}`, class: ClassInvalidRequest, msg: "bad \"x\" é😀"},
		{name: "new-api request id suffix stripped from message", resp: resp(403),
			body:  `{"error":{"code":"access_denied","message":"denied (request id: 2025abc)","type":"new_api_error"}}`,
			class: ClassPermission, code: "access_denied", msg: "denied"},
	})
}

// TestClassifyInBand checks errors and refusals inside 2xx responses.
func TestClassifyInBand(t *testing.T) {
	sse := "text/event-stream"
	runRuleCases(t, []ruleCase{
		{name: "sse data error object", resp: resp(200, "Content-Type", sse),
			body:  "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"code\":null}}\n\n",
			class: ClassUpstreamTransient, code: "server_error", retry: yes, breaker: yes},
		{name: "anthropic event error", resp: resp(200, "Content-Type", sse),
			body:  "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
			class: ClassOverloaded, code: "overloaded_error", retry: yes, breaker: yes},
		{name: "anthropic event error after ping", resp: resp(200, "Content-Type", sse),
			body:  "event: ping\ndata: {\"type\": \"ping\"}\n\n",
			class: ClassSuccess},
		{name: "responses response.failed", resp: resp(200, "Content-Type", sse),
			body:  "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"id\":\"resp_1\",\"status\":\"failed\",\"error\":{\"code\":\"server_is_overloaded\",\"message\":\"busy\"}}}\n\n",
			class: ClassOverloaded, code: "server_is_overloaded"},
		{name: "responses rate limit failure", resp: resp(200, "Content-Type", sse),
			body:  "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"rate_limit_exceeded\",\"message\":\"Rate limit reached. Please try again in 1.5s.\"}}}\n\n",
			class: ClassRateLimited, code: "rate_limit_exceeded", wait: 1500 * time.Millisecond},
		{name: "openrouter stream chunk finish_reason error", resp: resp(200, "Content-Type", sse),
			body:  ": OPENROUTER PROCESSING\n\ndata: {\"id\":\"gen-1\",\"choices\":[{\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}],\"error\":{\"code\":502,\"message\":\"Provider disconnected\"}}\n\n",
			class: ClassUpstreamTransient, code: "-"},
		{name: "openrouter non-stream choice error", resp: resp(200, "Content-Type", jsonCT),
			body:  `{"choices":[{"finish_reason":"error","error":{"code":429,"message":"Rate limited upstream"}}]}`,
			class: ClassRateLimited},
		{name: "finish_reason content_filter", resp: resp(200, "Content-Type", jsonCT),
			body:  `{"choices":[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":"content_filter"}]}`,
			class: ClassContentFiltered, retry: no, breaker: no},
		{name: "gemini promptFeedback blockReason", resp: resp(200, "Content-Type", jsonCT),
			body:  `{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},"usageMetadata":{}}`,
			class: ClassContentFiltered},
		{name: "JSON error after PING", resp: resp(200, "Content-Type", sse),
			body:  ": PING\n\n: PING\n\n{\"error\":{\"message\":\"Incorrect API key provided\",\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}",
			class: ClassAuth, code: "invalid_api_key"},
		{name: "JSON error with SSE content type", resp: resp(200, "Content-Type", sse),
			body:  `{"error":{"message":"upstream error: do request failed","type":"new_api_error","code":"do_request_failed"}}`,
			class: ClassUpstreamTransient, code: "do_request_failed"},
		{name: "200 html", resp: resp(200, "Content-Type", "text/html; charset=utf-8"),
			body: "<!doctype html><title>Login</title>", class: ClassUnknown, retry: no, breaker: yes},
		{name: "keep-alives then end", resp: resp(200, "Content-Type", sse),
			body: ": keep-alive\n\n: keep-alive\n\n", class: ClassTimeout, retry: yes, breaker: yes},
		{name: "blank lines then end", resp: resp(200, "Content-Type", sse),
			body: "\n\n\n", class: ClassUpstreamTransient, retry: yes},
		{name: "first chat chunk", resp: resp(200, "Content-Type", sse),
			body:  ": keep-alive\n\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
			class: ClassSuccess, retry: no, breaker: no},
		{name: "first chunk cut at peek limit", resp: resp(200, "Content-Type", sse),
			body:  "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"delta\":{\"content\":\"hello wor",
			class: ClassSuccess},
		{name: "done only is a stream that never started", resp: resp(200, "Content-Type", sse), body: "data: [DONE]\n\n",
			class: ClassUpstreamTransient, code: "-", retry: yes},
		{name: "multi-line data", resp: resp(200, "Content-Type", sse),
			body: "data: {\"error\":\ndata: {\"message\":\"boom\",\"code\":\"server_error\"}}\n\n", class: ClassUpstreamTransient, code: "server_error"},
		{name: "non-stream success", resp: resp(200, "Content-Type", jsonCT),
			body: `{"id":"chatcmpl-1","choices":[{"finish_reason":"stop","message":{"content":"hi"}}]}`, class: ClassSuccess},
		{name: "responses success with error null", resp: resp(200, "Content-Type", jsonCT),
			body: `{"id":"resp_1","object":"response","status":"completed","error":null,"output":[]}`, class: ClassSuccess},
		{name: "204 empty", resp: resp(204), body: "", class: ClassSuccess},
		{name: "string error without hints", resp: resp(200, "Content-Type", sse),
			body: "data: {\"error\": \"tools are not supported by this model\"}\n\n", class: ClassInvalidRequest},
		{name: "string error about a server fault", resp: resp(200, "Content-Type", sse),
			body: "data: {\"error\": \"Internal server error\"}\n\n", class: ClassUpstreamTransient, retry: yes},
	})
}

// TestClassifyProcedure checks the order of §7.2.
func TestClassifyProcedure(t *testing.T) {
	oaErr := func(msg, typ, code string) string {
		return `{"error":{"message":"` + msg + `","type":"` + typ + `","param":null,"code":"` + code + `"}}`
	}
	gemini := func(status int, gstatus, msg, details string) string {
		return `{"error":{"code":` + itoa(status) + `,"message":"` + msg + `","status":"` + gstatus + `","details":[` + details + `]}}`
	}
	runRuleCases(t, []ruleCase{
		// 4. quota beats the status.
		{name: "quota 429 insufficient_quota", resp: resp(429), body: oaErr("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
			class: ClassQuotaExhausted, retry: no, breaker: no},
		{name: "quota 429 code null", resp: resp(429), body: `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":null}}`,
			class: ClassQuotaExhausted, code: "insufficient_quota"},
		{name: "quota spend limit", resp: resp(429), body: oaErr("limit", "insufficient_quota", "organization_spend_limit_exceeded"), class: ClassQuotaExhausted},
		{name: "quota anthropic credit balance as 400", resp: resp(400),
			body:  `{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}`,
			class: ClassQuotaExhausted},
		{name: "quota anthropic workspace limit", resp: resp(400),
			body:  `{"type":"error","error":{"type":"invalid_request_error","message":"You have reached your specified workspace API usage limits. You will regain access on 2026-07-01."}}`,
			class: ClassQuotaExhausted},
		{name: "quota anthropic billing_error 402", resp: resp(402), body: `{"type":"error","error":{"type":"billing_error","message":"pay"}}`, class: ClassQuotaExhausted},
		{name: "quota one-api token as 401", resp: resp(401), body: `{"error":{"message":"令牌 abc（#3）额度已用尽","type":"one_api_error"}}`, class: ClassQuotaExhausted},
		{name: "quota insufficient credits text", resp: resp(403), body: `{"message":"Insufficient credits"}`, class: ClassQuotaExhausted},
		{name: "quota minimax plan window", resp: resp(429, "Date", "Fri, 15 May 2026 14:00:00 GMT"),
			body:  `{"type":"error","error":{"type":"rate_limit_error","message":"usage limit exceeded, 5-hour usage limit reached, resets at 2026-05-15T15:00:00Z"}}`,
			class: ClassQuotaExhausted, retry: no, wait: time.Hour},
		{name: "gemini per-day quota is terminal and model-scoped", resp: resp(429),
			body: gemini(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota. Please retry in 26s.",
				`{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier","quotaDimensions":{"model":"gemini-2.5-pro"},"quotaValue":"50"}]},`+
					`{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"26s"}`),
			class: ClassQuotaExhausted, code: "RESOURCE_EXHAUSTED", retry: no, breaker: yes},
		{name: "gemini limit 0 is terminal", resp: resp(429),
			body:  gemini(429, "RESOURCE_EXHAUSTED", "Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_input_token_count, limit: 0, model: gemini-2.5-pro", ""),
			class: ClassQuotaExhausted, breaker: yes},
		{name: "gemini per-minute quota is a rate limit", resp: resp(429),
			body: gemini(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details.",
				`{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaValue":"15"}]},`+
					`{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"45.837906927s"}`),
			class: ClassRateLimited, retry: yes, breaker: no, wait: 45837906927},
		{name: "gemini per-minute quota relayed by new-api, short message", resp: resp(429),
			body: `{"error":{"message":"You exceeded your current quota, please check your plan and billing details. ` +
				`For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.","type":"upstream_error","param":"","code":429}}`,
			class: ClassRateLimited, retry: yes, breaker: no},
		{name: "gemini per-minute quota relayed, first sentence and its delay", resp: resp(429),
			body:  `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.\nPlease retry in 12.5s.","type":"upstream_error","param":"","code":429}}`,
			class: ClassRateLimited, retry: yes, breaker: no, wait: 12500 * time.Millisecond},
		{name: "openai billing quota text without code stays a quota", resp: resp(429),
			body:  `{"error":{"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.","type":"upstream_error","param":"","code":429}}`,
			class: ClassQuotaExhausted, retry: no},
		{name: "vertex per-minute quota text", resp: resp(429),
			body:  gemini(429, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model with base model: gemini-1.5-pro.", ""),
			class: ClassRateLimited},
		{name: "openrouter daily limit_source", resp: resp(429),
			body:  `{"error":{"message":"Rate limit exceeded","code":429,"metadata":{"limit_source":"openrouter_free_tier_daily"}}}`,
			class: ClassQuotaExhausted},
		{name: "openrouter 402 in-flight budget with Retry-After", resp: resp(402, "Retry-After", "3"),
			body:  `{"error":{"message":"in-flight budget","code":402,"metadata":{"limit_source":"openrouter_in_flight_budget"}}}`,
			class: ClassRateLimited, retry: yes, wait: 3 * time.Second},
		{name: "openrouter 402 in-flight budget without Retry-After", resp: resp(402),
			body:  `{"error":{"message":"in-flight budget","code":402,"metadata":{"limit_source":"openrouter_in_flight_budget"}}}`,
			class: ClassQuotaExhausted},
		// 5. Request too large.
		{name: "request too large 429", resp: resp(429), body: oaErr("Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 31538.", "tokens", "rate_limit_exceeded"),
			class: ClassInvalidRequest, retry: no},
		// 6. Context length.
		{name: "context code", resp: resp(400), body: oaErr("too long", "invalid_request_error", "context_length_exceeded"), class: ClassContextLength},
		{name: "context text prompt is too long", resp: resp(400), body: `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}`, class: ClassContextLength},
		{name: "context text anthropic context limit", resp: resp(400),
			body:  `{"type":"error","error":{"type":"invalid_request_error","message":"input length and ` + "`max_tokens`" + ` exceed context limit: 197202 + 8192 > 200000, decrease input length or ` + "`max_tokens`" + ` and try again"}}`,
			class: ClassContextLength},
		{name: "too many tokens on 429 is a rate limit", resp: resp(429), body: `{"message":"Too many tokens, please wait before trying again."}`, class: ClassRateLimited},
		{name: "context deadline is not context length", resp: resp(500),
			body:  oaErr(`Post \"http://10.0.0.2/v1/chat/completions\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`, "one_api_error", "do_request_failed"),
			class: ClassUpstreamTransient},
		// 7. Content filter.
		{name: "content_policy_violation", resp: resp(400), body: oaErr("Your request was rejected as a result of our safety system.", "invalid_request_error", "content_policy_violation"), class: ClassContentFiltered},
		{name: "openrouter flagged_input", resp: resp(403),
			body: `{"error":{"code":403,"message":"Your input was flagged","metadata":{"reasons":["violence"],"flagged_input":"..."}}}`, class: ClassContentFiltered},
		// 8. Auth.
		{name: "gemini API_KEY_INVALID on 400", resp: resp(400),
			body:  gemini(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", `{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}`),
			class: ClassAuth, retry: no, breaker: no},
		{name: "authentication_error", resp: resp(401), body: `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`, class: ClassAuth},
		{name: "401 without code", resp: resp(401), body: "", class: ClassAuth},
		// 9. Model.
		{name: "anthropic not_found_error about the model", resp: resp(404),
			body: `{"type":"error","error":{"type":"not_found_error","message":"model: claude-9"}}`, class: ClassModelNotFound, breaker: yes},
		{name: "anthropic not_found_error about a file", resp: resp(404),
			body: `{"type":"error","error":{"type":"not_found_error","message":"File not found: file_123"}}`, class: ClassNotFound, breaker: no},
		{name: "gemini model 404", resp: resp(404),
			body: gemini(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta, or is not supported for generateContent.", ""), class: ClassModelNotFound},
		{name: "no available channel", resp: resp(503), body: `{"error":{"message":"No available channel for model x under group default","type":"new_api_error"}}`, class: ClassModelNotFound, retry: no, breaker: yes},
		// 10. Overload.
		{name: "openai engine overloaded 503", resp: resp(503), body: oaErr("That model is currently overloaded with other requests.", "server_error", ""), class: ClassOverloaded, breaker: yes},
		{name: "litellm overloaded as 500", resp: resp(500), body: oaErr("litellm.InternalServerError: AnthropicException - Overloaded", "internal_server_error", "500"), class: ClassOverloaded},
		{name: "litellm no deployments on 429", resp: resp(429),
			body:  oaErr("No deployments available for selected model, Try again in 60 seconds. Passed model=claude. cooldown_list=[]", "None", "429"),
			class: ClassOverloaded, retry: yes, breaker: yes, wait: time.Minute},
		{name: "azure high demand 429", resp: resp(429), body: `{"error":{"code":"429","message":"The service is experiencing high demand. Please retry later."}}`, class: ClassOverloaded},
		{name: "capacity exhausted reason", resp: resp(429),
			body:  gemini(429, "RESOURCE_EXHAUSTED", "No capacity available for model gemini-2.5-pro on the server", `{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"MODEL_CAPACITY_EXHAUSTED"}`),
			class: ClassOverloaded},
		{name: "mistral capacity 503", resp: resp(503), body: `{"object":"error","message":"Service tier capacity exceeded for this model.","type":"invalid_request_error","code":"3505"}`, class: ClassOverloaded},
		{name: "529 empty", resp: resp(529), body: "", class: ClassOverloaded},
		// 11. new-api codes.
		{name: "new-api invalid_request as 500", resp: resp(500), body: oaErr("field messages is required", "new_api_error", "invalid_request"), class: ClassInvalidRequest, retry: no, breaker: no},
		{name: "new-api convert_request_failed", resp: resp(500), body: oaErr("x", "new_api_error", "convert_request_failed"), class: ClassInvalidRequest},
		{name: "new-api DB error retried", resp: resp(500), body: oaErr("db", "new_api_error", "gen_relay_info_failed"), class: ClassGatewayInternal, retry: yes, breaker: no},
		{name: "new-api marshal error not retried", resp: resp(500), body: oaErr("x", "new_api_error", "json_marshal_failed"), class: ClassGatewayInternal, retry: no, breaker: no},
		{name: "new-api invalid_api_type trips breaker", resp: resp(500), body: oaErr("x", "new_api_error", "invalid_api_type"), class: ClassGatewayInternal, retry: no, breaker: yes},
		{name: "new-api channel:no_available_key", resp: resp(500), body: oaErr("no enabled keys", "new_api_error", "channel:no_available_key"), class: ClassUpstreamTransient, retry: yes, breaker: yes},
		{name: "new-api channel code beats auth text", resp: resp(500), body: oaErr("Incorrect API key provided", "new_api_error", "channel:invalid_key"), class: ClassUpstreamTransient},
		{name: "new-api bad_response_status_code 4xx by status", resp: resp(400), body: oaErr("openai_error", "bad_response_status_code", "bad_response_status_code"), class: ClassInvalidRequest},
		{name: "new-api bad_response_status_code 5xx by status", resp: resp(503), body: oaErr("openai_error", "bad_response_status_code", "bad_response_status_code"), class: ClassUpstreamTransient},
		{name: "new-api access_denied", resp: resp(403), body: oaErr("ip not allowed", "new_api_error", "access_denied"), class: ClassPermission},
		// 12. Status fallback.
		{name: "status 429", resp: resp(429), class: ClassRateLimited, retry: yes, breaker: no},
		{name: "status 408", resp: resp(408), class: ClassTimeout, retry: yes, breaker: yes},
		{name: "status 504", resp: resp(504), class: ClassTimeout},
		{name: "status 522", resp: resp(522), class: ClassTimeout},
		{name: "status 524", resp: resp(524), class: ClassTimeout},
		{name: "status 500", resp: resp(500), class: ClassUpstreamTransient},
		{name: "status 520", resp: resp(520), class: ClassUpstreamTransient},
		{name: "status 403", resp: resp(403), class: ClassPermission, retry: no},
		{name: "status 404", resp: resp(404), class: ClassNotFound},
		{name: "status 409", resp: resp(409), class: ClassInvalidRequest},
		{name: "status 302", resp: resp(302), class: ClassUnknown, breaker: yes},
		{name: "gemini DEADLINE_EXCEEDED", resp: resp(500), body: gemini(500, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.", ""), class: ClassTimeout},
		{name: "gemini FAILED_PRECONDITION", resp: resp(400), body: gemini(400, "FAILED_PRECONDITION", "User location is not supported for the API use.", ""), class: ClassPermission},
		// x-should-retry.
		{name: "x-should-retry true on 409", resp: resp(409, "X-Should-Retry", "true"), class: ClassInvalidRequest, retry: yes},
		{name: "x-should-retry false vetoes 503", resp: resp(503, "X-Should-Retry", "false"), class: ClassUpstreamTransient, retry: no, breaker: yes},
		// Retryable is the server's verdict, whatever the wait: the
		// transport's cap (120 s by default) is the transport's.
		{name: "wait above the transport's cap", resp: resp(429, "Retry-After", "121"), class: ClassRateLimited, retry: yes, wait: 121 * time.Second},
		{name: "wait at the transport's cap", resp: resp(429, "Retry-After", "120"), class: ClassRateLimited, retry: yes, wait: 120 * time.Second},
		{name: "wait of an hour, x-should-retry false", resp: resp(429, "Retry-After", "3600", "X-Should-Retry", "false"), class: ClassRateLimited, retry: no, wait: time.Hour},
	})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// TestClassifyRetryableIgnoresWait checks that Retryable is the server's
// verdict, which no wait hint changes: a rate limit that asks for an hour
// is Retryable (a client with a cap below an hour does not wait for it);
// a gateway code overrides its class; a success never is.
func TestClassifyRetryableIgnoresWait(t *testing.T) {
	c := Classify(resp(429, "Retry-After", "3600"), nil)
	if !c.Retryable || c.RetryAfter != time.Hour {
		t.Errorf("Retryable, RetryAfter = %v, %v; want true, 1h", c.Retryable, c.RetryAfter)
	}
	q := Classify(resp(500), []byte(`{"error":{"code":"update_data_error","message":"deadlock","type":"new_api_error"}}`))
	if q.Class != ClassGatewayInternal || !q.Retryable {
		t.Errorf("gateway DB error: class %v, Retryable %v; want gateway_internal, true", q.Class, q.Retryable)
	}
	s := Classify(resp(200, "X-Should-Retry", "true"), nil)
	if s.Retryable || s.BreakerFailure {
		t.Errorf("success: %+v, want no retry and no breaker failure", s)
	}
}

// TestClassifyRequestID checks the header precedence and the body
// fallbacks of §4.
func TestClassifyRequestID(t *testing.T) {
	all := []string{
		"Cf-Ray", "8e69-SJC", "X-Generation-Id", "gen-1", "X-Litellm-Call-Id", "lite-1",
		"X-Oneapi-Request-Id", "oneapi-1", "Apim-Request-Id", "apim-1", "X-Request-Id", "req_x", "Request-Id", "req_anthropic",
	}
	for i := 0; i < len(all); i += 2 {
		// With the headers from index i on, the last pair wins.
		kv := all[i:]
		want := kv[len(kv)-1]
		if got := Classify(resp(500, kv...), nil).RequestID; got != want {
			t.Errorf("headers %v: request id = %q, want %q", kv, got, want)
		}
	}
	cases := []struct{ name, body, want string }{
		{"body request_id", `{"type":"error","error":{"type":"api_error","message":"x"},"request_id":"req_body"}`, "req_body"},
		{"body request_id null", `{"type":"error","error":{"type":"api_error","message":"x"},"request_id":null}`, ""},
		{"new-api suffix", `{"error":{"message":"boom (request id: 20260624abc)","type":"new_api_error","code":"do_request_failed"}}`, "20260624abc"},
		{"openai req_ in message", `{"error":{"message":"(Please include the request ID req_540c6eaab7f4556b2baa22bcba915d51 in your email.)","type":"server_error"}}`, "req_540c6eaab7f4556b2baa22bcba915d51"},
		{"short req_ ignored", `{"error":{"message":"see req_123","type":"server_error"}}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(resp(500), []byte(tc.body)).RequestID; got != tc.want {
				t.Errorf("request id = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestClassifyStringsDoNotAliasBody checks that the strings of a
// classification survive the reuse of the body buffer.
func TestClassifyStringsDoNotAliasBody(t *testing.T) {
	body := []byte(`{"error":{"message":"quota gone","type":"insufficient_quota","code":"insufficient_quota"},"request_id":"req_abcdefghijklmnopqrstu"}`)
	c := Classify(resp(429), body)
	for i := range body {
		body[i] = 'X'
	}
	if c.Message != "quota gone" || c.Code != "insufficient_quota" || c.Type != "insufficient_quota" || c.RequestID != "req_abcdefghijklmnopqrstu" {
		t.Errorf("after overwriting the body: %+v", c)
	}
}

// TestClassifyMasksSecrets checks that keys quoted in messages are masked.
func TestClassifyMasksSecrets(t *testing.T) {
	c := Classify(resp(401), []byte(`{"error":{"message":"Incorrect API key provided: sk-proj-abcdefghijklmnop. Post https://x/v1?key=AIzaSecret123: denied","type":"invalid_request_error","code":"invalid_api_key"}}`))
	if strings.Contains(c.Message, "abcdefghijklmnop") || strings.Contains(c.Message, "AIzaSecret123") {
		t.Errorf("message leaks a key: %q", c.Message)
	}
	if !strings.Contains(c.Message, "sk-"+redact.Redacted) {
		t.Errorf("message = %q, want the key masked as sk-%s", c.Message, redact.Redacted)
	}
}

// TestClassifyBounded checks the 64 KiB limit and deep nesting.
func TestClassifyBounded(t *testing.T) {
	big := `{"error":{"message":"` + strings.Repeat("a", MaxPeek) + `","code":"insufficient_quota"}}`
	if c := Classify(resp(429), []byte(big)); c.Code != "" || c.Class != ClassRateLimited {
		t.Errorf("code beyond 64 KiB was read: %+v", c.Code)
	}
	if c := Classify(resp(429), []byte(big)); len(c.Message) > redact.MaxMessage+len("…") {
		t.Errorf("message length %d, want at most %d", len(c.Message), redact.MaxMessage)
	}
	deep := strings.Repeat(`{"error":`, 10000) + `"x"` + strings.Repeat("}", 10000)
	if c := Classify(resp(500), []byte(deep)); c.Class != ClassUpstreamTransient {
		t.Errorf("deep nesting: class %v", c.Class)
	}
	if c := Classify(nil, nil); c.Class != ClassUnknown || !c.BreakerFailure {
		t.Errorf("nil response: %+v", c)
	}
	if c := Classify(&http.Response{StatusCode: 500}, []byte("{")); c.Class != ClassUpstreamTransient {
		t.Errorf("nil header: %+v", c)
	}
}

// TestClassifyExplicitTypeBeatsMessage: an explicit client-error type is
// never overridden by the words of its message. LiteLLM's 400 for a
// referenced item that does not exist names the model and says "not
// found": it is the request's fault, not a missing model (which would
// count against the model's circuit).
func TestClassifyExplicitTypeBeatsMessage(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{name: "LiteLLM 400 not found", resp: resp(400, "Content-Type", jsonCT),
			body:  `{"error":{"message":"litellm.BadRequestError: OpenAIException - Item with id 'msg_123' not found. Received Model Group=gpt-4o\nAvailable Model Group Fallbacks=None","type":"invalid_request_error","param":null,"code":"400"}}`,
			class: ClassInvalidRequest, breaker: no},
		{name: "BadRequestError type", resp: resp(400, "Content-Type", jsonCT),
			body:  `{"error":{"message":"file not found for model gpt-4o","type":"BadRequestError"}}`,
			class: ClassInvalidRequest, breaker: no},
		// Without an explicit type, the words still tell a missing model.
		{name: "400 model does not exist, no type", resp: resp(400, "Content-Type", jsonCT),
			body:  `{"error":{"message":"The model gpt-9 does not exist"}}`,
			class: ClassModelNotFound},
		{name: "404 model not found, invalid_request_error", resp: resp(404, "Content-Type", jsonCT),
			body:  `{"error":{"message":"The model gpt-9 does not exist","type":"invalid_request_error","code":"model_not_found"}}`,
			class: ClassModelNotFound},
	})
}
