package main

// This file is the demo's stand-in for the OpenTelemetry SDK: a tracer
// provider that keeps every span in memory, just enough for printTree to
// print one call's span tree. The default build uses it instead of
// go.opentelemetry.io/otel/sdk so that the first `go run .` on a fresh
// machine compiles less (the SDK, its resource and semconv packages cost
// about 10 s of a one-minute first run on a slow VM). It is not something
// to use in production: it samples everything, keeps every span until the
// process exits, applies no attribute or event limits and exports nothing.
// An application records its spans with the SDK (see otlp.go, built with
// -tags otlp).

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// recorder is a trace.TracerProvider that records every span in memory.
type recorder struct {
	embedded.TracerProvider

	mu    sync.Mutex
	ended []*recordedSpan // in the order they ended
}

func newRecorder() *recorder { return &recorder{} }

// Tracer returns a tracer whose spans r records; the name and options of
// the instrumentation scope are not kept.
func (r *recorder) Tracer(string, ...trace.TracerOption) trace.Tracer {
	return recTracer{r: r}
}

// Ended returns the spans that have ended, in the order they ended.
func (r *recorder) Ended() []*recordedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*recordedSpan(nil), r.ended...)
}

type recTracer struct {
	embedded.Tracer
	r *recorder
}

// Start starts a span, child of the span in ctx (local or remote) unless
// the options ask for a new root, with fresh random IDs and the sampled
// flag, so that what propagators inject from it is valid.
func (t recTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	cfg := trace.NewSpanStartConfig(opts...)
	var parent trace.SpanContext
	if !cfg.NewRoot() {
		parent = trace.SpanContextFromContext(ctx)
	}
	scc := trace.SpanContextConfig{TraceFlags: trace.FlagsSampled}
	if parent.IsValid() {
		scc.TraceID = parent.TraceID()
		scc.TraceState = parent.TraceState()
	} else {
		scc.TraceID = newTraceID()
	}
	scc.SpanID = newSpanID()
	start := cfg.Timestamp()
	if start.IsZero() {
		start = time.Now()
	}
	s := &recordedSpan{
		r:      t.r,
		sc:     trace.NewSpanContext(scc),
		parent: parent,
		kind:   cfg.SpanKind(),
		name:   name,
		start:  start,
		links:  cfg.Links(),
	}
	s.setAttributes(cfg.Attributes())
	return trace.ContextWithSpan(ctx, s), s
}

func newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		for i := range id {
			id[i] = byte(rand.Uint32())
		}
	}
	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		for i := range id {
			id[i] = byte(rand.Uint32())
		}
	}
	return id
}

// recordedSpan is a span of a recorder. Its methods are safe for concurrent
// use; once ended, it ignores further changes, as the SDK's spans do.
type recordedSpan struct {
	embedded.Span
	r      *recorder
	sc     trace.SpanContext
	parent trace.SpanContext // invalid for a root
	kind   trace.SpanKind

	mu     sync.Mutex
	name   string
	start  time.Time
	end    time.Time // zero until ended
	attrs  []attribute.KeyValue
	index  map[attribute.Key]int // position of each key in attrs
	events []recordedEvent
	links  []trace.Link
	status recordedStatus
}

// recordedEvent is an event of a span.
type recordedEvent struct {
	Name       string
	Time       time.Time
	Attributes []attribute.KeyValue
}

// recordedStatus is a span's status.
type recordedStatus struct {
	Code        codes.Code
	Description string
}

func (s *recordedSpan) End(opts ...trace.SpanEndOption) {
	cfg := trace.NewSpanEndConfig(opts...)
	end := cfg.Timestamp()
	if end.IsZero() {
		end = time.Now()
	}
	s.mu.Lock()
	if !s.end.IsZero() {
		s.mu.Unlock()
		return
	}
	s.end = end
	s.mu.Unlock()
	s.r.mu.Lock()
	s.r.ended = append(s.r.ended, s)
	s.r.mu.Unlock()
}

func (s *recordedSpan) AddEvent(name string, opts ...trace.EventOption) {
	cfg := trace.NewEventConfig(opts...)
	s.addEvent(name, cfg.Timestamp(), cfg.Attributes())
}

func (s *recordedSpan) addEvent(name string, at time.Time, attrs []attribute.KeyValue) {
	if at.IsZero() {
		at = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.end.IsZero() {
		return
	}
	s.events = append(s.events, recordedEvent{Name: name, Time: at, Attributes: append([]attribute.KeyValue(nil), attrs...)})
}

func (s *recordedSpan) AddLink(l trace.Link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end.IsZero() {
		s.links = append(s.links, l)
	}
}

// IsRecording reports whether the span has not ended yet.
func (s *recordedSpan) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end.IsZero()
}

// RecordError adds an "exception" event, as the SDK does.
func (s *recordedSpan) RecordError(err error, opts ...trace.EventOption) {
	if err == nil {
		return
	}
	cfg := trace.NewEventConfig(opts...)
	attrs := append([]attribute.KeyValue{
		attribute.String("exception.type", fmt.Sprintf("%T", err)),
		attribute.String("exception.message", err.Error()),
	}, cfg.Attributes()...)
	s.addEvent("exception", cfg.Timestamp(), attrs)
}

func (s *recordedSpan) SpanContext() trace.SpanContext { return s.sc }

// SetStatus sets the status as the SDK does: Ok is final, Error replaces
// Unset, and only an Error keeps its description.
func (s *recordedSpan) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.end.IsZero() || code < s.status.Code || s.status.Code == codes.Ok {
		return
	}
	if code != codes.Error {
		description = ""
	}
	s.status = recordedStatus{Code: code, Description: description}
}

func (s *recordedSpan) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end.IsZero() {
		s.name = name
	}
}

// SetAttributes sets attributes; a key set again keeps its first position
// and takes the latest value, as with the SDK.
func (s *recordedSpan) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end.IsZero() {
		s.setAttributes(kv)
	}
}

func (s *recordedSpan) setAttributes(kv []attribute.KeyValue) {
	if s.index == nil {
		s.index = map[attribute.Key]int{}
	}
	for _, a := range kv {
		if !a.Valid() {
			continue
		}
		if i, ok := s.index[a.Key]; ok {
			s.attrs[i] = a
			continue
		}
		s.index[a.Key] = len(s.attrs)
		s.attrs = append(s.attrs, a)
	}
}

func (s *recordedSpan) TracerProvider() trace.TracerProvider { return s.r }

// The accessors printTree reads, after the span has ended.

func (s *recordedSpan) Name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.name
}

func (s *recordedSpan) Parent() trace.SpanContext { return s.parent }

func (s *recordedSpan) StartTime() time.Time { return s.start }

func (s *recordedSpan) EndTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

func (s *recordedSpan) Attributes() []attribute.KeyValue {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]attribute.KeyValue(nil), s.attrs...)
}

func (s *recordedSpan) Events() []recordedEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recordedEvent(nil), s.events...)
}

func (s *recordedSpan) Status() recordedStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}
