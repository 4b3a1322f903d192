package llmtransport

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace/noop"
)

// TestUntracedAgreesWithTraced runs the same upstream behaviours through
// a transport with nothing to trace and one with a recording tracer, and
// checks that both give the caller the same thing: every call takes the
// one path of the retry loop, whatever is traced.
func TestUntracedAgreesWithTraced(t *testing.T) {
	sse := func(body string) *http.Response { return response(200, body, "Content-Type", "text/event-stream") }
	for _, tt := range []struct {
		name     string
		respond  func(i int) (*http.Response, error)
		status   int // 0: an error
		attempts int
		retry    string // X-Should-Retry of what comes back
		minWait  time.Duration
	}{
		{"success", func(int) (*http.Response, error) { return response(200, `{"ok":1}`), nil }, 200, 1, "", 0},
		{"503 twice", func(i int) (*http.Response, error) {
			if i < 2 {
				return response(503, `{"error":{"message":"busy","type":"server_error"}}`), nil
			}
			return response(200, `{"ok":1}`), nil
		}, 200, 3, "", 0},
		{"429 with a hint", func(i int) (*http.Response, error) {
			if i == 0 {
				return response(429, `{"error":{"message":"slow down","type":"rate_limit_error"}}`, "Retry-After", "2"), nil
			}
			return response(200, `{"ok":1}`), nil
		}, 200, 2, "", 2 * time.Second},
		{"400", func(int) (*http.Response, error) {
			return response(400, `{"error":{"message":"bad","type":"invalid_request_error"}}`), nil
		}, 400, 1, "false", 0},
		{"500 always", func(int) (*http.Response, error) {
			return response(500, `{"error":{"message":"boom","type":"server_error"}}`), nil
		}, 500, 4, "false", 0},
		{"error-first stream", func(i int) (*http.Response, error) {
			if i == 0 {
				return sse("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"), nil
			}
			return sse("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"), nil
		}, 200, 2, "", 0},
		{"error inside a 200", func(i int) (*http.Response, error) {
			if i == 0 {
				return response(200, `{"error":{"message":"upstream error: do request failed","type":"new_api_error","code":"do_request_failed"}}`), nil
			}
			return response(200, `{"id":"chatcmpl-1","choices":[]}`), nil
		}, 200, 2, "", 0},
		{"stream without data first", func(int) (*http.Response, error) {
			r := sse("retry: 3000\n\nid: 1\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
			r.ContentLength = -1
			return r, nil
		}, 200, 1, "", 0},
		{"stream with lone CRs", func(int) (*http.Response, error) {
			return sse(": ping\rdata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\rdata: [DONE]\r\r"), nil
		}, 200, 1, "", 0},
		{"200 JSON broken in its head", func(int) (*http.Response, error) {
			r := response(200, "")
			r.Body = io.NopCloser(io.MultiReader(strings.NewReader(`{"i`), iotestErrReader(io.ErrUnexpectedEOF)))
			return r, nil
		}, 200, 1, "", 0},
		{"reset, then success", func(i int) (*http.Response, error) {
			if i == 0 {
				return nil, syscall.ECONNRESET
			}
			return response(200, `{"ok":1}`), nil
		}, 200, 2, "", 0},
		{"reset always", func(int) (*http.Response, error) { return nil, syscall.ECONNRESET }, 0, 4, "", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			type result struct {
				status, attempts int
				body, retry      string
				waited           time.Duration
				err              bool
			}
			run := func(traced bool) (r result) {
				synctest.Test(t, func(t *testing.T) {
					f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
						return tt.respond(i)
					}}
					opts := []Option{WithMeterProvider(metricnoop.NewMeterProvider())}
					if traced {
						opts = append(opts, WithTracerProvider(newTelemetry(t).tp))
					} else {
						opts = append(opts, WithTracerProvider(noop.NewTracerProvider()))
					}
					tr := New(f, opts...)
					start := time.Now()
					resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
					r.waited = time.Since(start)
					r.attempts = f.attempts()
					if err != nil {
						r.err = true
					} else {
						b, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						r.status, r.body, r.retry = resp.StatusCode, string(b), resp.Header.Get("X-Should-Retry")
					}
				})
				return r
			}
			untraced, traced := run(false), run(true)
			for _, r := range []result{untraced, traced} {
				if r.err != (tt.status == 0) || r.status != tt.status || r.attempts != tt.attempts || r.retry != tt.retry || r.waited < tt.minWait {
					t.Errorf("got %+v, want status %d after %d attempts, X-Should-Retry %q, a wait of at least %v", r, tt.status, tt.attempts, tt.retry, tt.minWait)
				}
			}
			untraced.waited, traced.waited = 0, 0 // backoff is jittered
			if untraced != traced {
				t.Errorf("untraced: %+v\ntraced:   %+v", untraced, traced)
			}
		})
	}
}

// TestUntracedCallsTripAndRespectTheCircuit: the failures of calls with
// nothing to trace open the circuit like any others, and the open circuit
// refuses the next such call.
func TestUntracedCallsTripAndRespectTheCircuit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
			return response(503, `{"error":{"message":"busy","type":"server_error"}}`), nil
		}}
		tr := New(f, WithMaxRetries(0), WithTracerProvider(noop.NewTracerProvider()), WithMeterProvider(metricnoop.NewMeterProvider()))
		for range DefaultBreakerMinFailures {
			resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		_, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
		if !errors.Is(err, ErrCircuitOpen) || f.attempts() != DefaultBreakerMinFailures {
			t.Fatalf("after %d failures: %v with %d attempts, want ErrCircuitOpen with %d", DefaultBreakerMinFailures, err, f.attempts(), DefaultBreakerMinFailures)
		}
	})
}
