package redact

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// Credentials that do not look like keys, one per place a credential
// travels: only knowing the request's own values catches them. Each is at
// least minSecretLen bytes.
var plainSecrets = []string{
	"0a1b2c3d4e5f60718293a4b5c6d7e8f9", // api-key (Azure: 32 hex digits)
	"S3CRETanthropicPlain01",           // x-api-key
	"S3CRETgoogPlain01",                // x-goog-api-key
	"S3CRETqueryKeyPlain01",            // ?key=
	"S3CRETqueryApiKeyDash01",          // ?api-key=
	"S3CRETaccessToken01",              // ?access_token=
	"S3CRETcustomToken01",              // X-Custom-Token (any header named like a secret)
	"S3CRETcookieSession01",            // Cookie
	"S3CRETbasicPassword01",            // Authorization: Basic, decoded
	"S3CRETbearerPlain01",              // Authorization: Bearer, not sk-…
	"S3CRETuserinfoPw01",               // user:password@host
}

// plainSecretRequest returns a request carrying plainSecrets; basic picks
// Basic over Bearer for the Authorization header.
func plainSecretRequest(t *testing.T, basic bool) *http.Request {
	t.Helper()
	u := &url.URL{Scheme: "http", Host: "gw.test", Path: "/openai/deployments/gpt-4o/chat/completions"}
	u.User = url.UserPassword("user", plainSecrets[10])
	u.RawQuery = "api-version=2024-10-21&key=" + plainSecrets[3] + "&api-key=" + plainSecrets[4] + "&access_token=" + plainSecrets[5]
	req, err := http.NewRequest(http.MethodPost, u.String(), strings.NewReader(`{"model":"gpt-4o"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("api-key", plainSecrets[0])
	req.Header.Set("x-api-key", plainSecrets[1])
	req.Header.Set("x-goog-api-key", plainSecrets[2])
	req.Header.Set("X-Custom-Token", plainSecrets[6])
	req.Header.Set("Cookie", "theme=dark; session="+plainSecrets[7])
	if basic {
		req.SetBasicAuth("user", plainSecrets[8])
	} else {
		req.Header.Set("Authorization", "Bearer "+plainSecrets[9])
	}
	return req
}

// TestRequestSecretsCollected: what RequestSecrets collects from each place
// a credential travels, and that values under minSecretLen are left out.
func TestRequestSecretsCollected(t *testing.T) {
	req := plainSecretRequest(t, true)
	req.URL.Path = "/bot123456:S3CRETtelegramTok/sendMessage"
	req.Header.Set("X-Short-Key", "abc123")            // too short to mask by value
	req.Header.Set("X-Request-Id", "S3CRETnotASecret") // not named like a secret
	got := RequestSecrets(req)
	for _, want := range append(slices.Clone(plainSecrets[:9]), "user:"+plainSecrets[8], plainSecrets[10], "123456:S3CRETtelegramTok") {
		if !slices.Contains(got, want) {
			t.Errorf("RequestSecrets misses %q; got %q", want, got)
		}
	}
	for _, not := range []string{"abc123", "S3CRETnotASecret", "user", "dark"} {
		if slices.Contains(got, not) {
			t.Errorf("RequestSecrets collects %q", not)
		}
	}
	for i := 1; i < len(got); i++ {
		if len(got[i]) > len(got[i-1]) {
			t.Errorf("RequestSecrets not longest first: %q", got)
			break
		}
	}
}

// TestReplace: every value goes, a longer one whole before a shorter one it
// contains.
func TestReplace(t *testing.T) {
	got := Replace("key S3CRETlong-S3CRET and S3CRET, twice: S3CRET", []string{"S3CRETlong-S3CRET", "S3CRET"})
	if want := "key REDACTED and REDACTED, twice: REDACTED"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestSecretHeader: the API-key headers, whatever their case, and names
// with a secret word in them; not the headers that carry no credential.
func TestSecretHeader(t *testing.T) {
	for _, name := range []string{"Authorization", "authorization", "Proxy-Authorization", "Api-Key", "api-key",
		"X-Api-Key", "x-goog-api-key", "Cookie", "Set-Cookie", "X-Session-Id", "X-Custom-Token",
		"X-Client-Secret", "X-Password", "X-Amz-Signature", "X-Amz-Credential", "Idempotency-Key"} {
		if !SecretHeader(name) {
			t.Errorf("SecretHeader(%q) = false, want true", name)
		}
	}
	for _, name := range []string{"Content-Type", "Accept", "X-Request-Id", "User-Agent", "X-Stainless-Retry-Count", "Traceparent"} {
		if SecretHeader(name) {
			t.Errorf("SecretHeader(%q) = true, want false", name)
		}
	}
}

// TestAPIKeys: the API key of each provider's place for it, named by where
// it travels; other secrets (cookies, idempotency keys, other parameters)
// are not API keys.
func TestAPIKeys(t *testing.T) {
	req := plainSecretRequest(t, false)
	req.Header.Set("Idempotency-Key", "per-request-0123456789")
	var got []string
	for where, v := range APIKeys(req) {
		got = append(got, where+"="+v)
	}
	want := []string{
		"Authorization=Bearer " + plainSecrets[9],
		"Api-Key=" + plainSecrets[0],
		"X-Api-Key=" + plainSecrets[1],
		"X-Goog-Api-Key=" + plainSecrets[2],
		"?key==" + plainSecrets[3],
	}
	if !slices.Equal(got, want) {
		t.Errorf("APIKeys:\n got %q\nwant %q", got, want)
	}
	bare, _ := http.NewRequest(http.MethodGet, "http://gw.test/v1/models?monkey=1", nil)
	for where, v := range APIKeys(bare) {
		t.Errorf("a request without a key: got %s=%s", where, v)
	}
	// Stopping early is honoured.
	n := 0
	for range APIKeys(req) {
		n++
		break
	}
	if n != 1 {
		t.Errorf("the loop ran %d times after a break", n)
	}
}

// TestAPIKeysAreMasked: every place APIKeys reads an API key from is one
// the masking rules cover, so that the key rate limits are told apart by is
// never recorded: the two come from one set of rules.
func TestAPIKeysAreMasked(t *testing.T) {
	for _, name := range apiKeyHeaders {
		if !SecretHeader(name) || !SecretHeader(strings.ToLower(name)) {
			t.Errorf("API-key header %s is not a secret header", name)
		}
	}
	if !SecretParam(apiKeyParam) {
		t.Errorf("API-key parameter %s is not a secret parameter", apiKeyParam)
	}
	req := plainSecretRequest(t, false)
	secrets := RequestSecrets(req)
	for where, v := range APIKeys(req) {
		if masked := Replace(v, secrets); strings.Contains(masked, strings.TrimPrefix(v, "Bearer ")) {
			t.Errorf("the API key in %s is not masked: %q", where, masked)
		}
	}
}
