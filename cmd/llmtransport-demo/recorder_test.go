package main

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// recordHeaders is a base transport that keeps the traceparent header of
// each request it sends.
type recordHeaders struct {
	mu     sync.Mutex
	parent []string
}

func (r *recordHeaders) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.parent = append(r.parent, req.Header.Get("traceparent"))
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

// TestRecorderSpanTree records a call retried once through the transport
// and prints its span tree: the call's span with its retry event, an
// attempt span per attempt beneath it with their attributes and the
// failed one's status, and a traceparent on each attempt naming it.
func TestRecorderSpanTree(t *testing.T) {
	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("m",
		llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error"),
		llmtransporttest.OK()))
	defer gw.Close()
	rec := newRecorder()
	base := &recordHeaders{}
	c := &http.Client{Transport: llmtransport.New(base,
		llmtransport.WithTracerProvider(rec),
		llmtransport.WithPropagators(propagation.TraceContext{}))}
	res, err := c.Post(gw.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d, want 200 after a retry", res.StatusCode)
	}

	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans ended, want 3 (the call and 2 attempts)", len(spans))
	}
	var call *recordedSpan
	var attempts []*recordedSpan
	for _, s := range spans {
		if !s.SpanContext().IsValid() || !s.SpanContext().IsSampled() {
			t.Errorf("span %q: span context %v is not valid and sampled", s.Name(), s.SpanContext())
		}
		if s.IsRecording() || s.EndTime().Before(s.StartTime()) {
			t.Errorf("span %q: recording %t after its end, or ends (%v) before it starts (%v)", s.Name(), s.IsRecording(), s.EndTime(), s.StartTime())
		}
		if s.Parent().IsValid() {
			attempts = append(attempts, s)
		} else {
			call = s
		}
	}
	if call == nil || len(attempts) != 2 {
		t.Fatalf("want one root span and two children, got root %v and %d children", call, len(attempts))
	}
	for i, a := range attempts {
		if a.Parent().SpanID() != call.SpanContext().SpanID() || a.SpanContext().TraceID() != call.SpanContext().TraceID() {
			t.Errorf("attempt %d: parent %v, want the call's span %v", i, a.Parent(), call.SpanContext())
		}
	}
	if len(base.parent) != 2 {
		t.Fatalf("the gateway got %d requests, want 2", len(base.parent))
	}
	// traceparent: version-traceid-spanid-flags, naming each attempt's span.
	for i, h := range base.parent {
		var found bool
		for _, a := range attempts {
			sc := a.SpanContext()
			if h == "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-01" {
				found = true
			}
		}
		if !found {
			t.Errorf("request %d: traceparent %q names no attempt span", i, h)
		}
	}
	slices.SortFunc(attempts, func(a, b *recordedSpan) int { return a.StartTime().Compare(b.StartTime()) })
	if st0, st1 := attempts[0].Status(), attempts[1].Status(); st0.Code != codes.Error || st1.Code != codes.Unset {
		t.Errorf("attempts' status %v then %v, want Error then Unset", st0, st1)
	}

	tr := &tracing{tp: rec, rec: rec}
	var out bytes.Buffer
	tr.printTree(&out)
	got := out.String()
	t.Logf("printTree:\n%s", got)
	for _, re := range []string{
		`Span tree of one retried call \(trace ` + call.SpanContext().TraceID().String(),
		`\n  chat m  \S+  .*gen_ai\.request\.model=m .*llm\.attempts=2 .*http\.response\.status_code=200`,
		`\n    · retry scheduled llm\.retry\.attempt=0 .*llm\.error\.class=upstream_transient`,
		`\n    POST  \S+  http\.request\.method=POST .*http\.response\.status_code=500 .*llm\.error\.code=do_request_failed.* \[error: [^\]]+\]\n`,
		`\n    POST  \S+  http\.request\.method=POST .*http\.request\.resend_count=1 .*http\.response\.status_code=200 `,
	} {
		if !regexp.MustCompile(re).MatchString(got) {
			t.Errorf("span tree lacks %s", re)
		}
	}
	if strings.Index(got, "status_code=500") > strings.Index(got, "resend_count=1") {
		t.Error("the attempts are not printed in the order they started")
	}
}

// TestRecorderSpan checks the SDK-like details of a span: a parent from the
// context, attributes set again keeping their place, the status rules, the
// exception event, and nothing changing after End.
func TestRecorderSpan(t *testing.T) {
	rec := newRecorder()
	tracer := rec.Tracer("test")
	ctx, root := tracer.Start(t.Context(), "root", trace.WithAttributes(attrKV("a", "1"), attrKV("b", "2")))
	_, child := tracer.Start(ctx, "child", trace.WithTimestamp(time.Unix(10, 0)))
	_, other := tracer.Start(ctx, "other", trace.WithNewRoot())
	if child.SpanContext().TraceID() != root.SpanContext().TraceID() || child.SpanContext().SpanID() == root.SpanContext().SpanID() {
		t.Errorf("child %v of root %v: want the same trace, another span", child.SpanContext(), root.SpanContext())
	}
	if other.SpanContext().TraceID() == root.SpanContext().TraceID() {
		t.Error("WithNewRoot: the span is in its parent's trace")
	}
	if trace.SpanFromContext(ctx) != root || root.TracerProvider() != rec {
		t.Error("the context does not carry the span, or the span not its provider")
	}
	root.SetAttributes(attrKV("a", "3"), attrKV("c", "4"))
	root.SetStatus(codes.Error, "bad")
	root.SetStatus(codes.Unset, "")
	root.RecordError(io.ErrUnexpectedEOF)
	root.SetName("root2")
	root.End()
	root.SetAttributes(attrKV("d", "5"))
	root.AddEvent("late")
	root.End()
	child.SetStatus(codes.Ok, "ignored")
	child.SetStatus(codes.Error, "too late")
	child.End(trace.WithTimestamp(time.Unix(12, 0)))
	other.End()

	ended := rec.Ended()
	if len(ended) != 3 || ended[0] != root {
		t.Fatalf("ended %v, want root, child, other", ended)
	}
	r := ended[0]
	if got := kv(r.Attributes()); got != "a=3 b=2 c=4" {
		t.Errorf("attributes %q, want a=3 b=2 c=4", got)
	}
	if r.Name() != "root2" || r.Status() != (recordedStatus{codes.Error, "bad"}) {
		t.Errorf("name %q, status %v", r.Name(), r.Status())
	}
	if ev := r.Events(); len(ev) != 1 || ev[0].Name != "exception" || kv(ev[0].Attributes) != "exception.type=*errors.errorString exception.message=unexpected EOF" {
		t.Errorf("events %v, want one exception", ev)
	}
	c := ended[1]
	if c.Status() != (recordedStatus{Code: codes.Ok}) || c.EndTime().Sub(c.StartTime()) != 2*time.Second {
		t.Errorf("child: status %v, duration %v; want Ok without description, 2s", c.Status(), c.EndTime().Sub(c.StartTime()))
	}
}

func attrKV(k, v string) attribute.KeyValue { return attribute.String(k, v) }
