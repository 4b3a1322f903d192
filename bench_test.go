package llmtransport_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/internal/workload"
)

// The benchmarks below measure the transport against the bare base
// transport in the same run, on loopback, with allocations reported:
//
//	go test -run '^$' -bench . -benchmem
//
// Each has a "bare" sub-benchmark (the base http.Transport alone) next to
// the llmtransport one, so that ratios come from one run on one machine.

// benchServer starts a loopback server answering like an OpenAI-compatible
// API (workload.Upstream): /ok, /stream, and /dead counted in dead.
func benchServer(b *testing.B) (srv *httptest.Server, dead *atomic.Int64) {
	b.Helper()
	dead = new(atomic.Int64)
	srv = httptest.NewServer(workload.Upstream(dead))
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
			if err := workload.Send(rt, url, body); err != nil { // opens a connection
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			if !parallel {
				for b.Loop() {
					if err := workload.Send(rt, url, body); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := workload.Send(rt, url, body); err != nil {
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
	benchRoundTrips(b, "/ok", workload.Chat1K, false, bare, lt)
}

// BenchmarkSuccessParallel is BenchmarkSuccess from GOMAXPROCS goroutines
// (times -cpu), over as many connections.
func BenchmarkSuccessParallel(b *testing.B) {
	benchRoundTrips(b, "/ok", workload.Chat1K, true, bare, lt)
}

// BenchmarkLargeBody sends a 1 MB request whose "model" is the last key. The
// transport must neither copy the body (it has GetBody) nor decode it: its
// B/op should stay within 32 KiB of bare's.
func BenchmarkLargeBody(b *testing.B) {
	benchRoundTrips(b, "/ok", workload.Chat1M, false, bare, lt)
}

// BenchmarkTracing compares tracing off (the default global no-op provider)
// with tracing on: a real SDK provider, always sampling, batching to a
// discarding exporter.
func BenchmarkTracing(b *testing.B) {
	benchRoundTrips(b, "/ok", workload.Chat1K, false, bare,
		variant{"llmtransport-off", lt.wrap}, variant{"llmtransport-on", ltTraced.wrap})
}

// BenchmarkStream reads an event stream of workload.SSEEvents (200) chunks,
// the last with its finish reason, to its end.
// The transport peeks at the first event and watches the others go by
// (streamwatch.go).
func BenchmarkStream(b *testing.B) {
	benchRoundTrips(b, "/stream", workload.Chat1K, false, bare, lt)
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

// deadRun sends deadCalls calls through rt, all at once or one by one.
func deadRun(b *testing.B, rt http.RoundTripper, url string, burst bool) {
	b.Helper()
	workload.DeadCalls(rt, url, deadCalls, burst)
}
