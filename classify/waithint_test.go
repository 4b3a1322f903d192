package classify

import (
	"testing"
	"time"
)

const rateLimitBody = `{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}`

// TestWaitHintSources checks every source of §6 and their priority.
func TestWaitHintSources(t *testing.T) {
	date := "Wed, 21 Oct 2026 07:27:30 GMT"
	gemini := func(delay, msg string) string {
		return `{"error":{"code":429,"message":"` + msg + `","status":"RESOURCE_EXHAUSTED","details":[` +
			`{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"` + delay + `"}]}}`
	}
	msgBody := func(msg string) string {
		return `{"error":{"message":"` + msg + `","type":"tokens","code":"rate_limit_exceeded"}}`
	}
	cases := []struct {
		name   string
		kv     []string
		body   string
		want   time.Duration
		source string
	}{
		{"retry-after-ms", []string{"Retry-After-Ms", "1500"}, "", 1500 * time.Millisecond, "retry-after-ms"},
		{"retry-after-ms float", []string{"Retry-After-Ms", "250.5"}, "", 250500 * time.Microsecond, "retry-after-ms"},
		{"retry-after-ms beats retry-after", []string{"Retry-After", "2", "Retry-After-Ms", "1500"}, "", 1500 * time.Millisecond, "retry-after-ms"},
		{"retry-after integer", []string{"Retry-After", "17"}, "", 17 * time.Second, "retry-after"},
		{"retry-after float", []string{"Retry-After", "0.75"}, "", 750 * time.Millisecond, "retry-after"},
		{"retry-after http-date relative to Date", []string{"Date", date, "Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT"}, "", 30 * time.Second, "retry-after"},
		{"retry-after beats retryDelay", []string{"Retry-After", "5"}, gemini("26s", "x"), 5 * time.Second, "retry-after"},
		{"gemini retryDelay", nil, gemini("26s", "x"), 26 * time.Second, "body:retryDelay"},
		{"gemini fractional retryDelay", nil, gemini("47.174066935s", "x"), 47174066935, "body:retryDelay"},
		{"retryDelay beats message", nil, gemini("26s", "Please retry in 47.17s."), 26 * time.Second, "body:retryDelay"},
		{"anthropic reset of the exhausted dimension", []string{
			"Date", date,
			"Anthropic-Ratelimit-Requests-Remaining", "10", "Anthropic-Ratelimit-Requests-Reset", "2026-10-21T07:30:00Z",
			"Anthropic-Ratelimit-Input-Tokens-Remaining", "0", "Anthropic-Ratelimit-Input-Tokens-Reset", "2026-10-21T07:27:42Z",
		}, "", 12 * time.Second, "anthropic-ratelimit-input-tokens-reset"},
		{"anthropic reset ignored when nothing is exhausted", []string{
			"Date", date, "Anthropic-Ratelimit-Tokens-Remaining", "5", "Anthropic-Ratelimit-Tokens-Reset", "2026-10-21T07:28:00Z",
		}, "", 0, ""},
		{"x-ratelimit-reset-tokens go duration", []string{"X-Ratelimit-Remaining-Tokens", "0", "X-Ratelimit-Reset-Tokens", "6m0s",
			"X-Ratelimit-Remaining-Requests", "99", "X-Ratelimit-Reset-Requests", "12ms"}, "", 6 * time.Minute, "x-ratelimit-reset-tokens"},
		{"x-ratelimit-reset-requests fractional", []string{"X-Ratelimit-Remaining-Requests", "0", "X-Ratelimit-Reset-Requests", "7.66s"}, "", 7660 * time.Millisecond, "x-ratelimit-reset-requests"},
		{"x-ratelimit-reset ignored when remaining > 0", []string{"X-Ratelimit-Remaining-Tokens", "12", "X-Ratelimit-Reset-Tokens", "1s"}, "", 0, ""},
		{"x-rate-limit-reset-tokens", []string{"X-Rate-Limit-Reset-Tokens", "55"}, "", 55 * time.Second, "x-rate-limit-reset-tokens"},
		{"openrouter metadata X-RateLimit-Reset epoch ms", []string{"Date", date},
			`{"error":{"code":429,"message":"Rate limit exceeded","metadata":{"headers":{"X-RateLimit-Limit":"20","X-RateLimit-Remaining":"0","X-RateLimit-Reset":"1792567680000"}}}}`,
			30 * time.Second, "body:x-ratelimit-reset"},
		{"data.retry_after number", nil, `{"code":"rate_limited","message":"slow","data":{"retry_after":3}}`, 3 * time.Second, "body:retry_after"},
		{"data.retry_after string", nil, `{"code":"rate_limited","message":"slow","data":{"retry_after":"2.5"}}`, 2500 * time.Millisecond, "body:retry_after"},
		{"message try again in ms", nil, msgBody("Please try again in 644ms."), 644 * time.Millisecond, "message"},
		{"message try again in fractional s", nil, msgBody("Please try again in 6.780999999s. Need more tokens?"), 6780999999, "message"},
		{"message minutes and seconds", nil, msgBody("Please try again in 1m0.363142857s."), 60363142857, "message"},
		{"message groq per day", nil, msgBody("on tokens per day (TPD): Limit 500000. Please try again in 9m38.016s."), 9*time.Minute + 38016*time.Millisecond, "message"},
		{"message please retry in", nil, msgBody("Please retry in 47.17s."), 47170 * time.Millisecond, "message"},
		{"message retry after seconds", nil, msgBody("Please retry after 86400 seconds. Please go here"), 86400 * time.Second, "message"},
		{"message try again in seconds", nil, msgBody("Rate limit is exceeded. Try again in 2 seconds."), 2 * time.Second, "message"},
		{"message try again in 1 minute", nil, msgBody("Try again in 1 minute"), time.Minute, "message"},
		{"message resets at", []string{"Date", date}, msgBody("5-hour usage limit reached, resets at 2026-10-21T08:27:30Z"), time.Hour, "message"},
		{"message without a number", nil, msgBody("Please try again later."), 0, ""},
		{"no hint", nil, rateLimitBody, 0, ""},
		// Junk falls through to the next source.
		{"junk retry-after-ms falls through", []string{"Retry-After-Ms", "-1", "Retry-After", "4"}, "", 4 * time.Second, "retry-after"},
		{"junk retry-after falls through to message", []string{"Retry-After", "NaN"}, msgBody("Please try again in 644ms."), 644 * time.Millisecond, "message"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Classify(resp(429, tc.kv...), []byte(tc.body))
			if !closeTo(c.RetryAfter, tc.want) || c.RetryAfterSource != tc.source {
				t.Errorf("wait = %v from %q, want %v from %q", c.RetryAfter, c.RetryAfterSource, tc.want, tc.source)
			}
		})
	}
}

// TestWaitHintJunk checks that junk values are ignored: ≤ 0, -1
// placeholders, NaN, infinities, overflow, absurd sizes, dates in the past
// or far future, and garbage.
func TestWaitHintJunk(t *testing.T) {
	date := "Wed, 21 Oct 2026 07:27:30 GMT"
	for _, tc := range []struct{ name, header, value string }{
		{"retry-after minus one", "Retry-After", "-1"},
		{"retry-after negative", "Retry-After", "-5"},
		{"retry-after zero", "Retry-After", "0"},
		{"retry-after NaN", "Retry-After", "NaN"},
		{"retry-after Inf", "Retry-After", "Inf"},
		{"retry-after 1e309", "Retry-After", "1e309"},
		{"retry-after tiny", "Retry-After", "1e-12"},
		{"retry-after date in 1900", "Retry-After", "Mon, 01 Jan 1900 00:00:00 GMT"},
		{"retry-after garbage", "Retry-After", "soon"},
		{"retry-after empty", "Retry-After", " "},
		{"retry-after-ms minus one", "Retry-After-Ms", "-1"},
		{"retry-after-ms NaN", "Retry-After-Ms", "NaN"},
		{"x-rate-limit-reset-tokens minus one", "X-Rate-Limit-Reset-Tokens", "-1"},
		{"x-rate-limit-reset-tokens zero", "X-Rate-Limit-Reset-Tokens", "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Classify(resp(429, "Date", date, tc.header, tc.value), []byte(rateLimitBody))
			if c.RetryAfter != 0 || c.RetryAfterSource != "" {
				t.Errorf("%s: %q gave wait %v from %q, want none", tc.header, tc.value, c.RetryAfter, c.RetryAfterSource)
			}
			if !c.Retryable {
				t.Errorf("%s: %q made the response not retryable", tc.header, tc.value)
			}
		})
	}
	for _, tc := range []struct{ name, body string }{
		{"retryDelay negative", `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"x","details":[{"retryDelay":"-3s"}]}}`},
		{"retryDelay zero", `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"x","details":[{"retryDelay":"0s"}]}}`},
		{"data.retry_after minus one", `{"code":"x","message":"m","data":{"retry_after":-1}}`},
		{"data.retry_after NaN", `{"code":"x","message":"m","data":{"retry_after":"NaN"}}`},
		{"message zero", `{"error":{"message":"try again in 0s"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Classify(resp(429), []byte(tc.body))
			if c.RetryAfter != 0 {
				t.Errorf("wait %v from %q, want none", c.RetryAfter, c.RetryAfterSource)
			}
		})
	}
}

// TestWaitHintHugeIsAboveCap checks that a parseable but absurd hint (a
// wait of centuries, a date in the year 3000) is kept, capped at
// maxSaneWait: far above any retry cap, so that a client with one (the
// transport: TestTransportHintDoesNotRetry) does not retry the response,
// which stays Retryable, the server's verdict on a rate limit.
func TestWaitHintHugeIsAboveCap(t *testing.T) {
	date := "Wed, 21 Oct 2026 07:27:30 GMT"
	for _, tc := range []struct {
		name    string
		headers []string
		body    string
	}{
		{"retry-after huge integer", []string{"Retry-After", "99999999999"}, rateLimitBody},
		{"retry-after date in 3000", []string{"Retry-After", "Wed, 01 Jan 3000 00:00:00 GMT"}, rateLimitBody},
		{"retry-after-ms huge", []string{"Retry-After-Ms", "1e300"}, rateLimitBody},
		{"retryDelay huge", nil, `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"x","details":[{"retryDelay":"99999999999s"}]}}`},
		{"message absurd", nil, `{"error":{"message":"try again in 99999999999 seconds"}}`},
		{"message overflow", nil, `{"error":{"message":"try again in 9999999999999999999999h"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Classify(resp(429, append([]string{"Date", date}, tc.headers...)...), []byte(tc.body))
			if c.RetryAfter != maxSaneWait || !c.Retryable {
				t.Errorf("got wait %v from %q, retryable %v; want %v, retryable", c.RetryAfter, c.RetryAfterSource, c.Retryable, maxSaneWait)
			}
		})
	}
}

// TestWaitHintGeminiPerDayReportsDelay checks that the retryDelay of a
// per-day quota error is reported, for the caller, while the error is not
// retried: hints are reported on every class.
func TestWaitHintGeminiPerDayReportsDelay(t *testing.T) {
	body := `{"error":{"code":429,"message":"You exceeded your current quota. Please retry in 26s.","status":"RESOURCE_EXHAUSTED","details":[` +
		`{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},` +
		`{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"26s"}]}}`
	c := Classify(resp(429), []byte(body))
	if c.Class != ClassQuotaExhausted || c.RetryAfter != 26*time.Second || c.RetryAfterSource != "body:retryDelay" {
		t.Errorf("class %v, wait %v from %q; want quota_exhausted and 26s from body:retryDelay", c.Class, c.RetryAfter, c.RetryAfterSource)
	}
	if c.Retryable {
		t.Error("retryable, want not")
	}
}

// TestDurationPhrase checks the message-text duration parser directly.
func TestDurationPhrase(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"644ms.":             644 * time.Millisecond,
		"1m0.36s":            60360 * time.Millisecond,
		"2 seconds.":         2 * time.Second,
		"60 seconds. passed": time.Minute,
		"5 minutes":          5 * time.Minute,
		"2sec":               2 * time.Second,
		"1 hour":             time.Hour,
		"~3s":                3 * time.Second,
		"a few seconds":      0,
		"":                   0,
		"5 parsecs":          0,
		".":                  0,
	} {
		got, ok := durationPhrase(in)
		if got != want || ok != (want > 0) {
			t.Errorf("durationPhrase(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
}

// TestClassifyWaitOnEveryClass checks that a wait hint is reported
// whatever the class, and that it never makes a class retryable, nor (a
// hint of a day on a rate limit) keeps a retryable one from being: how long
// a wait is worth it is the caller's cap.
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
			class: ClassRateLimited, retry: yes, wait: 24 * time.Hour},
		{name: "invalid request with Retry-After", resp: resp(400, "Retry-After", "1"),
			body: `{"error":{"message":"bad","type":"invalid_request_error","code":"unknown_parameter"}}`, class: ClassInvalidRequest, retry: no, wait: time.Second},
	})
}
