package classify

import (
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/llmtransport/llmtransport/internal/hint"
	"github.com/llmtransport/llmtransport/internal/redact"
)

// checkSane fails t unless c is a well-formed classification.
func checkSane(t *testing.T, c Classification) {
	t.Helper()
	if c.Class >= numClasses {
		t.Fatalf("class %d out of range", c.Class)
	}
	if c.RetryAfter < 0 || c.RetryAfter > maxSaneWait {
		t.Fatalf("retry after %v out of range", c.RetryAfter)
	}
	if (c.RetryAfter == 0) != (c.RetryAfterSource == "") {
		t.Fatalf("retry after %v with source %q", c.RetryAfter, c.RetryAfterSource)
	}
	if c.Class == ClassSuccess && (c.Retryable || c.BreakerFailure || c.RetryAfter != 0) {
		t.Fatalf("success with retry/breaker/wait: %+v", c)
	}
	if len(c.Message) > redact.MaxMessage+len("…") {
		t.Fatalf("message of %d bytes", len(c.Message))
	}
	for _, s := range [...]string{c.Message, c.Code, c.Type} {
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8 %q", s)
		}
	}
}

// FuzzClassify checks that Classify never panics and always returns a
// sane classification, whatever the status, headers and body.
func FuzzClassify(f *testing.F) {
	for _, cc := range loadCorpus(f) {
		h := cc.response().Header
		f.Add(cc.Status, h.Get("Content-Type"), h.Get("Retry-After"), []byte(cc.Body))
	}
	for _, b := range []string{
		"", "\ufeff", "{", "[", `{"error":`, `{"error":{"message":"\u`, `{"error":{"message":"\ud83d\u`,
		"data:", "data: {\"error\"", "event: error\n", ": PING\n\n{\"error\":{\"code\":\"x\"",
		strings.Repeat("[", 100), strings.Repeat(`{"a":`, 100), `{'error': {'code': None}}`,
		"<html><title>", `{"error":{"message":"try again in 1e400s"}}`,
	} {
		f.Add(429, "text/event-stream", "1", []byte(b))
		f.Add(200, "application/json", "", []byte(b))
	}
	f.Fuzz(func(t *testing.T, status int, contentType, retryAfter string, body []byte) {
		h := http.Header{}
		h.Set("Content-Type", contentType)
		h.Set("Retry-After", retryAfter)
		h.Set("X-Ratelimit-Remaining-Tokens", "0")
		h.Set("X-Ratelimit-Reset-Tokens", retryAfter)
		c := Classify(&http.Response{StatusCode: status, Header: h}, body)
		checkSane(t, c)
		if c.Status != status {
			t.Fatalf("status %d, want %d", c.Status, status)
		}
	})
}

// FuzzWaitHint checks that no header value or message yields a negative,
// absurd or panicking wait.
func FuzzWaitHint(f *testing.F) {
	for _, s := range []string{
		"17", "0.75", "-1", "0", "NaN", "Inf", "-Inf", "1e309", "99999999999", "6m0s", "12ms", "7.66s",
		"Wed, 21 Oct 2026 07:28:00 GMT", "Mon, 01 Jan 1900 00:00:00 GMT", "Wed, 01 Jan 3000 00:00:00 GMT",
		"2026-10-21T07:28:00Z", "1792567680000", "Please try again in 644ms.", "Please retry in 47.17s.",
		"retry after 86400 seconds", "Try again in 2 seconds", "in 1m0.36s", "resets at 2026-05-15T15:00:00Z",
		"try again in 9223372036854775807ns", "try again in 1e30 seconds", "try again in .", "retry in ~",
	} {
		f.Add(s)
	}
	now := time.Date(2026, 10, 21, 7, 27, 30, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		check := func(what string, d time.Duration, ok bool) {
			if ok != (d > 0) || d < 0 || d > maxSaneWait {
				t.Fatalf("%s(%q) = %v, %v", what, v, d, ok)
			}
		}
		d, ok := parseRetryAfter(v, now)
		check("parseRetryAfter", d, ok)
		d, ok = hint.ParseMillis(v)
		check("hint.ParseMillis", d, ok)
		d, ok = hint.ParseDuration(v)
		check("hint.ParseDuration", d, ok)
		d, ok = hint.ParseReset(v, now)
		check("hint.ParseReset", d, ok)
		d, ok = messageWait(strings.ToLower(v), now)
		check("messageWait", d, ok)
		d, ok = durationPhrase(strings.ToLower(v))
		check("durationPhrase", d, ok)

		h := http.Header{}
		for _, k := range [...]string{"Retry-After-Ms", "Retry-After", "X-Rate-Limit-Reset-Tokens",
			"Anthropic-Ratelimit-Tokens-Reset", "X-Ratelimit-Reset-Requests"} {
			h.Set(k, v)
		}
		h.Set("Anthropic-Ratelimit-Tokens-Remaining", "0")
		h.Set("X-Ratelimit-Remaining-Requests", "0")
		c := Classify(&http.Response{StatusCode: 429, Header: h}, []byte(`{"error":{"message":"`+v+`"}}`))
		checkSane(t, c)
	})
}

// TestClassifyAllocationBounded checks that adversarial 64 KiB bodies cost
// a bounded amount of memory: a small multiple of the input.
func TestClassifyAllocationBounded(t *testing.T) {
	n := MaxPeek
	bodies := map[string][]byte{
		"escaped message":  []byte(`{"error":{"message":"` + strings.Repeat(`\u00e9`, n/6) + `"}}`),
		"many data lines":  []byte(strings.Repeat("data: x\n", n/8)),
		"deep nesting":     []byte(strings.Repeat(`{"error":`, n/9)),
		"many keys":        []byte(`{` + strings.Repeat(`"message":"aaaaaaaa",`, n/21) + `}`),
		"nested JSON text": []byte(`{"error":{"message":"` + strings.Repeat(`{\"error\":{\"message\":\"x\"}}`, n/30) + `"}}`),
		"html":             []byte("<html>" + strings.Repeat("<title", n/6)),
		"wait phrases":     []byte(`{"error":{"message":"` + strings.Repeat("try again in 1", n/14) + `"}}`),
	}
	for name, b := range bodies {
		t.Run(name, func(t *testing.T) {
			r := resp(500, "Content-Type", "text/event-stream")
			const runs = 5
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for range runs {
				checkSane(t, Classify(r, b))
			}
			runtime.ReadMemStats(&after)
			perRun := (after.TotalAlloc - before.TotalAlloc) / runs
			if limit := uint64(16 * MaxPeek); perRun > limit {
				t.Errorf("%d bytes allocated per call, want at most %d", perRun, limit)
			}
		})
	}
}
