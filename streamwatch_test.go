package llmtransport

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"

	"github.com/llmtransport/llmtransport/internal/workload"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// Streams of the shapes the watcher must judge, as servers send them.
const (
	chatChunk    = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}` + "\n\n"
	chatStop     = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n"
	chatFilter   = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"content_filter"}]}` + "\n\n"
	chatUsage    = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}` + "\n\n"
	chatDone     = "data: [DONE]\n\n"
	newAPIError  = `data: {"error":{"message":"upstream error: unexpected EOF","type":"upstream_error","code":"do_request_failed"}}` + "\n\n"
	chatErrEmpty = `data: {"error":{},"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}` + "\n\n" // a first key error that holds none

	anthStart = "event: message_start\n" + `data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}` + "\n\n"
	anthDelta = "event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"word "}}` + "\n\n"
	anthError = "event: error\n" + `data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}` + "\n\n"
	anthStop  = "event: message_delta\n" + `data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}` + "\n\n" +
		"event: message_stop\n" + `data: {"type":"message_stop"}` + "\n\n"
)

// streamServer serves the events one write and flush each, as a gateway
// streams them. When hold is not nil, it waits for hold to be closed (or
// the request to end) before the last event.
func streamServer(t *testing.T, hold chan struct{}, events ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for i, ev := range events {
			if hold != nil && i == len(events)-1 {
				select {
				case <-hold:
				case <-r.Context().Done():
					return
				}
			}
			io.WriteString(w, ev)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// streamCall sends a chat request through rt to srv and reads the stream
// to its end; it returns the bytes read.
func streamCall(t *testing.T, rt http.RoundTripper, srv *httptest.Server) []byte {
	t.Helper()
	resp, err := rt.RoundTrip(chatRequest(t, context.Background(), srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// onlyCircuit returns the status of the only circuit of tr.
func onlyCircuit(t *testing.T, tr *Transport) CircuitStatus {
	t.Helper()
	cs := tr.Circuits()
	if len(cs) != 1 {
		t.Fatalf("circuits: %+v, want one", cs)
	}
	return cs[0]
}

func TestStreamWatchMidStreamError(t *testing.T) {
	for _, tt := range []struct {
		name      string
		events    []string
		class     Class
		failure   bool // a failure of the model's circuit
		excluded  bool // neither success nor failure
		byteCheck bool
	}{
		{"new-api error then usage and DONE", []string{chatChunk, chatChunk, newAPIError, chatUsage, chatDone}, ClassUpstreamTransient, true, false, true},
		{"anthropic overloaded", []string{anthStart, anthDelta, anthDelta, anthError}, ClassOverloaded, true, false, true},
		{"openai finish_reason error", []string{chatChunk, strings.Replace(chatStop, `"stop"`, `"error"`, 1), chatDone}, ClassUpstreamTransient, true, false, false},
		{"content_filter finish", []string{chatChunk, chatChunk, chatFilter, chatDone}, ClassContentFiltered, false, true, true},
		{"anthropic refusal", []string{anthStart, anthDelta, strings.Replace(anthStop, "end_turn", "refusal", 1)}, ClassContentFiltered, false, true, false},
		{"no finish reason at EOF", []string{chatChunk, chatChunk, chatChunk}, ClassUpstreamTransient, true, false, false},
		{"no finish reason before DONE", []string{chatChunk, chatChunk, chatDone}, ClassUpstreamTransient, true, false, false},
		{"anthropic cut off", []string{anthStart, anthDelta, anthDelta}, ClassUpstreamTransient, true, false, false},
		{"overloaded error then DONE, no blank line between", []string{chatChunk, chatChunk, `data: {"error":{"type":"overloaded_error","message":"Overloaded"}}` + "\n" + chatDone}, ClassOverloaded, true, false, true},
		{"content_filter then DONE, no blank line between", []string{chatChunk, strings.TrimSuffix(chatFilter, "\n") + chatDone}, ClassContentFiltered, false, true, true},
		{"harmless error key, then an error event", []string{chatChunk, chatErrEmpty, chatChunk, newAPIError, chatUsage, chatDone}, ClassUpstreamTransient, true, false, true},
		{"harmless error key, then no finish reason", []string{chatChunk, chatErrEmpty, chatChunk, chatDone}, ClassUpstreamTransient, true, false, true},
		{"harmless error key last, no finish reason", []string{chatChunk, chatErrEmpty}, ClassUpstreamTransient, true, false, true},
		{"harmless error key, DONE, no blank line between", []string{chatChunk, strings.TrimSuffix(chatErrEmpty, "\n") + chatDone}, ClassUpstreamTransient, true, false, true},
		{"harmless error key, then an error in the same read", []string{chatChunk + chatErrEmpty + chatChunk + newAPIError + chatUsage + chatDone}, ClassUpstreamTransient, true, false, true},
		{"responses api failed", []string{"event: response.created\ndata: {\"type\":\"response.created\"}\n\n", "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"word\"}\n\n", "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"The model failed\"}}}\n\n"}, ClassUpstreamTransient, true, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tel := newTelemetry(t)
			srv := streamServer(t, nil, tt.events...)
			tr := New(nil, tel.options()...)
			defer tr.CloseIdleConnections()
			got := streamCall(t, tr, srv)
			if want := strings.Join(tt.events, ""); tt.byteCheck && string(got) != want {
				t.Fatalf("body:\n%q\nwant\n%q", got, want)
			}
			calls := tel.spans("chat gpt-4o")
			if len(calls) != 1 {
				t.Fatalf("%d call spans", len(calls))
			}
			cs := calls[0]
			if cs.Status().Code != codes.Error {
				t.Errorf("call span status %v, want Error\n%s", cs.Status(), dump(cs))
			}
			if a := attrs(cs.Attributes()); a[string(keyClass)].AsString() != tt.class.String() || a[string(keyErrorType)].AsString() != tt.class.String() {
				t.Errorf("call span class %v, error.type %v, want %v", a[string(keyClass)], a[string(keyErrorType)], tt.class)
			}
			if as := tel.spans("POST"); len(as) != 1 || as[0].Status().Code != codes.Error {
				t.Errorf("attempt spans %d, want 1 with status Error", len(as))
			}
			if n, _ := sum(tel.collect(t), MetricStreamErrors, map[string]string{"llm.error.class": tt.class.String(), "gen_ai.request.model": "gpt-4o"}); n != 1 {
				t.Errorf("%s{class=%s} = %v, want 1", MetricStreamErrors, tt.class, n)
			}
			c := onlyCircuit(t, tr)
			want := CircuitStatus{Successes: 0, Failures: b2u(tt.failure), Excluded: b2u(tt.excluded)}
			if c.Successes != want.Successes || c.Failures != want.Failures || c.Excluded != want.Excluded || c.InFlight != 0 {
				t.Errorf("circuit %+v, want successes %d failures %d excluded %d", c, want.Successes, want.Failures, want.Excluded)
			}
		})
	}
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// TestStreamWatchOpensCircuit: three streams that fail mid-stream, one at a
// time with default options and tracing off, are three failed calls: the
// circuit opens and the fourth call is refused.
func TestStreamWatchOpensCircuit(t *testing.T) {
	for _, shape := range [][]string{
		{chatChunk, chatChunk, newAPIError, chatUsage, chatDone},
		{anthStart, anthDelta, anthError},
	} {
		srv := streamServer(t, nil, shape...)
		tr := New(nil)
		for range DefaultBreakerMinFailures {
			if got, want := string(streamCall(t, tr, srv)), strings.Join(shape, ""); got != want {
				t.Fatalf("body %q, want %q", got, want)
			}
		}
		if c := onlyCircuit(t, tr); c.State != CircuitOpen {
			t.Fatalf("circuit %+v, want open", c)
		}
		_, err := tr.RoundTrip(chatRequest(t, context.Background(), srv.URL))
		if !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("fourth call: %v, want ErrCircuitOpen", err)
		}
		tr.CloseIdleConnections()
	}
}

// TestStreamWatchHealthy: healthy streams are delivered byte for byte and
// flagged nowhere.
func TestStreamWatchHealthy(t *testing.T) {
	for _, events := range [][]string{
		{chatChunk, chatChunk, chatStop, chatUsage, chatDone},
		{chatChunk, chatStop}, // no [DONE]: the finish reason is what counts
		{anthStart, anthDelta, anthStop},
		{"data: {\"candidates\":[{\"content\":{}}]}\n\n", "data: {\"candidates\":[]}\n\n"}, // an unknown format: its end is not judged
		{": keep-alive\r\n\r\n", strings.ReplaceAll(chatChunk, "\n", "\r\n"), strings.ReplaceAll(chatStop, "\n", "\r\n")},
	} {
		tel := newTelemetry(t)
		srv := streamServer(t, nil, events...)
		tr := New(nil, tel.options()...)
		if got, want := string(streamCall(t, tr, srv)), strings.Join(events, ""); got != want {
			t.Fatalf("body:\n%q\nwant\n%q", got, want)
		}
		for _, s := range tel.sr.Ended() {
			if s.Status().Code == codes.Error {
				t.Errorf("%q: span %s", events, dump(s))
			}
		}
		if n, _ := sum(tel.collect(t), MetricStreamErrors, nil); n != 0 {
			t.Errorf("%q: %s = %v", events, MetricStreamErrors, n)
		}
		if c := onlyCircuit(t, tr); c.Successes != 1 || c.Failures != 0 || c.Excluded != 0 {
			t.Errorf("%q: circuit %+v, want one success", events, c)
		}
		tr.CloseIdleConnections()
	}
}

// TestStreamWatchCallerStops: a caller that closes the stream early, or
// cancels it, before the stream's end or its error, costs the model
// nothing: the call stays a success.
func TestStreamWatchCallerStops(t *testing.T) {
	for _, how := range []string{"close", "close, then read", "cancel"} {
		t.Run(how, func(t *testing.T) {
			hold := make(chan struct{})
			defer close(hold)
			srv := streamServer(t, hold, chatChunk, chatChunk, newAPIError)
			tel := newTelemetry(t)
			tr := New(nil, tel.options()...)
			defer tr.CloseIdleConnections()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			resp, err := tr.RoundTrip(chatRequest(t, ctx, srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, len(chatChunk))
			if _, err := io.ReadFull(resp.Body, buf); err != nil { // the first event
				t.Fatal(err)
			}
			switch how {
			case "close":
				resp.Body.Close()
			case "close, then read":
				resp.Body.Close()
				if _, err := resp.Body.Read(buf); err == nil {
					t.Fatal("read after close: no error")
				}
			default:
				cancel()
				if _, err := io.ReadAll(resp.Body); err == nil {
					t.Fatal("read after cancel: no error")
				}
				resp.Body.Close()
			}
			if c := onlyCircuit(t, tr); c.Successes != 1 || c.Failures != 0 {
				t.Errorf("circuit %+v, want one success", c)
			}
			if n, _ := sum(tel.collect(t), MetricStreamErrors, nil); n != 0 {
				t.Errorf("%s = %v", MetricStreamErrors, n)
			}
			for _, s := range tel.spans("chat gpt-4o") {
				if s.Status().Code == codes.Error {
					t.Errorf("call span %s", dump(s))
				}
			}
		})
	}
}

// TestStreamCommitPoint: a stream is committed to at its first event of
// output, not at its first event: one that fails after lifecycle events
// only (OpenAI Responses' response.created, Anthropic's message_start and
// ping) is retried before any of its bytes reach the caller, who gets the
// retry's stream byte for byte; one that fails after output goes through,
// and is judged as it passes.
func TestStreamCommitPoint(t *testing.T) {
	const (
		created = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"status\":\"in_progress\"}}\n\n"
		delta   = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"word\"}\n\n"
		failed  = "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"The model failed\"}}}\n\n"
		done    = "event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n"
		ping    = "event: ping\ndata: {\"type\": \"ping\"}\n\n"
	)
	for _, tt := range []struct {
		name     string
		first    []string // the first attempt's events; the second sends ok
		ok       string
		requests int32
	}{
		{"responses: error after response.created", []string{created, failed}, created + delta + done, 2},
		{"anthropic: overloaded after message_start and ping", []string{anthStart, ping, anthError}, anthStart + anthDelta + anthStop, 2},
		{"responses: error after output", []string{created, delta, failed}, "", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var requests atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "text/event-stream")
				events := tt.first
				if requests.Add(1) > 1 {
					events = []string{tt.ok}
				}
				for _, ev := range events {
					io.WriteString(w, ev)
					w.(http.Flusher).Flush()
				}
			}))
			defer srv.Close()
			tr := New(nil, fastRetries()...)
			defer tr.CloseIdleConnections()
			got := streamCall(t, tr, srv)
			want := tt.ok
			if tt.requests == 1 {
				want = strings.Join(tt.first, "")
			}
			if string(got) != want || requests.Load() != tt.requests {
				t.Fatalf("after %d requests read\n%q\nwant, after %d\n%q", requests.Load(), got, tt.requests, want)
			}
			if c := onlyCircuit(t, tr); c.Successes+c.Failures != 1 || (c.Failures == 1) != (tt.requests == 1) {
				t.Errorf("circuit %+v", c)
			}
		})
	}
}

// TestStreamWatchBrokenRead: a stream whose connection breaks after its
// first events, before its end, failed: the caller's read error is the
// base's, and the call is recorded as upstream_transient on the spans, in
// the metrics and in the circuit.
func TestStreamWatchBrokenRead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, chatChunk+chatChunk)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection is closed mid-stream
	}))
	defer srv.Close()
	tel := newTelemetry(t)
	tr := New(nil, tel.options()...)
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(chatRequest(t, context.Background(), srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || string(got) != chatChunk+chatChunk {
		t.Fatalf("read %q, error %v; want the two events, then io.ErrUnexpectedEOF", got, err)
	}
	if c := onlyCircuit(t, tr); c.Successes != 0 || c.Failures != 1 {
		t.Errorf("circuit %+v, want one failure", c)
	}
	if n, _ := sum(tel.collect(t), MetricStreamErrors, map[string]string{"llm.error.class": ClassUpstreamTransient.String()}); n != 1 {
		t.Errorf("%s{class=upstream_transient} = %v, want 1", MetricStreamErrors, n)
	}
	calls := tel.spans("chat gpt-4o")
	if len(calls) != 1 || calls[0].Status().Code != codes.Error || attrs(calls[0].Attributes())[string(keyClass)].AsString() != ClassUpstreamTransient.String() {
		t.Errorf("call spans %d, want 1 with status Error and class upstream_transient", len(calls))
		for _, s := range calls {
			t.Log(dump(s))
		}
	}
}

// scanWhole returns the scan of stream b fed at once.
func scanWhole(b []byte) streamScan {
	var s streamScan
	s.feed(b)
	s.end()
	return s
}

func TestStreamScanVerdicts(t *testing.T) {
	for _, tt := range []struct {
		stream string
		want   streamVerdict
	}{
		{chatChunk + chatStop + chatDone, verdictNone},
		{chatChunk + newAPIError + chatUsage + chatDone, verdictError},
		{chatChunk + chatFilter, verdictFiltered},
		{chatChunk + strings.Replace(chatStop, `"stop"`, `"error"`, 1), verdictFinishError},
		{chatChunk + chatChunk, verdictNoFinish},
		{chatChunk + chatChunk + chatDone + chatStop, verdictNoFinish},
		{anthStart + anthDelta + anthStop, verdictNone},
		{anthStart + anthDelta + anthError, verdictError},
		{anthStart + anthDelta, verdictNoFinish},
		{"data: {\"type\":\"response.created\"}\n\n", verdictNone},
		{"data: {\"type\":\"response.created\"}\n\ndata: {\"type\":\"error\",\"code\":\"x\"}\n\n", verdictError},
		{chatChunk + "data: " + strings.Repeat("x", maxWatchLine) + "\n\n", verdictNone}, // a line too long to judge: the end is not judged
		{chatChunk + `data: {"error":{"message":"cut`, verdictError},                     // an error event cut off at the end
		{chatChunk + strings.TrimSuffix(newAPIError, "\n") + chatDone, verdictError},     // [DONE] in the error event
		{chatChunk + strings.TrimSuffix(chatFilter, "\n") + chatDone, verdictFiltered},   // [DONE] in the filtered event
		{strings.ReplaceAll(chatChunk+chatStop+chatDone, "\n", "\r"), verdictNone},       // lines ended by a lone CR are lines
		{strings.ReplaceAll(chatChunk+chatChunk, "\n", "\r"), verdictNoFinish},           // and judged: no finish reason
		{strings.ReplaceAll(chatChunk+newAPIError+chatDone, "\n", "\r"), verdictError},   // an error event
		{strings.ReplaceAll(chatChunk+newAPIError+chatDone, "\n", "\r\n"), verdictError}, // CRLF
		{chatChunk + "data: a\rb\n\n" + chatStop, verdictNone},                           // a CR alone ends a line
		{chatChunk + "data: a\r\n\r\n" + newAPIError, verdictError},
	} {
		s := scanWhole([]byte(tt.stream))
		if s.verdict != tt.want {
			t.Errorf("%q: verdict %d, want %d", tt.stream, s.verdict, tt.want)
		}
		for size := 1; size < 8; size++ {
			if c := scanChunks([]byte(tt.stream), size); c.verdict != s.verdict || !bytes.Equal(c.data, s.data) {
				t.Errorf("%q in pieces of %d: verdict %d, want %d", tt.stream, size, c.verdict, s.verdict)
			}
		}
	}
}

// scanChunks returns the scan of stream b fed in pieces of size bytes.
func scanChunks(b []byte, size int) streamScan {
	var s streamScan
	for len(b) > 0 {
		n := min(size, len(b))
		s.feed(b[:n])
		b = b[n:]
	}
	s.end()
	return s
}

// FuzzStreamScan: however a stream is cut into reads, the incremental scan
// gives the verdict, and keeps the data, of the stream scanned at once.
func FuzzStreamScan(f *testing.F) {
	for _, s := range []string{
		chatChunk + chatStop + chatDone,
		chatChunk + newAPIError + chatUsage + chatDone,
		chatChunk + chatFilter,
		anthStart + anthDelta + anthError,
		anthStart + anthDelta + anthStop,
		"\ufeff" + chatChunk + "\r\n",
		": ping\r\n\r\n" + strings.ReplaceAll(chatChunk, "\n", "\r\n"),
		"event: error\ndata: a\ndata: b\n\n",
	} {
		f.Add([]byte(s), []byte{3, 1, 200, 7})
	}
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		whole := scanWhole(stream)
		var s streamScan
		b := stream
		for i := 0; len(b) > 0; i++ {
			n := len(b)
			if len(cuts) > 0 {
				n = min(max(int(cuts[i%len(cuts)]), 1), len(b)) // a cut of 0 reads nothing: one byte
			}
			s.feed(b[:n])
			b = b[n:]
		}
		s.end()
		if s.verdict != whole.verdict || s.event != whole.event || !bytes.Equal(s.data, whole.data) {
			t.Fatalf("cut %v: verdict %d event %d data %q; whole: %d %d %q", cuts, s.verdict, s.event, s.data, whole.verdict, whole.event, whole.data)
		}
		if len(s.carry) > maxWatchLine || len(s.data) > maxWatchData {
			t.Fatalf("kept %d bytes of line, %d of data", len(s.carry), len(s.data))
		}
	})
}

// TestStreamWatchFakeGateway: the fake gateway's mid-stream faults, in
// new-api's shape (error, usage chunk, [DONE]) and Anthropic's (event:
// error, overloaded_error), reach the caller whole and are failed calls:
// three of them open the circuit.
func TestStreamWatchFakeGateway(t *testing.T) {
	for _, f := range []llmtransporttest.Fault{llmtransporttest.MidStreamErrorThenDone(2), llmtransporttest.MidStreamOverloaded(2)} {
		t.Run(f.Name(), func(t *testing.T) {
			gw := llmtransporttest.NewServer(llmtransporttest.WithReply("one two three"), llmtransporttest.WithScript("m", f, f, f))
			defer gw.Close()
			tr := New(nil)
			defer tr.CloseIdleConnections()
			for i := range DefaultBreakerMinFailures {
				req, err := http.NewRequest(http.MethodPost, gw.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true,"messages":[]}`))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Contains(b, []byte(`"error":{`)) {
					t.Fatalf("call %d: %v, body %q", i, err, b)
				}
			}
			if c := onlyCircuit(t, tr); c.State != CircuitOpen {
				t.Fatalf("circuit %+v, want open", c)
			}
			if got := gw.Requests("m"); got != DefaultBreakerMinFailures {
				t.Errorf("%d requests upstream, want %d (a stream is never retried)", got, DefaultBreakerMinFailures)
			}
		})
	}
}

// BenchmarkStreamScan is the watcher's own cost on BenchmarkStream's
// stream (workload.SSEEvents chunks, the last with its finish reason, then
// [DONE]) read 4 KiB at a time, as a caller's bufio.Reader reads it.
func BenchmarkStreamScan(b *testing.B) {
	var stream []byte
	for range workload.SSEEvents - 1 {
		stream = append(stream, workload.SSEChunk...)
	}
	stream = append(append(stream, workload.SSEFinish...), "data: [DONE]\n\n"...)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		var s streamScan
		for p := stream; len(p) > 0; {
			n := min(4096, len(p))
			s.feed(p[:n])
			p = p[n:]
		}
		s.end()
		if s.verdict != verdictNone {
			b.Fatal(s.verdict)
		}
	}
}

// TestStreamWatchClassifierSeesResponse: the transport's classifier judges
// a mid-stream event with the stream's own response (its Request, its
// headers; no Body and ContentLength -1, since it gets one event of the
// stream), so that a classifier with rules per host works there as on the
// first event.
func TestStreamWatchClassifierSeesResponse(t *testing.T) {
	srv := streamServer(t, nil, chatChunk, chatChunk, newAPIError, chatUsage, chatDone)
	var seen *http.Response
	tr := New(nil, WithClassifier(func(resp *http.Response, body []byte) Classification {
		if resp.Request.URL.Host == "" { // a classifier with rules per host
			t.Error("no host")
		}
		if bytes.Contains(body, []byte("do_request_failed")) {
			c := *resp
			seen = &c
		}
		return Classify(resp, body)
	}))
	defer tr.CloseIdleConnections()
	streamCall(t, tr, srv)
	if seen == nil {
		t.Fatal("the classifier never saw the error event")
	}
	if seen.Request == nil || seen.Request.URL.Path != "/v1/chat/completions" {
		t.Errorf("Request %v, want the call's", seen.Request)
	}
	if seen.Header.Get("Date") == "" || seen.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("Header %v, want the response's", seen.Header)
	}
	if seen.Body != nil || seen.ContentLength != -1 || seen.StatusCode != http.StatusOK {
		t.Errorf("Body %v, ContentLength %d, StatusCode %d; want nil, -1, 200", seen.Body, seen.ContentLength, seen.StatusCode)
	}
	if c := onlyCircuit(t, tr); c.Failures != 1 || c.Successes != 0 {
		t.Errorf("circuit %+v, want one failure", c)
	}
}

// TestStreamWatchClassifierPanics: a classifier that panics on a
// mid-stream event does not break the caller's Read of the stream: the
// bytes reach it whole, the verdict is dropped (the call stays a success),
// and the spans end at the stream's end.
func TestStreamWatchClassifierPanics(t *testing.T) {
	events := []string{chatChunk, chatChunk, newAPIError, chatUsage, chatDone}
	srv := streamServer(t, nil, events...)
	tel := newTelemetry(t)
	tr := New(nil, tel.options(WithClassifier(func(resp *http.Response, body []byte) Classification {
		if bytes.Contains(body, []byte("do_request_failed")) {
			panic("classifier bug")
		}
		return Classify(resp, body)
	}))...)
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(chatRequest(t, context.Background(), srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	func() {
		defer func() {
			if v := recover(); v != nil {
				t.Fatalf("the caller's Read panicked: %v", v)
			}
		}()
		got, err = io.ReadAll(resp.Body)
	}()
	if err != nil || string(got) != strings.Join(events, "") {
		t.Fatalf("read %q, %v", got, err)
	}
	// The spans ended at EOF, before Close.
	if n := len(tel.spans("POST")); n != 1 {
		t.Errorf("%d attempt spans ended, want 1", n)
	}
	if n := len(tel.spans("chat gpt-4o")); n != 1 {
		t.Errorf("%d call spans ended, want 1", n)
	}
	resp.Body.Close()
	for _, s := range tel.sr.Ended() {
		if s.Status().Code == codes.Error {
			t.Errorf("span %s", dump(s))
		}
	}
	if c := onlyCircuit(t, tr); c.Successes != 1 || c.Failures != 0 || c.InFlight != 0 {
		t.Errorf("circuit %+v, want one success", c)
	}
}

// TestStreamWatchReadSizes: however small the caller's reads, the watcher
// passes the bytes through whole and judges the stream as read at once:
// healthy streams (a line longer than the watcher keeps, lines ended by a
// lone CR, CRLF, a BOM) stay successes, failing ones (cut off, after a
// harmless error key, the scan resumed) are failures.
func TestStreamWatchReadSizes(t *testing.T) {
	big := `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"` + strings.Repeat("x", 10000) + `"},"finish_reason":"stop"}]}` + "\n\n"
	for _, tt := range []struct {
		name    string
		events  []string
		failure bool
	}{
		{"huge last line", []string{chatChunk, big, chatDone}, false},
		{"cr only", []string{strings.ReplaceAll(chatChunk+chatChunk+chatStop+chatDone, "\n", "\r")}, false},
		{"cr only, cut", []string{strings.ReplaceAll(chatChunk+chatChunk, "\n", "\r")}, true},
		{"cr only, error event", []string{strings.ReplaceAll(chatChunk+newAPIError+chatUsage+chatDone, "\n", "\r")}, true},
		{"crlf", []string{strings.ReplaceAll(chatChunk+chatStop+chatDone, "\n", "\r\n")}, false},
		{"bom", []string{"\ufeff" + chatChunk, chatStop, chatDone}, false},
		{"harmless error key", []string{chatChunk, chatErrEmpty, chatStop, chatUsage, chatDone}, false},
		{"harmless error key, then an error event", []string{chatChunk, chatErrEmpty, chatChunk, newAPIError, chatUsage, chatDone}, true},
		{"harmless error key, then an error event, one write", []string{chatChunk + chatErrEmpty + chatChunk + newAPIError + chatUsage + chatDone}, true},
		{"error event, DONE, no blank line between", []string{chatChunk, strings.TrimSuffix(newAPIError, "\n") + chatDone}, true},
		{"no finish reason", []string{chatChunk, chatChunk, chatDone}, true},
	} {
		for _, size := range []int{1, 3, 7, 4096} {
			srv := streamServer(t, nil, tt.events...)
			tr := New(nil)
			resp, err := tr.RoundTrip(chatRequest(t, context.Background(), srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			buf := make([]byte, size)
			for {
				n, err := resp.Body.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			resp.Body.Close()
			if string(got) != strings.Join(tt.events, "") {
				t.Errorf("%s, reads of %d: bytes altered", tt.name, size)
			}
			c := onlyCircuit(t, tr)
			if want := b2u(tt.failure); c.Failures != want || c.Successes != 1-want {
				t.Errorf("%s, reads of %d: circuit %+v, want failure %v", tt.name, size, c, tt.failure)
			}
			tr.CloseIdleConnections()
			srv.Close()
		}
	}
}

// Azure's first chunk (classify's healthyStreams["azure prompt_filter first"]): "object":"".
const azureFirst = `data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}` + "\n\n"

// TestStreamWatchChoicesWithoutObject: a finish_reason of error or
// content_filter is seen as it passes also in streams whose first chunk is
// not "chat.completion.chunk" (Azure's prompt_filter_results first, with
// "object":""; gateways' chunks without "object"): it was missed there.
func TestStreamWatchChoicesWithoutObject(t *testing.T) {
	noObj := `data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}` + "\n\n"
	for _, tt := range []struct {
		name    string
		events  []string
		class   Class
		failure bool
	}{
		{"azure content_filter", []string{azureFirst, chatChunk, chatFilter, chatDone}, ClassContentFiltered, false},
		{"azure finish_reason error", []string{azureFirst, chatChunk, strings.Replace(chatStop, `"stop"`, `"error"`, 1), chatDone}, ClassUpstreamTransient, true},
		{"no object field, content_filter", []string{noObj, strings.Replace(chatFilter, `"object":"chat.completion.chunk",`, "", 1), chatDone}, ClassContentFiltered, false},
		{"control: chat chunk first", []string{chatChunk, azureFirst, chatFilter, chatDone}, ClassContentFiltered, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tel := newTelemetry(t)
			srv := streamServer(t, nil, tt.events...)
			tr := New(nil, tel.options()...)
			defer tr.CloseIdleConnections()
			got := streamCall(t, tr, srv)
			whole := Classify(&http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}}, got)
			n, _ := sum(tel.collect(t), MetricStreamErrors, map[string]string{"llm.error.class": tt.class.String()})
			c := onlyCircuit(t, tr)
			if n != 1 || c.Successes != 0 || c.Failures != b2u(tt.failure) || c.Excluded != b2u(!tt.failure) {
				t.Errorf("Classify(whole)=%v but watcher: stream.errors=%v, circuit successes=%d failures=%d excluded=%d", whole.Class, n, c.Successes, c.Failures, c.Excluded)
			}
		})
	}
}

// gzipStream serves a 200 event stream gzip-encoded: first events flushed at once, the rest after wait.
func gzipStream(t *testing.T, n *atomic.Int32, wait <-chan time.Time) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		io.WriteString(zw, chatChunk+chatChunk)
		zw.Flush()
		w.(http.Flusher).Flush()
		select {
		case <-wait:
		case <-r.Context().Done():
			return
		}
		io.WriteString(zw, chatStop+chatDone)
		zw.Close()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestStreamEncodedNotHeldBack: a stream the base left gzip-encoded (the
// caller set Accept-Encoding itself, as a reverse proxy forwards it) passes
// through at once: its events cannot be seen, so it is not held back
// looking for the first one (it was, until the stream ended).
func TestStreamEncodedNotHeldBack(t *testing.T) {
	var n atomic.Int32
	srv := gzipStream(t, &n, time.After(5*time.Second))
	for _, wrapped := range []bool{false, true} {
		var rt http.RoundTripper = http.DefaultTransport.(*http.Transport).Clone()
		if wrapped {
			rt = New(rt)
		}
		req := chatRequest(t, context.Background(), srv.URL)
		req.Header.Set("Accept-Encoding", "gzip")
		start := time.Now()
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("wrapped=%v: RoundTrip returned after %v, when the stream ended; first events were flushed at once", wrapped, d.Round(time.Second))
		}
	}
}

// TestStreamEncodedFirstByteTimeout: the same with WithFirstByteTimeout:
// a healthy encoded stream, first event at once, next token after 1 s, is
// not a timeout (it was retried as one, a circuit failure).
func TestStreamEncodedFirstByteTimeout(t *testing.T) {
	var n atomic.Int32
	srv := gzipStream(t, &n, time.After(time.Second))
	tr := New(http.DefaultTransport.(*http.Transport).Clone(), append(fastRetries(), WithMaxRetries(1), WithFirstByteTimeout(300*time.Millisecond))...)
	defer tr.CloseIdleConnections()
	req := chatRequest(t, context.Background(), srv.URL)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
	}
	if c := onlyCircuit(t, tr); n.Load() != 1 || c.Failures != 0 {
		t.Errorf("%d requests, circuit failures %d; want 1 request, no failure", n.Load(), c.Failures)
	}
}
