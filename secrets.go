package llmtransport

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// The request's own credentials.
//
// Pattern masking (redactSecrets) finds keys that look like keys: sk-…,
// AIza…, bearer tokens, JWTs. A gateway that echoes the caller's key back
// in an error message can echo one that does not (Azure's 32 hex digits, a
// gateway's own key format, a cookie), so everything the transport records
// or hands out — span statuses and attributes, Classification.Message, Code
// and RequestID as hooks see them, RetryEvent.Err, the error returned —
// also has the request's own credential values replaced by REDACTED.
//
// They are collected once per call, at the first string that needs
// masking: a call that succeeds at once never collects them.

// minSecretLen is the length below which a credential is not masked by
// value: replacing every occurrence of a short string ("1234", "abc") would
// garble messages and mask nothing a key's owner would miss. Real API keys
// are 20 bytes and more; shorter ones are still masked where they appear
// as name=value, header dumps or key patterns.
const minSecretLen = 8

// secrets are the credentials of one call's request, collected on first
// use.
type secrets struct {
	req  *http.Request
	vals []string
	done bool
}

func (s *secrets) list() []string {
	if !s.done {
		s.vals, s.done = requestSecrets(s.req), true
	}
	return s.vals
}

// mask returns str with the request's credentials and anything that looks
// like a key masked.
func (s *secrets) mask(str string) string {
	if str == "" {
		return ""
	}
	return redactSecrets(replaceSecrets(str, s.list()))
}

// maskValues returns str with the request's credentials masked, and
// nothing else: for codes and request IDs, which pattern masking could
// mistake for keys.
func (s *secrets) maskValues(str string) string {
	if str == "" {
		return ""
	}
	return replaceSecrets(str, s.list())
}

// maskErr returns err when its text names no credential, else an error
// whose text is masked and which wraps err: errors.Is and errors.As find
// what err wraps (a *url.Error found that way still holds the URL as it
// was: it is the caller's own).
func (s *secrets) maskErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*maskedError); ok {
		return err
	}
	msg := err.Error()
	if m := s.mask(msg); m != msg {
		return &maskedError{msg: m, err: err}
	}
	return err
}

// maskedError is an error whose text had credentials masked.
type maskedError struct {
	msg string
	err error
}

func (e *maskedError) Error() string { return e.msg }
func (e *maskedError) Unwrap() error { return e.err }

// replaceSecrets replaces each of vals (longest first) in str by REDACTED.
func replaceSecrets(str string, vals []string) string {
	for _, v := range vals {
		if strings.Contains(str, v) {
			str = strings.ReplaceAll(str, v, redacted)
		}
	}
	return str
}

// secretHeader reports whether a header named name may carry a credential:
// Authorization, Proxy-Authorization, api-key, x-api-key, x-goog-api-key,
// cookies, and any name with token, secret, key, auth, session, password,
// signature or credential in it.
func secretHeader(name string) bool {
	for _, w := range [...]string{"auth", "token", "secret", "key", "cookie", "session", "password", "signature", "credential"} {
		if containsFold(name, w) {
			return true
		}
	}
	return false
}

// requestSecrets returns the credentials req carries, as they may appear
// in text, longest first: the values of its secret headers (see
// secretHeader) whole, without their scheme, and for Basic the decoded
// user:password, user and password; each cookie's value; the values of its
// credential query parameters (see sensitiveParam), as written and
// decoded; its URL's user name and password; a Telegram-style /bot<token>/
// path segment. Values shorter than minSecretLen are left out.
func requestSecrets(req *http.Request) []string {
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
		if !secretHeader(name) {
			continue
		}
		cookie := containsFold(name, "cookie")
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
			if !sensitiveParam(name) {
				continue
			}
			add(val)
			if uv, err := url.QueryUnescape(val); err == nil {
				addEscaped(uv)
			}
		}
		for seg := range strings.SplitSeq(u.Path, "/") {
			if tok, ok := strings.CutPrefix(seg, "bot"); ok && strings.IndexByte(tok, ':') > 0 {
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
