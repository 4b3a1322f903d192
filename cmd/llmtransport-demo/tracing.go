package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracing is where the transport's spans go: to an OTLP/HTTP endpoint when
// OTEL_EXPORTER_OTLP_ENDPOINT is set and the demo is built with -tags otlp
// (otlp.go: the SDK and the exporter, which brings gRPC and protobuf, would
// double the first build's time), else to memory (recorder.go).
type tracing struct {
	tp       trace.TracerProvider
	rec      *recorder // nil when exporting
	endpoint string
	service  string                          // the service.name the spans are exported under
	note     string                          // printed with the span tree
	flush    func(ctx context.Context) error // nil when there is nothing to flush
}

func setupTracing(ctx context.Context) (*tracing, error) {
	ep := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	if ep != "" {
		// The exporter reads the endpoint (and OTEL_EXPORTER_OTLP_HEADERS…)
		// from the environment.
		t, err := setupOTLP(ctx, ep)
		if err != nil || t != nil {
			return t, err
		}
	}
	rec := newRecorder()
	t := &tracing{tp: rec, rec: rec}
	if ep != "" {
		t.note = fmt.Sprintf("OTEL_EXPORTER_OTLP_ENDPOINT is set, but this build has no OTLP exporter: the spans stayed in memory. To export them:\n  OTEL_EXPORTER_OTLP_ENDPOINT=%s go run -tags otlp .", ep)
	}
	return t, nil
}

func (t *tracing) provider() trace.TracerProvider { return t.tp }

// shutdown flushes the spans still buffered.
func (t *tracing) shutdown(ctx context.Context) error {
	if t.flush == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return t.flush(ctx)
}

// printTree prints the span tree of the recorded trace with the most spans
// (a call that was retried), or says where the spans went.
func (t *tracing) printTree(w io.Writer) {
	if t.rec == nil {
		fmt.Fprintf(w, "\nSpans were sent to %s over OTLP/HTTP (service %s).\n", t.endpoint, t.service)
		return
	}
	if t.note != "" {
		fmt.Fprintf(w, "\n%s\n", t.note)
	}
	spans := t.rec.Ended()
	byTrace := map[trace.TraceID][]*recordedSpan{}
	var best trace.TraceID
	for _, s := range spans {
		id := s.SpanContext().TraceID()
		byTrace[id] = append(byTrace[id], s)
		if len(byTrace[id]) > len(byTrace[best]) {
			best = id
		}
	}
	if len(byTrace[best]) == 0 {
		fmt.Fprintln(w, "\nNo spans were recorded: this build of llmtransport records none yet.")
		return
	}
	fmt.Fprintf(w, "\nSpan tree of one retried call (trace %s; set OTEL_EXPORTER_OTLP_ENDPOINT and run with -tags otlp to send traces to Jaeger):\n", best)
	tr := byTrace[best]
	children := map[trace.SpanID][]*recordedSpan{}
	inTrace := map[trace.SpanID]bool{}
	for _, s := range tr {
		inTrace[s.SpanContext().SpanID()] = true
	}
	var roots []*recordedSpan
	for _, s := range tr {
		if p := s.Parent().SpanID(); s.Parent().IsValid() && inTrace[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	var walk func(s *recordedSpan, depth int)
	walk = func(s *recordedSpan, depth int) {
		fmt.Fprintf(w, "%s%s  %v  %s\n", strings.Repeat("  ", depth+1), s.Name(), s.EndTime().Sub(s.StartTime()).Round(time.Millisecond), attrs(s))
		for _, e := range s.Events() {
			fmt.Fprintf(w, "%s  · %s %s\n", strings.Repeat("  ", depth+1), e.Name, kv(e.Attributes))
		}
		kids := children[s.SpanContext().SpanID()]
		slices.SortFunc(kids, func(a, b *recordedSpan) int { return a.StartTime().Compare(b.StartTime()) })
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
}

func attrs(s *recordedSpan) string {
	out := kv(s.Attributes())
	if st := s.Status(); st.Code == codes.Error {
		out += " [error: " + st.Description + "]"
	}
	return out
}

func kv(as []attribute.KeyValue) string {
	parts := make([]string, 0, len(as))
	for _, a := range as {
		parts = append(parts, string(a.Key)+"="+a.Value.String())
	}
	return strings.Join(parts, " ")
}
