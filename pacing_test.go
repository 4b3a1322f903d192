package llmtransport

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// limitHeaders returns the kv pairs of OpenAI's request-dimension headers.
func limitHeaders(limit, remaining, reset string) []string {
	return []string{
		"X-Ratelimit-Limit-Requests", limit,
		"X-Ratelimit-Remaining-Requests", remaining,
		"X-Ratelimit-Reset-Requests", reset,
	}
}

// pacedSend sends a chat request for model with body through tr and drains
// the answer; it returns the status, or the error.
func pacedSend(t *testing.T, tr http.RoundTripper, ctx context.Context, body string) (int, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gw, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk-test-pacing-0123456789")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

const pacedBody = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`

// A response that says nothing is left makes the next request wait for
// the reset, recorded as a "paced" event and in MetricPacingWait; the
// learned limit is in Limits.
func TestPacingWaitsForReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t)
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			return response(200, `{"id":"x"}`, limitHeaders("2", "0", "1s")...), nil
		}}
		tr := New(f, tel.options(WithPacing())...)
		for range 2 {
			if st, err := pacedSend(t, tr, t.Context(), pacedBody); err != nil || st != 200 {
				t.Fatalf("got %d, %v", st, err)
			}
		}
		if g := f.gap(1); g != time.Second {
			t.Errorf("second request sent %v after the first, want the 1s reset", g)
		}
		var events int
		for _, s := range tel.spans("chat gpt-4o-mini") {
			for _, e := range s.Events() {
				if e.Name != eventPaced {
					continue
				}
				events++
				set := attribute.NewSet(e.Attributes...)
				if v, _ := set.Value(keyPacingWait); v.AsFloat64() != 1 {
					t.Errorf("paced event wait %v, want 1", v.AsFloat64())
				}
				if v, _ := set.Value(keyPacingWaited); !v.AsBool() {
					t.Errorf("paced event: waited false")
				}
			}
		}
		if events != 1 {
			t.Errorf("%d paced events, want 1", events)
		}
		if n, _ := sum(tel.collect(t), MetricPacingWait, map[string]string{"llm.pacing.waited": "true", "gen_ai.request.model": "gpt-4o-mini"}); n != 1 {
			t.Errorf("MetricPacingWait: %v waits, want 1", n)
		}
		l := tr.Limits()
		if len(l) != 1 || l[0].Host != "gw.test" || l[0].Model != "gpt-4o-mini" ||
			l[0].Requests != (LimitWindow{Limit: 2, Remaining: 0, Reset: time.Second}) || l[0].Tokens.Known() {
			t.Errorf("Limits: %+v", l)
		}
		if n := tr.pacer.InFlight(); n != 0 {
			t.Errorf("%d tickets in flight", n)
		}
	})
}

// A wait past WithMaxRetryWait or the deadline is not taken: the request
// goes at once and the server decides.
func TestPacingWaitPastCapOrDeadline(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []Option
		timeout time.Duration
	}{
		{"cap", []Option{WithMaxRetryWait(2 * time.Second)}, 0},
		{"deadline", nil, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tel := newTelemetry(t)
				f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
					return response(200, `{"id":"x"}`, limitHeaders("10", "0", "10s")...), nil
				}}
				tr := New(f, tel.options(append(tc.opts, WithPacing())...)...)
				ctx := t.Context()
				if tc.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.timeout)
					defer cancel()
				}
				for range 3 {
					if st, err := pacedSend(t, tr, ctx, pacedBody); err != nil || st != 200 {
						t.Fatalf("got %d, %v", st, err)
					}
				}
				if g := f.gap(1) + f.gap(2); g != 0 {
					t.Errorf("requests waited %v, want none", g)
				}
				if n, _ := sum(tel.collect(t), MetricPacingWait, map[string]string{"llm.pacing.waited": "false"}); n != 2 {
					t.Errorf("MetricPacingWait: %v waits not taken, want 2", n)
				}
				if n := tr.pacer.InFlight(); n != 0 {
					t.Errorf("%d tickets in flight", n)
				}
			})
		})
	}
}

// RequestMaxRetryWait bounds a request's pacing waits in place of
// WithMaxRetryWait, as it does its other waits.
func TestPacingRequestMaxRetryWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			return response(200, `{"id":"x"}`, limitHeaders("10", "0", "10s")...), nil
		}}
		tr := New(f, WithPacing())
		if st, err := pacedSend(t, tr, t.Context(), pacedBody); err != nil || st != 200 {
			t.Fatalf("got %d, %v", st, err)
		}
		ctx := WithRequestOptions(t.Context(), RequestMaxRetryWait(time.Second))
		if st, err := pacedSend(t, tr, ctx, pacedBody); err != nil || st != 200 {
			t.Fatalf("got %d, %v", st, err)
		}
		if g := f.gap(1); g != 0 {
			t.Errorf("a request with RequestMaxRetryWait(1s) waited %v for a 10 s window, want no wait", g)
		}
		if st, err := pacedSend(t, tr, t.Context(), pacedBody); err != nil || st != 200 {
			t.Fatalf("got %d, %v", st, err)
		}
		if g := f.gap(2); g != 10*time.Second {
			t.Errorf("a request without it waited %v, want the 10 s window", g)
		}
	})
}

// Unknown or absurd headers never pace.
func TestPacingUnknownHeadersNeverPace(t *testing.T) {
	for name, kv := range map[string][]string{
		"none":                nil,
		"azure placeholders":  limitHeaders("-1", "-1", "-1"),
		"zero limit":          limitHeaders("0", "0", "1s"),
		"remaining > limit":   limitHeaders("10", "11", "1s"),
		"negative remaining":  limitHeaders("10", "-3", "1s"),
		"no reset":            {"X-Ratelimit-Limit-Requests", "10", "X-Ratelimit-Remaining-Requests", "0"},
		"reset 0":             limitHeaders("10", "0", "0s"),
		"reset in two days":   limitHeaders("10", "0", "48h"),
		"garbage":             limitHeaders("ten", "zero", "soon"),
		"huge numbers":        limitHeaders("99999999999999999999999", "0", "1s"),
		"anthropic year 3000": {"Anthropic-Ratelimit-Requests-Limit", "10", "Anthropic-Ratelimit-Requests-Remaining", "0", "Anthropic-Ratelimit-Requests-Reset", "3000-01-01T00:00:00Z"},
		"anthropic in the past": {"Anthropic-Ratelimit-Requests-Limit", "10", "Anthropic-Ratelimit-Requests-Remaining", "0",
			"Anthropic-Ratelimit-Requests-Reset", "2000-01-01T00:00:00Z"},
		// A request that costs more than a whole window can never be
		// covered: the server decides.
		"cost above the limit": {"X-Ratelimit-Limit-Tokens", "10", "X-Ratelimit-Remaining-Tokens", "0", "X-Ratelimit-Reset-Tokens", "1s"},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
					return response(200, `{"id":"x"}`, kv...), nil
				}}
				tr := New(f, WithPacing())
				start := time.Now()
				for range 5 {
					if st, err := pacedSend(t, tr, t.Context(), pacedBody); err != nil || st != 200 {
						t.Fatalf("got %d, %v", st, err)
					}
				}
				if d := time.Since(start); d != 0 {
					t.Errorf("5 requests took %v, want no wait", d)
				}
			})
		})
	}
}

// The token estimate reads max_tokens and n from the body: a request that
// may generate more than is left waits, a smaller one does not.
func TestPacingTokenEstimate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			return response(200, `{"id":"x"}`,
				"X-Ratelimit-Limit-Tokens", "10000", "X-Ratelimit-Remaining-Tokens", "400", "X-Ratelimit-Reset-Tokens", "2s"), nil
		}}
		tr := New(f, WithPacing())
		body := func(extra string) string {
			return `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]` + extra + `}`
		}
		pacedSend(t, tr, t.Context(), body(""))
		for _, tc := range []struct {
			extra string
			wait  time.Duration
		}{
			{`,"max_tokens":100`, 0},                     // ~120 tokens of 400
			{`,"max_tokens":100,"n":4`, 2 * time.Second}, // ~420
			{`,"max_completion_tokens":500`, 2 * time.Second},
			{`,"max_output_tokens":50,"n":2`, 0},
		} {
			start := time.Now()
			pacedSend(t, tr, t.Context(), body(tc.extra))
			if d := time.Since(start); d != tc.wait {
				t.Errorf("%s: waited %v, want %v", tc.extra, d, tc.wait)
			}
		}
	})
}

// No path leaves a reservation behind: a caller that gives up during the
// pacing wait holds nothing, and so does one cancelled in flight, one
// refused by its circuit, one whose body cannot be replayed, one whose
// attempt failed, one retried after 429s.
func TestPacingTicketsNeverLeak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mode string
		f := &fakeRT{respond: func(i int, req *http.Request) (*http.Response, error) {
			switch mode {
			case "block":
				<-req.Context().Done()
				return nil, req.Context().Err()
			case "error":
				return nil, errors.New("connection reset by peer")
			case "500":
				return response(500, `{"error":{"message":"boom","type":"server_error"}}`, limitHeaders("100", "50", "1s")...), nil
			case "429":
				return response(429, `{"error":{"message":"slow down","type":"rate_limit_exceeded","code":"rate_limit_exceeded"}}`,
					append(limitHeaders("100", "0", "100ms"), "Retry-After-Ms", "100")...), nil
			}
			return response(200, `{"id":"x"}`, limitHeaders("100", "0", "1m")...), nil
		}}
		tr := New(f, WithPacing(), WithBackoff(time.Millisecond, time.Millisecond), WithBreakerThreshold(1, 1), WithMaxRetryWait(5*time.Minute))
		check := func(what string) {
			t.Helper()
			if n := tr.pacer.InFlight(); n != 0 {
				t.Errorf("%s: %d tickets in flight", what, n)
			}
		}
		pacedSend(t, tr, t.Context(), pacedBody) // learns: nothing left for a minute
		check("ok")

		// Gives up during the pacing wait: no attempt sent.
		sent := f.attempts()
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(10*time.Second, cancel)
		if _, err := pacedSend(t, tr, ctx, pacedBody); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled during the wait: %v", err)
		}
		if f.attempts() != sent {
			t.Errorf("an attempt was sent during the wait")
		}
		check("cancelled during the wait")

		time.Sleep(time.Minute) // the window passes
		mode = "block"
		ctx, cancel = context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		if _, err := pacedSend(t, tr, ctx, pacedBody); err == nil {
			t.Errorf("cancelled in flight: no error")
		}
		check("cancelled in flight")

		mode = "error" // (opens m-err's circuit, with the threshold of 1)
		pacedSend(t, tr, t.Context(), `{"model":"m-err"}`)
		check("transport errors")

		mode = "429"
		sent = f.attempts()
		pacedSend(t, tr, t.Context(), `{"model":"m-429"}`)
		if n := f.attempts() - sent; n != 1+DefaultMaxRetries {
			t.Errorf("429s: %d attempts", n)
		}
		check("429s")

		// A body that cannot be replayed after a 500.
		mode = "500"
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://gw.test/v1/chat/completions?x", strings.NewReader(`{"model":"m2"}`))
		gets := 0
		req.GetBody = func() (io.ReadCloser, error) {
			if gets++; gets == 1 { // the model scan's
				return io.NopCloser(strings.NewReader(`{"model":"m2"}`)), nil
			}
			return nil, errors.New("no replay")
		}
		if resp, err := tr.RoundTrip(req); err == nil {
			resp.Body.Close()
		}
		check("replay error")
		if c, _ := circuitOf(tr, "m2"); c.State != CircuitOpen {
			t.Fatalf("m2's circuit: %+v (attempts %d)", c, f.attempts())
		}

		// The 500 opened m2's circuit (threshold 1): the next is refused.
		req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, gw, strings.NewReader(`{"model":"m2"}`))
		if _, err := tr.RoundTrip(req); !errors.Is(err, ErrCircuitOpen) {
			t.Errorf("want the circuit open, got %v", err)
		}
		check("circuit refusal")
	})
}

// Pacing off: no pacer, no numbers read, no snapshot.
func TestPacingOff(t *testing.T) {
	tr := New(cannedRT{})
	if tr.pacer != nil || tr.Limits() != nil {
		t.Fatal("pacing on by default")
	}
	overheadRoundTrip(tr)
}

// Anthropic's split limits: input tokens left too few for the prompt make
// the request wait for their reset, whatever the output tokens say.
func TestPacingAnthropicInputTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			reset := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339)
			return response(200, `{"id":"x"}`,
				"Anthropic-Ratelimit-Input-Tokens-Limit", "1000", "Anthropic-Ratelimit-Input-Tokens-Remaining", "10",
				"Anthropic-Ratelimit-Input-Tokens-Reset", reset,
				"Anthropic-Ratelimit-Output-Tokens-Limit", "1000", "Anthropic-Ratelimit-Output-Tokens-Remaining", "1000",
				"Anthropic-Ratelimit-Output-Tokens-Reset", reset), nil
		}}
		tr := New(f, WithPacing())
		pacedSend(t, tr, t.Context(), pacedBody)
		if l := tr.Limits(); len(l) != 1 || l[0].InputTokens.Limit != 1000 || l[0].OutputTokens.Remaining != 1000 || l[0].Requests.Known() {
			t.Errorf("Limits: %+v", l)
		}
		start := time.Now()
		pacedSend(t, tr, t.Context(), pacedBody) // ~18 input tokens, 10 left
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("waited %v, want the input tokens' 2s reset", d)
		}
	})
}
