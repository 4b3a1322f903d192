package integration_test

// langchaingo's OpenAI LLM (llms/openai) over the transport, against the
// fake gateway: the transport's retries work under it, but its errors keep
// nothing of the transport's, so the outcome has to come another way.

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tmc/langchaingo/llms"
	lcopenai "github.com/tmc/langchaingo/llms/openai"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// lcFlatNetErr is the text langchaingo v0.1.14 returns in place of any
// error of its HTTP client that is not a timeout or a cancellation (its
// internal sanitizeHTTPError): an *url.Error is a net.Error, so an open
// circuit and a refused connection both come out as this, a new error
// that wraps nothing.
const lcFlatNetErr = "network error: failed to reach API server"

// newLangchainLLM returns langchaingo's OpenAI LLM for model on gw, whose
// calls go through tr.
func newLangchainLLM(t testing.TB, gw *llmtransporttest.Server, model string, tr *llmtransport.Transport) *lcopenai.LLM {
	t.Helper()
	llm, err := lcopenai.New(
		lcopenai.WithToken("sk-test"),
		lcopenai.WithModel(model),
		lcopenai.WithBaseURL(gw.URL+"/v1"),
		lcopenai.WithHTTPClient(&http.Client{Transport: tr}),
	)
	if err != nil {
		t.Fatal(err)
	}
	return llm
}

// lcAsk sends one human message through llm and returns the first choice's
// text.
func lcAsk(ctx context.Context, llm *lcopenai.LLM, opts ...llms.CallOption) (string, error) {
	resp, err := llm.GenerateContent(ctx, []llms.MessageContent{llms.TextParts(llms.ChatMessageTypeHuman, "hi")}, opts...)
	if err != nil {
		return "", err
	}
	return resp.Choices[0].Content, nil
}

// TestLangchaingoRetries: a model that fails twice answers langchaingo
// through the transport's retries, plain and streamed (langchaingo has no
// retries of its own), and RequestOutcomeInto on the context given to
// GenerateContent reaches the transport.
func TestLangchaingoRetries(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		gw := llmtransporttest.NewServer(llmtransporttest.WithScript("flaky",
			llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error: do request failed"),
			llmtransporttest.Overloaded()))
		defer gw.Close()
		llm := newLangchainLLM(t, gw, "flaky", llmtransport.New(nil, fast...))

		var o llmtransport.Outcome
		got, err := lcAsk(llmtransport.WithRequestOptions(t.Context(), llmtransport.RequestOutcomeInto(&o)), llm)
		if err != nil {
			t.Fatal(err)
		}
		if got != llmtransporttest.DefaultReply {
			t.Errorf("reply %q, want %q", got, llmtransporttest.DefaultReply)
		}
		if n := gw.Requests("flaky"); n != 3 {
			t.Errorf("upstream requests = %d, want 3", n)
		}
		if o.Class != llmtransport.ClassSuccess || o.Attempts != 3 || o.Model != "flaky" || o.Err != nil ||
			len(o.RequestIDs) != 3 || o.RequestID != lastRequestID(t, gw) {
			t.Errorf("outcome = %+v, want success in 3 attempts", o)
		}
	})
	t.Run("stream", func(t *testing.T) {
		gw := llmtransporttest.NewServer(llmtransporttest.WithScript("flaky", llmtransporttest.Overloaded()))
		defer gw.Close()
		llm := newLangchainLLM(t, gw, "flaky", llmtransport.New(nil, fast...))

		var o llmtransport.Outcome
		var streamed strings.Builder
		got, err := lcAsk(llmtransport.WithRequestOptions(t.Context(), llmtransport.RequestOutcomeInto(&o)), llm,
			llms.WithStreamingFunc(func(_ context.Context, chunk []byte) error {
				streamed.Write(chunk)
				return nil
			}))
		if err != nil {
			t.Fatal(err)
		}
		if got != llmtransporttest.DefaultReply || streamed.String() != llmtransporttest.DefaultReply {
			t.Errorf("reply %q, streamed %q, want %q", got, streamed.String(), llmtransporttest.DefaultReply)
		}
		if n := gw.Requests("flaky"); n != 2 {
			t.Errorf("upstream requests = %d, want 2", n)
		}
		if o.Class != llmtransport.ClassSuccess || o.Attempts != 2 || o.Err != nil {
			t.Errorf("outcome = %+v, want success in 2 attempts", o)
		}
	})
}

// TestLangchaingoCircuitOpen: what langchaingo returns when the transport
// gives up and when the circuit refuses the call, and how the caller keeps
// the transport's answer anyway: RequestOutcomeInto on the context passed
// to GenerateContent, and WithOnOutcome on the transport.
func TestLangchaingoCircuitOpen(t *testing.T) {
	gw := llmtransporttest.NewServer(
		llmtransporttest.WithModel("down", always(llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error: do request failed"))),
		llmtransporttest.WithModel("reset", always(llmtransporttest.ResetBeforeHeaders())))
	defer gw.Close()
	u, err := url.Parse(gw.URL)
	if err != nil {
		t.Fatal(err)
	}
	var hooked []llmtransport.Outcome
	tr := llmtransport.New(nil, append(fast, llmtransport.WithOnOutcome(func(_ context.Context, o llmtransport.Outcome) {
		hooked = append(hooked, o)
	}))...)
	llm := newLangchainLLM(t, gw, "down", tr)

	// The transport gives up on an error status: langchaingo keeps the
	// status and the error body's message as text (new-api writes the
	// request ID into its message), and nothing else: no code, no
	// attempts, no error to unwrap.
	var o llmtransport.Outcome
	ctx := llmtransport.WithRequestOptions(t.Context(), llmtransport.RequestOutcomeInto(&o))
	_, err = lcAsk(ctx, llm)
	if o.Class != llmtransport.ClassUpstreamTransient || o.Code != "do_request_failed" || o.Status != 500 || !o.Retryable ||
		o.Attempts != 1+ourRetries || o.RequestID != lastRequestID(t, gw) || o.Err != nil {
		t.Errorf("gave up: outcome = %+v", o)
	}
	want := "API returned unexpected status code: 500: upstream error: do request failed (request id: " + o.RequestID + ")"
	if err == nil || err.Error() != want {
		t.Fatalf("gave up: langchaingo returned %v, want %q", err, want)
	}
	if errors.Unwrap(err) != nil {
		t.Errorf("gave up: langchaingo's error wraps %v", errors.Unwrap(err))
	}
	if len(hooked) != 1 || hooked[0].Classification != o.Classification || hooked[0].Attempts != o.Attempts || hooked[0].Err != nil {
		t.Errorf("gave up: WithOnOutcome got %+v, want %+v", hooked, o)
	}

	// Failed calls open the circuit of "down" (the default threshold: 3
	// failed calls in the window); the next call is refused unsent.
	for i := 2; i <= llmtransport.DefaultBreakerMinFailures; i++ {
		if _, err := lcAsk(ctx, llm); err == nil || errors.Is(o.Err, llmtransport.ErrCircuitOpen) {
			t.Fatalf("call %d: err %v, outcome %+v; want an error status from the gateway", i, err, o)
		}
	}
	sent := gw.Requests("down")
	if want := llmtransport.DefaultBreakerMinFailures * (1 + ourRetries); sent != want {
		t.Errorf("upstream requests before the circuit opened = %d, want %d", sent, want)
	}
	_, err = lcAsk(ctx, llm)
	if n := gw.Requests("down"); n != sent {
		t.Errorf("the refused call reached the gateway: %d requests, want %d", n, sent)
	}

	// What langchaingo returns: a new error with its own text, which wraps
	// nothing, so neither errors.Is nor errors.As finds the transport's.
	if err == nil || err.Error() != lcFlatNetErr {
		t.Fatalf("open circuit: langchaingo returned %v, want %q", err, lcFlatNetErr)
	}
	if errors.Is(err, llmtransport.ErrCircuitOpen) {
		t.Error("open circuit: errors.Is(err, ErrCircuitOpen) holds on langchaingo's error; the README says it does not")
	}
	var coe *llmtransport.CircuitOpenError
	var ue *url.Error
	if errors.As(err, &coe) || errors.As(err, &ue) || errors.Unwrap(err) != nil {
		t.Errorf("open circuit: langchaingo's error %#v wraps something", err)
	}

	// What the transport kept: the circuit's refusal, with its circuit.
	if !errors.Is(o.Err, llmtransport.ErrCircuitOpen) || !errors.As(o.Err, &coe) {
		t.Fatalf("RequestOutcomeInto: o.Err = %v, want a *CircuitOpenError", o.Err)
	}
	if coe.Model != "down" || coe.Host != u.Host || coe.RetryIn <= 0 {
		t.Errorf("RequestOutcomeInto: circuit %+v, want model down on %s", coe, u.Host)
	}
	// No attempt: the zero Classification, whose Class is ClassSuccess's
	// value, so o.Err is what tells.
	if o.Attempts != 0 || o.Classification != (llmtransport.Classification{}) || o.Model != "down" || o.Host != u.Host {
		t.Errorf("RequestOutcomeInto: outcome %+v, want no attempt on down", o)
	}
	if len(hooked) != llmtransport.DefaultBreakerMinFailures+1 {
		t.Fatalf("WithOnOutcome ran %d times, want %d", len(hooked), llmtransport.DefaultBreakerMinFailures+1)
	}
	if last := hooked[len(hooked)-1]; !errors.Is(last.Err, llmtransport.ErrCircuitOpen) || last.Attempts != 0 || last.Model != "down" {
		t.Errorf("WithOnOutcome: last outcome %+v, want the circuit's refusal", last)
	}

	// A connection the gateway resets comes out of langchaingo with the
	// same text as the open circuit: only the outcome tells them apart.
	rllm := newLangchainLLM(t, gw, "reset", tr)
	var ro llmtransport.Outcome
	_, err = lcAsk(llmtransport.WithRequestOptions(t.Context(), llmtransport.RequestOutcomeInto(&ro)), rllm)
	if err == nil || err.Error() != lcFlatNetErr {
		t.Fatalf("reset: langchaingo returned %v, want %q", err, lcFlatNetErr)
	}
	if ro.Err == nil || errors.Is(ro.Err, llmtransport.ErrCircuitOpen) || ro.Attempts != 1+ourRetries || ro.Model != "reset" {
		t.Errorf("reset: outcome %+v, want a connection error after %d attempts", ro, 1+ourRetries)
	}
}

// TestLangchaingoContextErrors: langchaingo turns the caller's deadline
// and cancellation into errors of its own text too, so errors.Is(err,
// context.DeadlineExceeded) and errors.Is(err, context.Canceled) are false
// on them; the outcome keeps the context's error.
func TestLangchaingoContextErrors(t *testing.T) {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("slow",
		always(llmtransporttest.Delay(time.Second, llmtransporttest.OK()))))
	defer gw.Close()
	llm := newLangchainLLM(t, gw, "slow", llmtransport.New(nil, fast...))

	for _, c := range []struct {
		name, text string
		ctxErr     error
		ctx        func() (context.Context, context.CancelFunc)
	}{
		{"deadline", "request timeout: API call exceeded deadline", context.DeadlineExceeded, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(t.Context(), 20*time.Millisecond)
		}},
		{"cancel", "request cancelled", context.Canceled, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx, cancel
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := c.ctx()
			defer cancel()
			var o llmtransport.Outcome
			_, err := lcAsk(llmtransport.WithRequestOptions(ctx, llmtransport.RequestOutcomeInto(&o)), llm)
			if err == nil || err.Error() != c.text {
				t.Fatalf("langchaingo returned %v, want %q", err, c.text)
			}
			if errors.Is(err, c.ctxErr) || errors.Unwrap(err) != nil {
				t.Errorf("langchaingo's error %#v wraps something", err)
			}
			if !errors.Is(o.Err, c.ctxErr) {
				t.Errorf("RequestOutcomeInto: o.Err = %v, want %v", o.Err, c.ctxErr)
			}
		})
	}
}
