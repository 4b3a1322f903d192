package llmtransport

import (
	"slices"
	"strings"
	"testing"

	"github.com/llmtransport/llmtransport/classify"
)

// TestRequestIDSpanHeadersFollowClassify checks that the attempt span's
// request-ID header attributes are derived from the classifier's table,
// one copy of which headers carry a request ID: the same headers in the
// same order, each recorded as http.response.header.<name in lower case>.
func TestRequestIDSpanHeadersFollowClassify(t *testing.T) {
	names := classify.RequestIDHeaders()
	if len(requestIDSpanHeaders) != len(names) {
		t.Fatalf("%d span headers, classify has %d", len(requestIDSpanHeaders), len(names))
	}
	for i, h := range requestIDSpanHeaders {
		if h.name != names[i] || string(h.key) != "http.response.header."+strings.ToLower(names[i]) {
			t.Errorf("span header %d = %q as %q, want %q as http.response.header.%s", i, h.name, h.key, names[i], strings.ToLower(names[i]))
		}
	}
	if !slices.Contains(names, "X-Request-Id") || !slices.Contains(names, "Request-Id") {
		t.Errorf("classify.RequestIDHeaders() = %v: the OpenAI and Anthropic headers are missing", names)
	}
}
