package llmtransport_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/llmtransport/llmtransport"
)

// The benchmarks below measure the transport against the bare base
// transport in the same run, on loopback, with allocations reported:
//
//	go test -run '^$' -bench . -benchmem
//
// Each has a "bare" sub-benchmark (the base http.Transport alone) next to
// the llmtransport one, so that ratios come from one run on one machine.

// benchBodies are the request bodies of the benchmarks.
var (
	// chat1K is a 1 KB chat completion request, "model" first.
	chat1K = chatBody(1<<10, false)
	// chat1M is a 1 MB chat completion request whose "model" is the last
	// top-level key, so that finding it means skipping the whole body.
	chat1M = chatBody(1<<20, true)
)

// chatBody returns a JSON chat completion request of about size bytes: a
// few messages with escaped quotes and nested objects, and "model" first or
// last.
func chatBody(size int, modelLast bool) []byte {
	var b bytes.Buffer
	b.WriteString(`{`)
	if !modelLast {
		b.WriteString(`"model":"gpt-4o-mini",`)
	}
	b.WriteString(`"temperature":0.2,"metadata":{"user":"u-42","tags":["a","b",{"model":"not-this-one"}]},"messages":[`)
	line := `Summarise the \"quarterly\" report: revenue, costs {and} [margins]. `
	for i := 0; b.Len() < size-256; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		fmt.Fprintf(&b, `{"role":%q,"content":"`, role)
		for j := 0; j < 16 && b.Len() < size-256; j++ {
			b.WriteString(line)
		}
		b.WriteString(`"}`)
	}
	b.WriteString(`]`)
	if modelLast {
		b.WriteString(`,"model":"gpt-4o-mini"`)
	}
	b.WriteString(`}`)
	return b.Bytes()
}

// chatResponse is a typical non-streamed chat completion, about 1 KB.
var chatResponse = []byte(`{"id":"chatcmpl-9xYz","object":"chat.completion","created":1735689600,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"` +
	strings.Repeat("The quarterly report shows steady revenue. ", 18) +
	`"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":240,"completion_tokens":160,"total_tokens":400},"system_fingerprint":"fp_0123456789"}`)

// sseEvents is the number of chunks of the streamed response.
const sseEvents = 32

// sseChunk is one chunk of the streamed response.
var sseChunk = []byte(`data: {"id":"chatcmpl-9xYz","object":"chat.completion.chunk","created":1735689600,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}` + "\n\n")

// benchServer starts a loopback server answering like an OpenAI-compatible
// API: /ok with chatResponse, /stream with an event stream, /dead with a 503
// (counted in dead).
func benchServer(b *testing.B) (srv *httptest.Server, dead *atomic.Int64) {
	b.Helper()
	dead = new(atomic.Int64)
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-request-id", "req-0123456789")
		w.Write(chatResponse)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		f := w.(http.Flusher)
		for range sseEvents {
			w.Write(sseChunk)
			f.Flush()
		}
		io.WriteString(w, "data: [DONE]\n\n")
	})
	mux.HandleFunc("/dead", func(w http.ResponseWriter, r *http.Request) {
		dead.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":{"message":"upstream unavailable","type":"server_error","code":"service_unavailable"}}`)
	})
	srv = httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	return srv, dead
}

// baseTransport returns a fresh base transport with room for every
// connection a parallel benchmark opens.
func baseTransport(b *testing.B) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 1024
	b.Cleanup(tr.CloseIdleConnections)
	return tr
}

// roundTrip sends body to url through rt and reads the response to its end.
func roundTrip(rt http.RoundTripper, url string, body []byte) error {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-bench")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("got status %d, want 200", resp.StatusCode)
	}
	return nil
}

// discardExporter is a span exporter that drops every span.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// sdkProvider returns a real SDK tracer provider that samples every span and
// exports them through a batch processor to nowhere.
func sdkProvider(b *testing.B) *sdktrace.TracerProvider {
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(discardExporter{}),
	)
	b.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp
}

// variant is one transport under benchmark.
type variant struct {
	name string
	wrap func(b *testing.B, base http.RoundTripper) http.RoundTripper
}

var (
	bare = variant{"bare", func(_ *testing.B, base http.RoundTripper) http.RoundTripper { return base }}
	lt   = variant{"llmtransport", func(_ *testing.B, base http.RoundTripper) http.RoundTripper {
		return llmtransport.New(base)
	}}
	ltTraced = variant{"llmtransport-tracing", func(b *testing.B, base http.RoundTripper) http.RoundTripper {
		return llmtransport.New(base, llmtransport.WithTracerProvider(sdkProvider(b)))
	}}
)

// benchRoundTrips runs one sub-benchmark per variant, each sending body to
// path, serially or from parallel goroutines.
func benchRoundTrips(b *testing.B, path string, body []byte, parallel bool, variants ...variant) {
	srv, _ := benchServer(b)
	url := srv.URL + path
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			rt := v.wrap(b, baseTransport(b))
			if err := roundTrip(rt, url, body); err != nil { // opens a connection
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			if !parallel {
				for b.Loop() {
					if err := roundTrip(rt, url, body); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := roundTrip(rt, url, body); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSuccess is the hot path: a 1 KB chat request answered 200 with a
// 1 KB JSON body, tracing off (the global provider, a no-op by default).
func BenchmarkSuccess(b *testing.B) {
	benchRoundTrips(b, "/ok", chat1K, false, bare, lt)
}

// BenchmarkSuccessParallel is BenchmarkSuccess from GOMAXPROCS goroutines
// (times -cpu), over as many connections.
func BenchmarkSuccessParallel(b *testing.B) {
	benchRoundTrips(b, "/ok", chat1K, true, bare, lt)
}

// BenchmarkLargeBody sends a 1 MB request whose "model" is the last key. The
// transport must neither copy the body (it has GetBody) nor decode it: its
// B/op should stay within 32 KiB of bare's.
func BenchmarkLargeBody(b *testing.B) {
	benchRoundTrips(b, "/ok", chat1M, false, bare, lt)
}

// BenchmarkTracing compares tracing off (the default global no-op provider)
// with tracing on: a real SDK provider, always sampling, batching to a
// discarding exporter.
func BenchmarkTracing(b *testing.B) {
	benchRoundTrips(b, "/ok", chat1K, false, bare,
		variant{"llmtransport-off", lt.wrap}, variant{"llmtransport-on", ltTraced.wrap})
}

// BenchmarkStream reads a 200 event stream of sseEvents chunks to its end.
// The transport peeks at the first event only.
func BenchmarkStream(b *testing.B) {
	benchRoundTrips(b, "/stream", chat1K, false, bare, lt)
}

// deadCalls is the number of calls of a dead-upstream run.
const deadCalls = 200

// deadOptions make the transport's retry waits short, so that a run takes
// milliseconds; the budget and the breaker keep their defaults.
var deadOptions = []llmtransport.Option{llmtransport.WithBackoff(time.Millisecond, 8*time.Millisecond)}

// BenchmarkDeadUpstream sends deadCalls calls to an upstream that answers
// every request 503, through a fresh transport each time, and reports how
// many requests reached the upstream (attempts/run). "burst" sends them all
// at once; "paced" one after the other. bare makes exactly deadCalls
// attempts: the ideal is close to it in a burst and far below it paced
// (the breaker opens).
func BenchmarkDeadUpstream(b *testing.B) {
	srv, dead := benchServer(b)
	url := srv.URL + "/dead"
	for _, v := range []variant{bare, lt} {
		for _, mode := range []string{"burst", "paced"} {
			b.Run(v.name+"/"+mode, func(b *testing.B) {
				base := baseTransport(b)
				b.ReportAllocs()
				dead.Store(0)
				for b.Loop() {
					var rt http.RoundTripper = base
					if v.name != "bare" {
						rt = llmtransport.New(base, deadOptions...)
					}
					deadRun(b, rt, url, mode == "burst")
				}
				b.ReportMetric(float64(dead.Load())/float64(b.N), "attempts/run")
			})
		}
	}
}

// deadRun sends deadCalls calls through rt, all at once or one by one, and
// reads every response.
func deadRun(b *testing.B, rt http.RoundTripper, url string, burst bool) {
	one := func() {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(chat1K))
		req.Header.Set("Content-Type", "application/json")
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return // an open circuit, for instance
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if !burst {
		for range deadCalls {
			one()
		}
		return
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range deadCalls {
		wg.Go(func() {
			<-start
			one()
		})
	}
	close(start)
	wg.Wait()
}
