package redact

import (
	"net/url"
	"testing"
)

// TestURL: userinfo and fragments go, credential parameters and key-like
// path segments are masked, the rest of the URL is kept as written.
func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pass@gw.example/v1/chat/completions":                              "https://gw.example/v1/chat/completions",
		"https://g.example/v1beta/models/m:generateContent?key=AIzaXYZ&alt=sse":         "https://g.example/v1beta/models/m:generateContent?key=REDACTED&alt=sse",
		"https://gw.example/x?api_key=1&api-key=2&apiKey=3&access_token=4&token=5&q=ok": "https://gw.example/x?api_key=REDACTED&api-key=REDACTED&apiKey=REDACTED&access_token=REDACTED&token=REDACTED&q=ok",
		"https://s3.example/o?X-Amz-Signature=abc&X-Amz-Credential=def&sig=ghi":         "https://s3.example/o?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&sig=REDACTED",
		"https://gw.example/v1/models#frag":                                             "https://gw.example/v1/models",
		"https://gw.example/keys/sk-abcdefghijklmnop/usage":                             "https://gw.example/keys/sk-REDACTED/usage",
		"http://127.0.0.1:8080/v1/chat/completions?x=1":                                 "http://127.0.0.1:8080/v1/chat/completions?x=1",
		"http://gw.test/bot123456:S3CRETtelegramTok/chat/completions":                   "http://gw.test/botREDACTED/chat/completions",
		"http://gw.test/bot123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQrr/v1/chat":      "http://gw.test/botREDACTED/v1/chat",
		"http://gw.test/v1/bots/list":                                                   "http://gw.test/v1/bots/list",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := URL(u); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSecrets: key-like strings in messages are masked, keeping what says
// what they are; request IDs, trace IDs, digests and plain words are not.
func TestSecrets(t *testing.T) {
	for in, want := range map[string]string{
		"Incorrect API key provided: sk-proj-abc123DEF456ghi.":                                                        "Incorrect API key provided: sk-REDACTED.",
		"key sk-ant-api03-AbCdEf_123-xyz rejected":                                                                    "key sk-REDACTED rejected",
		"Authorization: Bearer abc.def-ghi_jkl":                                                                       "Authorization: Bearer REDACTED",
		`Post "https://g.example/v1/x?key=AIzaSyA-1234567890abcdefghijklmnopqrstu&alt=sse": EOF`:                      `Post "https://g.example/v1/x?key=REDACTED&alt=sse": EOF`,
		"bad token=abcd1234 here":                                                                                     "bad token=REDACTED here",
		"header x-api-key: abcdef123456 invalid":                                                                      "header x-api-key: REDACTED invalid",
		"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig_part":                                               "jwt eyJREDACTED",
		"opaque ABCdef0123456789ABCdef0123456789ABCdef0123 token":                                                     "opaque REDACTED token",
		"Rate limit reached for gpt-4o (request id: req_0123456789abcdef0123456789abcdef)":                            "Rate limit reached for gpt-4o (request id: req_0123456789abcdef0123456789abcdef)",
		"trace 4bf92f3577b34da6a3ce929d0e0e4736 sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08": "trace 4bf92f3577b34da6a3ce929d0e0e4736 sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"the task-force disk_usage is fine":                                                                           "the task-force disk_usage is fine",
		"":                                                                                                            "",
	} {
		if got := Secrets(in); got != want {
			t.Errorf("Secrets(%q)\n got %q\nwant %q", in, got, want)
		}
	}
}

// TestQuery: only the values of credential parameters change; names, order,
// encoding and parameters without a value are kept.
func TestQuery(t *testing.T) {
	for in, want := range map[string]string{
		"key=abc&alt=sse":             "key=REDACTED&alt=sse",
		"a=1&X%2DApi%2DKey=s3&b":      "a=1&X%2DApi%2DKey=REDACTED&b",
		"token&model=gpt-4o":          "token&model=gpt-4o",
		"q=a%20b&access_token=t&q=ok": "q=a%20b&access_token=REDACTED&q=ok",
		"":                            "",
	} {
		if got := Query(in); got != want {
			t.Errorf("Query(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestContainsFold: a lower-case needle found whatever the case of the
// haystack, and not found when absent.
func TestContainsFold(t *testing.T) {
	for _, tt := range []struct {
		s, sub string
		want   bool
	}{
		{"Application/JSON; charset=utf-8", "json", true},
		{"X-Goog-Api-Key", "key", true},
		{"text/event-stream", "json", false},
		{"", "", true},
		{"ab", "abc", false},
	} {
		if got := ContainsFold(tt.s, tt.sub); got != tt.want {
			t.Errorf("ContainsFold(%q, %q) = %v, want %v", tt.s, tt.sub, got, tt.want)
		}
	}
}
