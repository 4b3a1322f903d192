package llmtransport

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// cannedRT answers every request at once with an empty 200, so that a
// benchmark through it measures the layers' own cost and nothing else.
type cannedRT struct{}

func (cannedRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: http.NoBody}, nil
}

// overheadBody is a 1 KB chat request naming its model first.
var overheadBody = `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("a", 1000) + `"}]}`

// overheadRoundTrip sends overheadBody through rt and reads the answer.
func overheadRoundTrip(rt http.RoundTripper) {
	req, _ := http.NewRequest("POST", "http://gw.test/v1/chat/completions", strings.NewReader(overheadBody))
	resp, _ := rt.RoundTrip(req)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// overheadVariants runs run for bare, the full transport, the transport
// without its breaker, and with shared state on.
func overheadVariants(b *testing.B, run func(*testing.B, http.RoundTripper)) {
	b.Run("bare", func(b *testing.B) { run(b, cannedRT{}) })
	b.Run("llmtransport", func(b *testing.B) { run(b, New(cannedRT{})) })
	b.Run("nobreaker", func(b *testing.B) { run(b, New(cannedRT{}, WithoutCircuitBreaker())) })
	// Shared state on, no live hold: must cost what "llmtransport" costs.
	b.Run("fleet", func(b *testing.B) { run(b, New(cannedRT{}, WithSharedState(nopState{}))) })
	b.Run("pacing", func(b *testing.B) { run(b, New(cannedRT{}, WithPacing())) })
}

// BenchmarkLayersOverhead measures what the transport's layers cost per
// request on their own, over a base transport that costs next to nothing:
// the difference between "llmtransport" and "bare" is our overhead in ns and
// allocations (the network round trip it adds to is tens of µs).
func BenchmarkLayersOverhead(b *testing.B) {
	overheadVariants(b, func(b *testing.B, rt http.RoundTripper) {
		b.ReportAllocs()
		for b.Loop() {
			overheadRoundTrip(rt)
		}
	})
}

// BenchmarkLayersOverheadParallel is BenchmarkLayersOverhead with 32
// concurrent callers per core on one model: what contention adds (the
// circuit's gobreaker mutex, the shared atomics).
func BenchmarkLayersOverheadParallel(b *testing.B) {
	overheadVariants(b, func(b *testing.B, rt http.RoundTripper) {
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				overheadRoundTrip(rt)
			}
		})
	})
}

// cannedJSONRT answers every request at once with a 200 carrying a 1 KB
// chat completion, typed JSON, so that a benchmark through it measures what
// looking at a success body's first key costs.
type cannedJSONRT struct{}

// cannedCompletion is a 1 KB chat completion.
var cannedCompletion = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"` + strings.Repeat("a", 900) + `"},"finish_reason":"stop"}]}`

func (cannedJSONRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(cannedCompletion)), ContentLength: int64(len(cannedCompletion)),
	}, nil
}

// BenchmarkLayersOverheadJSON is BenchmarkLayersOverhead with a 1 KB JSON
// completion to read: the first bytes of its body are looked at (to tell a
// completion from an error inside a 200) and put back.
func BenchmarkLayersOverheadJSON(b *testing.B) {
	run := func(b *testing.B, rt http.RoundTripper) {
		b.ReportAllocs()
		for b.Loop() {
			overheadRoundTrip(rt)
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, cannedJSONRT{}) })
	b.Run("llmtransport", func(b *testing.B) { run(b, New(cannedJSONRT{})) })
}
