// Package redact masks the secrets in what the transport records or hands
// out: API-key-like strings wherever they appear ([Secrets]), the
// credentials of a URL ([URL], [Query]), and a request's own credential
// values, which a gateway may echo in any shape ([RequestSecrets],
// [Replace]). It also names which request headers and query parameters
// carry credentials ([SecretHeader], [SecretParam]) and which of them are
// the API key a provider's rate limits belong to ([APIKeys]): one set of
// rules for masking and for telling callers apart. [Message] masks an
// error message and bounds its length, for package classify's
// Classification.Message and the transport's own messages.
//
// It is stdlib-only.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Redacted replaces every secret the transport would otherwise record.
const Redacted = "REDACTED"

// URL returns u as a string fit for the url.full attribute: without
// userinfo or fragment, with the value of every credential query parameter
// (see [SecretParam]) replaced by REDACTED, and with API-key-like strings
// masked by [Secrets].
func URL(u *url.URL) string {
	cp := *u
	cp.User = nil
	cp.Fragment, cp.RawFragment = "", ""
	if cp.RawQuery != "" {
		cp.RawQuery = Query(cp.RawQuery)
	}
	if p, ok := botPath(cp.Path); ok {
		cp.Path, cp.RawPath = p, ""
	}
	return Secrets(cp.String())
}

// botPath returns path with the token of each Telegram-style /bot<token>/
// segment replaced by REDACTED, and whether there was one.
func botPath(path string) (string, bool) {
	if !strings.Contains(path, "/bot") {
		return path, false
	}
	segs := strings.Split(path, "/")
	found := false
	for i, seg := range segs {
		if _, ok := botToken(seg); ok {
			segs[i], found = "bot"+Redacted, true
		}
	}
	return strings.Join(segs, "/"), found
}

// botToken returns the token of a Telegram-style path segment, bot<token>
// with a ':' in the token, and whether seg is one.
func botToken(seg string) (string, bool) {
	tok, ok := strings.CutPrefix(seg, "bot")
	return tok, ok && strings.IndexByte(tok, ':') > 0
}

// Query replaces the values of the credential parameters (see
// [SecretParam]) of the raw query q, keeping the order and encoding of the
// others.
func Query(q string) string {
	var b strings.Builder
	b.Grow(len(q))
	for i, part := range strings.Split(q, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		name, _, hasValue := strings.Cut(part, "=")
		un, err := url.QueryUnescape(name)
		if err != nil {
			un = name
		}
		if hasValue && SecretParam(un) {
			b.WriteString(name)
			b.WriteString("=" + Redacted)
			continue
		}
		b.WriteString(part)
	}
	return b.String()
}

// SecretParam reports whether a query parameter named name carries a
// credential: key (the API key of [APIKeys]), api_key, api-key, apiKey,
// x-goog-api-key, access_token, token, secret, password, auth, signatures
// (sig, X-Amz-Signature, X-Goog-Signature…) and the like.
func SecretParam(name string) bool {
	n := strings.ToLower(name)
	if n == apiKeyParam {
		return true
	}
	switch n {
	case "auth", "authorization", "sig", "signature", "code", "credential",
		"x-amz-credential", "x-goog-credential", "awsaccesskeyid":
		return true
	}
	return strings.HasSuffix(n, "key") || strings.Contains(n, "token") ||
		strings.Contains(n, "secret") || strings.Contains(n, "password") ||
		strings.HasSuffix(n, "signature")
}

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

// longToken matches opaque strings long enough to be keys; Secrets masks those that mix upper case, lower case and digits, as random keys do
// (request IDs, hex digests and UUIDs do not).
var longToken = regexp.MustCompile(`[A-Za-z0-9_+/-]{40,}`)

// Secrets masks API-key-like strings in s (an error message, a URL) before
// it is recorded: bearer tokens, sk-… keys, Google AIza… keys, JSON web
// tokens, credential query parameters, header dumps, and long
// random-looking tokens. Each keeps what says what it is ("Bearer ",
// "sk-", "key=") and the rest becomes REDACTED.
func Secrets(s string) string {
	for _, p := range secretPatterns {
		for _, h := range p.hints {
			if ContainsFold(s, h) {
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

// ContainsFold reports whether s contains sub (lower case ASCII), ignoring
// ASCII case, without allocating: the test behind the patterns' hints and
// the header rules, and the transport's content-type check.
func ContainsFold(s, sub string) bool {
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
