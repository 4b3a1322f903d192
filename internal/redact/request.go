package redact

import (
	"encoding/base64"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// The request's own credentials.
//
// Pattern masking ([Secrets]) finds keys that look like keys: sk-…, AIza…,
// bearer tokens, JWTs. A gateway that echoes the caller's key back in an
// error message can echo one that does not (Azure's 32 hex digits, a
// gateway's own key format, a cookie), so what the transport records or
// hands out also has the request's own credential values replaced by
// REDACTED: [RequestSecrets] collects them, [Replace] replaces them.
//
// Which headers and query parameters carry credentials is said once, here:
// apiKeyHeaders and apiKeyParam name where the API key travels, which
// [APIKeys] reads (the key rate limits belong to); [SecretHeader] and
// [SecretParam], which decide what is masked, take in those and anything
// named like a secret.

// minSecretLen is the length below which a credential is not masked by
// value: replacing every occurrence of a short string ("1234", "abc") would
// garble messages and mask nothing a key's owner would miss. Real API keys
// are 20 bytes and more; shorter ones are still masked where they appear
// as name=value, header dumps or key patterns.
const minSecretLen = 8

// apiKeyHeaders are the request headers that carry an API key, in their
// canonical form: Authorization (OpenAI and most gateways: Bearer),
// api-key (Azure), x-api-key (Anthropic), x-goog-api-key (Gemini).
var apiKeyHeaders = [...]string{"Authorization", "Api-Key", "X-Api-Key", "X-Goog-Api-Key"}

// apiKeyParam is the query parameter that carries an API key (Gemini's
// ?key=), and apiKeyName the name APIKeys gives it.
const (
	apiKeyParam = "key"
	apiKeyName  = "?key="
)

// secretWords are the words that make a header name a secret one, compared
// ignoring ASCII case.
var secretWords = [...]string{"auth", "token", "secret", "key", "cookie", "session", "password", "signature", "credential"}

// APIKeys returns the API keys req carries, as (where, value) pairs: each
// value of its API-key headers (Authorization, Api-Key, X-Api-Key,
// X-Goog-Api-Key: where is the canonical name), then each value of its
// ?key= query parameter (where is "?key="). They tell apart whose rate
// limit a 429 is; every one of them is also masked ([SecretHeader] and
// [SecretParam] report true for where they travel).
//
// The headers named like secrets but not listed here (cookies, sessions,
// idempotency keys, request tokens) are masked but do not name the caller:
// they may change from one request to the next.
func APIKeys(req *http.Request) iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for _, name := range apiKeyHeaders {
			for _, v := range req.Header[name] {
				if !yield(name, v) {
					return
				}
			}
		}
		if req.URL == nil || !strings.Contains(req.URL.RawQuery, apiKeyParam+"=") {
			return
		}
		for _, v := range req.URL.Query()[apiKeyParam] {
			if !yield(apiKeyName, v) {
				return
			}
		}
	}
}

// SecretHeader reports whether a header named name may carry a credential:
// the API-key headers of [APIKeys], Proxy-Authorization, cookies, and any
// name with token, secret, key, auth, session, password, signature or
// credential in it, whatever its case.
func SecretHeader(name string) bool {
	for _, h := range apiKeyHeaders {
		if strings.EqualFold(name, h) {
			return true
		}
	}
	for _, w := range secretWords {
		if ContainsFold(name, w) {
			return true
		}
	}
	return false
}

// Replace replaces each of vals in s by REDACTED. vals should be longest
// first, as [RequestSecrets] returns them, so that a value containing
// another is replaced whole.
func Replace(s string, vals []string) string {
	for _, v := range vals {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, Redacted)
		}
	}
	return s
}

// RequestSecrets returns the credentials req carries, as they may appear
// in text, longest first: the values of its secret headers (see
// [SecretHeader]) whole, without their scheme, and for Basic the decoded
// user:password, user and password; each cookie's value; the values of its
// credential query parameters (see [SecretParam]), as written and decoded;
// its URL's user name and password; a Telegram-style /bot<token>/ path
// segment. Values shorter than 8 bytes are left out (see minSecretLen).
func RequestSecrets(req *http.Request) []string {
	var out []string
	add := func(v string) {
		v = strings.TrimSpace(v)
		if len(v) >= minSecretLen {
			out = append(out, v)
		}
	}
	addEscaped := func(v string) {
		add(v)
		add(url.QueryEscape(v))
		add(url.PathEscape(v))
	}
	for name, vs := range req.Header {
		if !SecretHeader(name) {
			continue
		}
		cookie := ContainsFold(name, "cookie")
		for _, v := range vs {
			add(v)
			if scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " "); ok {
				add(cred)
				if strings.EqualFold(scheme, "basic") {
					if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred)); err == nil {
						user, pass, _ := strings.Cut(string(dec), ":")
						add(string(dec))
						add(user)
						add(pass)
					}
				}
			}
			if cookie {
				for part := range strings.SplitSeq(v, ";") {
					if _, val, ok := strings.Cut(part, "="); ok {
						add(val)
					}
				}
			}
		}
	}
	if u := req.URL; u != nil {
		if u.User != nil {
			addEscaped(u.User.Username())
			if p, ok := u.User.Password(); ok {
				addEscaped(p)
			}
		}
		for part := range strings.SplitSeq(u.RawQuery, "&") {
			name, val, ok := strings.Cut(part, "=")
			if !ok {
				continue
			}
			if un, err := url.QueryUnescape(name); err == nil {
				name = un
			}
			if !SecretParam(name) {
				continue
			}
			add(val)
			if uv, err := url.QueryUnescape(val); err == nil {
				addEscaped(uv)
			}
		}
		for seg := range strings.SplitSeq(u.Path, "/") {
			if tok, ok := botToken(seg); ok {
				add(tok)
			}
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		if d := len(b) - len(a); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	return slices.Compact(out)
}
