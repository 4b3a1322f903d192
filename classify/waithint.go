package classify

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/llmtransport/llmtransport/internal/hint"
)

// maxSaneWait bounds wait hints: a longer one (Retry-After: 99999999999, a
// date in the year 3000) is taken as this long — far above any retry cap, so
// the response goes back at once instead of being retried on a backoff the
// server never asked for (see [hint.MaxSaneWait]; the values are parsed by
// the rules of internal/hint, which the pacer shares).
const maxSaneWait = hint.MaxSaneWait

// resetHeader names a reset header, the remaining-count header of the same
// dimension, and the source name reported for it.
type resetHeader struct{ remaining, reset, source string }

// anthropicResets are the dimensions of anthropic-ratelimit-*.
var anthropicResets = [...]resetHeader{
	{"Anthropic-Ratelimit-Requests-Remaining", "Anthropic-Ratelimit-Requests-Reset", "anthropic-ratelimit-requests-reset"},
	{"Anthropic-Ratelimit-Tokens-Remaining", "Anthropic-Ratelimit-Tokens-Reset", "anthropic-ratelimit-tokens-reset"},
	{"Anthropic-Ratelimit-Input-Tokens-Remaining", "Anthropic-Ratelimit-Input-Tokens-Reset", "anthropic-ratelimit-input-tokens-reset"},
	{"Anthropic-Ratelimit-Output-Tokens-Remaining", "Anthropic-Ratelimit-Output-Tokens-Reset", "anthropic-ratelimit-output-tokens-reset"},
}

// openAIResets are the dimensions of x-ratelimit-* (OpenAI, Groq).
var openAIResets = [...]resetHeader{
	{"X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests", "x-ratelimit-reset-requests"},
	{"X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Tokens", "x-ratelimit-reset-tokens"},
}

// azureResets are Azure's nonstandard x-rate-limit-reset-* (seconds).
var azureResets = [...]resetHeader{
	{"", "X-Rate-Limit-Reset-Tokens", "x-rate-limit-reset-tokens"},
	{"", "X-Rate-Limit-Reset-Requests", "x-rate-limit-reset-requests"},
}

// waitHint finds the wait the server asked for, trying the sources in the
// order of gateway-errors.md §6: retry-after-ms, Retry-After, Gemini
// RetryInfo.retryDelay, anthropic-ratelimit-*-reset and
// x-ratelimit-reset-* of an exhausted dimension, x-rate-limit-reset-tokens,
// OpenRouter metadata.headers.X-RateLimit-Reset, data.retry_after, and
// finally the message text. Junk values are skipped. text is the
// lower-cased message text. The hint is found whatever the class: whether
// to wait for it is the retry layer's decision.
func waitHint(h http.Header, bi *bodyInfo, text string) (time.Duration, string) {
	if d, ok := hint.ParseMillis(h.Get("Retry-After-Ms")); ok {
		return d, "retry-after-ms"
	}
	now := referenceTime(h)
	if d, ok := parseRetryAfter(h.Get("Retry-After"), now); ok {
		return d, "retry-after"
	}
	e := bi.container()
	for _, rd := range [...]string{e.retryDelay, bi.nested.retryDelay} {
		if d, ok := hint.ParseDuration(rd); ok {
			return d, "body:retryDelay"
		}
	}
	if d, src := exhaustedReset(h, now); d > 0 {
		return d, src
	}
	for _, r := range azureResets {
		if d, ok := hint.ParseSeconds(h.Get(r.reset)); ok {
			return d, r.source
		}
	}
	for _, v := range [...]string{e.resetHeader, bi.nested.resetHeader} {
		if d, ok := hint.ParseReset(v, now); ok {
			return d, "body:x-ratelimit-reset"
		}
	}
	if d, ok := hint.ParseSeconds(bi.retryAfter); ok {
		return d, "body:retry_after"
	}
	if d, ok := messageWait(text, now); ok {
		return d, "message"
	}
	return 0, ""
}

// referenceTime is the server's clock (the Date header), for hints given as
// an absolute time; the local clock when there is no valid Date.
func referenceTime(h http.Header) time.Time {
	if d := h.Get("Date"); d != "" {
		if t, err := http.ParseTime(d); err == nil {
			return t
		}
	}
	return time.Now()
}

// exhaustedReset returns the longest reset time among the rate-limit
// dimensions whose remaining count is 0: Anthropic's RFC 3339
// anthropic-ratelimit-*-reset, then OpenAI/Groq's Go-duration
// x-ratelimit-reset-requests/tokens.
func exhaustedReset(h http.Header, now time.Time) (time.Duration, string) {
	var best time.Duration
	var src string
	for _, r := range anthropicResets {
		if strings.TrimSpace(h.Get(r.remaining)) != "0" {
			continue
		}
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(h.Get(r.reset)))
		if err != nil {
			continue
		}
		if d, ok := hint.SaneWait(t.Sub(now)); ok && d > best {
			best, src = d, r.source
		}
	}
	if best > 0 {
		return best, src
	}
	for _, r := range openAIResets {
		if strings.TrimSpace(h.Get(r.remaining)) != "0" {
			continue
		}
		if d, ok := hint.ParseDuration(h.Get(r.reset)); ok && d > best {
			best, src = d, r.source
		}
	}
	return best, src
}

// parseRetryAfter parses a Retry-After value: seconds (integer or float) or
// an HTTP-date, taken relative to now (the response's Date).
func parseRetryAfter(s string, now time.Time) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	if c := s[0]; c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' {
		return hint.ParseSeconds(s)
	}
	t, err := http.ParseTime(s)
	if err != nil {
		return 0, false
	}
	return hint.SaneWait(t.Sub(now))
}

// waitPhrases introduce a wait in message text ("Please try again in
// 644ms", "Please retry in 47.17s", "retry after 86400 seconds").
var waitPhrases = [...]string{"try again in ", "retry in ", "retry after ", "retry-after: ", "retry-after "}

// resetPhrases introduce an absolute reset time in message text ("resets at
// 2026-05-15T15:00:00Z").
var resetPhrases = [...]string{"resets at ", "reset at "}

// messageWait finds the earliest wait stated in lower-cased message text.
func messageWait(text string, now time.Time) (time.Duration, bool) {
	best, bestAt := time.Duration(0), -1
	try := func(at int, d time.Duration, ok bool) {
		if ok && (bestAt < 0 || at < bestAt) {
			best, bestAt = d, at
		}
	}
	for _, p := range waitPhrases {
		for off := 0; off < len(text); {
			i := strings.Index(text[off:], p)
			if i < 0 {
				break
			}
			at := off + i
			off = at + len(p)
			d, ok := durationPhrase(text[off:])
			try(at, d, ok)
		}
	}
	for _, p := range resetPhrases {
		if i := strings.Index(text, p); i >= 0 {
			tok := text[i+len(p):]
			if j := strings.IndexAny(tok, " ,;)\n"); j >= 0 {
				tok = tok[:j]
			}
			tok = strings.TrimRight(tok, ".")
			if t, err := time.Parse(time.RFC3339, strings.ToUpper(tok)); err == nil {
				d, ok := hint.SaneWait(t.Sub(now))
				try(i, d, ok)
			}
		}
	}
	return best, bestAt >= 0
}

// durationPhrase parses the duration at the start of s: a Go duration
// ("644ms", "1m0.363142857s", "6.780999999s") or a number and a unit word
// ("2 seconds", "86400 seconds", "5 minutes").
func durationPhrase(s string) (time.Duration, bool) {
	s = strings.TrimLeft(s, " ~")
	j := 0
	for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] >= 'a' && s[j] <= 'z') {
		j++
	}
	if j == 0 || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	if d, err := time.ParseDuration(strings.TrimRight(s[:j], ".")); err == nil {
		return hint.SaneWait(d)
	}
	k := 0
	for k < len(s) && (s[k] >= '0' && s[k] <= '9' || s[k] == '.') {
		k++
	}
	f, err := strconv.ParseFloat(strings.TrimRight(s[:k], "."), 64)
	if err != nil {
		return 0, false
	}
	rest := strings.TrimLeft(s[k:], " ")
	w := 0
	for w < len(rest) && rest[w] >= 'a' && rest[w] <= 'z' {
		w++
	}
	var unit time.Duration
	switch rest[:w] {
	case "ms", "msec", "msecs", "millisecond", "milliseconds":
		unit = time.Millisecond
	case "s", "sec", "secs", "second", "seconds":
		unit = time.Second
	case "m", "min", "mins", "minute", "minutes":
		unit = time.Minute
	case "h", "hr", "hrs", "hour", "hours":
		unit = time.Hour
	case "d", "day", "days":
		unit = 24 * time.Hour
	default:
		return 0, false
	}
	return hint.SecondsWait(f * unit.Seconds())
}
