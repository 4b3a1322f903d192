package llmtransport

import (
	"strings"
	"testing"

	"github.com/llmtransport/llmtransport/internal/redact"
)

// TestRedactCopiesAgree holds together, until redaction moves into
// internal/redact (another branch of issue 15), the two copies of the
// secret patterns: the root's redactSecrets, which tracing and errors use,
// and redact.Secrets, which package classify masks messages with. Delete
// this test with the root's copy.
func TestRedactCopiesAgree(t *testing.T) {
	inputs := []string{
		"", "plain text", "the task-force disk_usage is fine",
		"Incorrect API key provided: sk-proj-abc123DEF456ghi.",
		"key sk-ant-api03-AbCdEf_123-xyz rejected",
		"Authorization: Bearer abc.def-ghi_jkl", "authorization=Basic dXNlcjpwYXNzd29yZA==",
		`Post "https://g.example/v1/x?key=AIzaSyA-1234567890abcdefghijklmnopqrstu&alt=sse": EOF`,
		"bad token=abcd1234 here", "header x-api-key: abcdef123456 invalid", `{"api-key":"S3CRETazureApiKey0123"}`,
		"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig_part",
		"opaque ABCdef0123456789ABCdef0123456789ABCdef0123 token",
		"Rate limit reached for gpt-4o (request id: req_0123456789abcdef0123456789abcdef)",
		"trace 4bf92f3577b34da6a3ce929d0e0e4736 sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"https://u:S3CRETuserinfoPassword@gw.test/v1?api_key=S3CRETapiKeyParam0123&sig=abc&X-Amz-Signature=def",
		strings.Repeat("aB3", 30) + " and rk_live_0123456789",
	}
	for _, in := range inputs {
		if got, want := redact.Secrets(in), redactSecrets(in); got != want {
			t.Errorf("redact.Secrets(%q) = %q, redactSecrets = %q", in, got, want)
		}
	}
}
