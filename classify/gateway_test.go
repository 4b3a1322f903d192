package classify

import "testing"

// TestClassifyGatewaySelfErrors checks the errors new-api writes itself
// (gateway-errors.md §2.5), as a live gateway sends them.
func TestClassifyGatewaySelfErrors(t *testing.T) {
	const rid = "202606240035378086644568268d9d6AsuclAOv"
	hdr := func() []string {
		return []string{"Content-Type", "application/json; charset=utf-8", "X-Oneapi-Request-Id", rid}
	}
	runRuleCases(t, []ruleCase{
		{name: "load guard 503 system_cpu_overloaded", resp: resp(503, hdr()...),
			body:  `{"error":{"code":"system_cpu_overloaded","message":"system cpu overloaded (current: 99.9%, threshold: 90%) (request id: ` + rid + `)","type":"new_api_error"}}`,
			class: ClassOverloaded, code: "system_cpu_overloaded", typ: "new_api_error", retry: yes, breaker: no},
		{name: "own request limiter 429 empty body no hint", resp: resp(429, "X-Oneapi-Request-Id", rid),
			body: "", class: ClassRateLimited, code: "-", retry: yes, breaker: no},
		{name: "invalid token 401", resp: resp(401, hdr()...),
			body:  `{"error":{"code":"","message":"Invalid token (request id: ` + rid + `)","type":"new_api_error"}}`,
			class: ClassAuth, code: "-", typ: "new_api_error", retry: no, breaker: no},
		{name: "get_channel_failed after auto-disable", resp: resp(500, hdr()...),
			body:  `{"error":{"message":"获取分组 default 下模型 gpt-4o 的可用渠道失败（retry）: no available channel (request id: ` + rid + `)","type":"new_api_error","param":"","code":"get_channel_failed"}}`,
			class: ClassUpstreamTransient, code: "get_channel_failed", retry: yes, breaker: yes},
		{name: "model_not_found 503 once the channel is disabled", resp: resp(503, hdr()...),
			body:  `{"error":{"code":"model_not_found","message":"No available channel for model gpt-4o under group default (distributor) (request id: ` + rid + `)","type":"new_api_error"}}`,
			class: ClassModelNotFound, code: "model_not_found", retry: no, breaker: yes},
		{name: "model or group not allowed 403 without code", resp: resp(403, hdr()...),
			body:  `{"error":{"code":"","message":"该令牌无权访问模型 gpt-4o (request id: ` + rid + `)","type":"new_api_error"}}`,
			class: ClassPermission, code: "-", retry: no, breaker: no},
		{name: "malformed JSON 400 with empty code", resp: resp(400, hdr()...),
			body:  `{"error":{"code":"","message":"invalid character '}' looking for beginning of object key string (request id: ` + rid + `)","type":"new_api_error"}}`,
			class: ClassInvalidRequest, code: "-", retry: no, breaker: no},
	})
}
