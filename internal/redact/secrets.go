// Package redact masks what looks like a credential in text the library
// records or hands out (error messages, span statuses), and bounds its
// length. Package classify masks every Classification.Message with it, and
// the transport every message of its own.
package redact

// Secrets is, for now, a copy of the root package's redactSecrets
// (redact.go), which the branch that makes redaction an internal package
// moves here: package classify cannot import the root. Once that lands,
// the root calls Secrets and its copy goes (TestRedactCopiesAgree, in the
// root, holds the two together until then).

import "regexp"

// Redacted replaces every secret masked.
const Redacted = "REDACTED"

// secretPatterns are the API-key-like strings Secrets masks. Each
// keeps its first group and replaces the rest with REDACTED. A pattern runs
// only when s contains one of its hints (compared ignoring ASCII case), so
// that ordinary strings cost a few substring scans.
var secretPatterns = []struct {
	hints []string
	re    *regexp.Regexp
}{
	// Authorization: Bearer <token>.
	{[]string{"bearer"}, regexp.MustCompile(`(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{6,}`)},
	// OpenAI, Anthropic, OpenRouter, DeepSeek… keys: sk-…, sk_…, sk-ant-…, sk-or-v1-…
	{[]string{"sk-", "sk_", "rk-", "rk_"}, regexp.MustCompile(`(\b(?:sk|rk)[-_])[A-Za-z0-9_-]{6,}`)},
	// Google API keys.
	{[]string{"aiza"}, regexp.MustCompile(`(\bAIza)[0-9A-Za-z_-]{20,}`)},
	// JSON web tokens.
	{[]string{"eyj"}, regexp.MustCompile(`(\beyJ)[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*`)},
	// key=…, api_key=…, token=… in URLs quoted by error messages.
	{[]string{"key=", "token=", "secret=", "password=", "sig=", "signature=", "auth="},
		regexp.MustCompile(`(?i)((?:^|[?&;\s"'])(?:[a-z_-]*key|[a-z_-]*token|[a-z_-]*secret|password|sig|signature|auth)=)[^&\s"'#]+`)},
	// "x-api-key: …", "api-key=…", "Authorization: …" header dumps.
	{[]string{"api-key", "authorization"},
		regexp.MustCompile(`(?i)(\b(?:x-api-key|api-key|x-goog-api-key|authorization)["']?\s*[:=]\s*["']?(?:(?:bearer|basic)\s+)?)[A-Za-z0-9._~+/=-]{6,}`)},
}

// longToken matches opaque strings long enough to be keys; Secrets
// masks those that mix upper case, lower case and digits, as random keys do
// (request IDs, hex digests and UUIDs do not).
var longToken = regexp.MustCompile(`[A-Za-z0-9_+/-]{40,}`)

// Secrets masks API-key-like strings in s (an error message, a URL)
// before it is recorded: bearer tokens, sk-… keys, Google AIza… keys, JSON
// web tokens, credential query parameters, header dumps, and long
// random-looking tokens.
func Secrets(s string) string {
	for _, p := range secretPatterns {
		for _, h := range p.hints {
			if containsFold(s, h) {
				s = p.re.ReplaceAllString(s, "${1}"+Redacted)
				break
			}
		}
	}
	if !hasLongRun(s, 40) {
		return s
	}
	return longToken.ReplaceAllStringFunc(s, func(tok string) string {
		var up, low, dig bool
		for i := 0; i < len(tok); i++ {
			switch c := tok[i]; {
			case c >= 'A' && c <= 'Z':
				up = true
			case c >= 'a' && c <= 'z':
				low = true
			case c >= '0' && c <= '9':
				dig = true
			}
		}
		if up && low && dig {
			return Redacted
		}
		return tok
	})
}

// containsFold reports whether s contains sub (lower case ASCII), ignoring
// ASCII case.
func containsFold(s, sub string) bool {
	n := len(sub)
outer:
	for i := 0; i+n <= len(s); i++ {
		for j := 0; j < n; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				continue outer
			}
		}
		return true
	}
	return false
}

// hasLongRun reports whether s has n consecutive bytes that longToken
// matches.
func hasLongRun(s string, n int) bool {
	run := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '+', c == '/', c == '-':
			run++
			if run >= n {
				return true
			}
		default:
			run = 0
		}
	}
	return false
}
