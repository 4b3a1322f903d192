package llmtransport

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// modelRT answers at once: 503 to requests for model "a", an empty 200 to
// the others.
type modelRT struct{}

func (modelRT) RoundTrip(r *http.Request) (*http.Response, error) {
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if strings.HasPrefix(string(b), `{"model":"a"`) {
		return &http.Response{StatusCode: 503, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(`{"error":{"message":"down","type":"server_error"}}`))}, nil
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: http.NoBody}, nil
}

// fallbackBenchBody is overheadBody (1 KB) asking for model m.
func fallbackBenchBody(m string) string {
	return strings.Replace(overheadBody, `"model":"gpt-4o"`, `"model":"`+m+`"`, 1)
}

// BenchmarkFallbackCircuitOpen measures what answering from the fallback
// costs when the primary's circuit is open: "direct" asks b itself,
// "fallback" asks a, whose circuit is open, and gets b's answer with no
// attempt to a. The difference is the fallback layer's own work (the
// rewritten body, the second circuit, the headers); the base transport
// costs next to nothing.
func BenchmarkFallbackCircuitOpen(b *testing.B) {
	tr := New(modelRT{}, WithMaxRetries(0), WithBreakerOpenTimeout(time.Hour), WithFallbacks(map[string][]string{"a": {"b"}}))
	call := func(m string) *http.Response {
		req, _ := http.NewRequest("POST", "http://gw.test/v1/chat/completions", strings.NewReader(fallbackBenchBody(m)))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for range 3 {
		call("a") // fails, falls back, and opens a's circuit
	}
	if resp := call("a"); resp.Header.Get(HeaderFallbackReason) != "circuit_open" {
		b.Fatalf("a's circuit is not open: %v", resp.Header)
	}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			call("b")
		}
	})
	b.Run("fallback", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			call("a")
		}
	})
}
