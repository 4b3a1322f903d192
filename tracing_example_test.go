package llmtransport_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/llmtransport/llmtransport"
)

// A gateway fails once with 503, then answers. The call gets one span,
// "chat gpt-4o", with one HTTP span per attempt beneath it; the second
// attempt carries http.request.resend_count, each the gateway's request ID,
// and the key in the URL is redacted.
func ExampleWithTracerProvider() {
	var n atomic.Int32
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		w.Header().Set("X-Request-Id", fmt.Sprintf("req_%d", i))
		if i == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"id":"chatcmpl-1"}`)
	}))
	defer gateway.Close()

	// In an application: an SDK provider with an OTLP exporter, usually set
	// globally with otel.SetTracerProvider instead of passed here.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())

	client := &http.Client{Transport: llmtransport.New(nil,
		llmtransport.WithTracerProvider(tp),
		llmtransport.WithPropagators(propagation.TraceContext{}),
		llmtransport.WithBackoff(time.Millisecond, time.Millisecond),
	)}
	ctx := llmtransport.ContextWithModel(context.Background(), "gpt-4o")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
		gateway.URL+"/v1/chat/completions?key=secret", strings.NewReader(`{"model":"gpt-4o"}`))
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close() // ends the call's span

	show := []attribute.Key{"http.response.status_code", "http.request.resend_count",
		"llm.error.class", "llm.request_id", "llm.attempts"}
	for _, s := range spans.Ended() {
		fmt.Print(s.Name())
		for _, kv := range s.Attributes() {
			for _, k := range show {
				if kv.Key == k {
					fmt.Printf(" %s=%s", k, kv.Value.String())
				}
			}
			if kv.Key == "url.full" {
				fmt.Printf(" query=%s", kv.Value.AsString()[strings.IndexByte(kv.Value.AsString(), '?'):])
			}
		}
		for _, e := range s.Events() {
			fmt.Printf(" [%s]", e.Name)
		}
		fmt.Println()
	}
	// Output:
	// POST query=?key=REDACTED http.response.status_code=503 llm.error.class=upstream_transient llm.request_id=req_1
	// POST query=?key=REDACTED http.request.resend_count=1 http.response.status_code=200 llm.error.class=success llm.request_id=req_2
	// chat gpt-4o llm.attempts=2 llm.error.class=success http.response.status_code=200 llm.request_id=req_2 [retry scheduled]
}
