package integration_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	goopenai "github.com/sashabaranov/go-openai"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// TestOutcomeThroughOpenAIGo: the outcome reaches the caller through
// openai-go's error (apierror.Error.Response) and option.WithResponseInto,
// whichever way the transport is plugged in; it keeps the server's verdict
// that Classify, run again on the handed-back response, loses to our own
// X-Should-Retry: false.
func TestOutcomeThroughOpenAIGo(t *testing.T) {
	plug := map[string]func(*llmtransport.Transport) option.RequestOption{
		"WithHTTPClient": func(tr *llmtransport.Transport) option.RequestOption {
			return option.WithHTTPClient(&http.Client{Transport: tr})
		},
		"WithMiddleware": func(tr *llmtransport.Transport) option.RequestOption {
			return option.WithMiddleware(tr.Middleware)
		},
	}
	for name, p := range plug {
		t.Run(name, func(t *testing.T) {
			gw := llmtransporttest.NewServer(
				llmtransporttest.WithModel("down", always(llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error: do request failed"))),
				llmtransporttest.WithScript("flaky", llmtransporttest.Overloaded(), llmtransporttest.OK()))
			defer gw.Close()
			tr := llmtransport.New(nil, fast...)
			c := openai.NewClient(option.WithBaseURL(gw.URL+"/v1/"), option.WithAPIKey("sk-test"), p(tr))

			// The error's response.
			_, err := c.Chat.Completions.New(t.Context(), chatParams("down"))
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("got %v, want *openai.Error", err)
			}
			o, ok := llmtransport.OutcomeOf(apiErr.Response)
			if !ok {
				t.Fatal("OutcomeOf(apiErr.Response): no outcome")
			}
			if o.Class != llmtransport.ClassUpstreamTransient || o.Code != "do_request_failed" || !o.Retryable ||
				o.Attempts != 1+ourRetries || len(o.RequestIDs) != 1+ourRetries || o.RequestID != lastRequestID(t, gw) || o.Model != "down" {
				t.Errorf("outcome = %+v", o)
			}
			if again := llmtransport.Classify(apiErr.Response, []byte(apiErr.RawJSON())); again.Retryable {
				t.Error("Classify on the handed-back response: Retryable, want false (X-Should-Retry: false)")
			}

			// option.WithResponseInto.
			var raw *http.Response
			if _, err := c.Chat.Completions.New(t.Context(), chatParams("flaky"), option.WithResponseInto(&raw)); err != nil {
				t.Fatal(err)
			}
			o, ok = llmtransport.OutcomeOf(raw)
			if !ok || o.Class != llmtransport.ClassSuccess || o.Attempts != 2 || !o.Retried() || o.Model != "flaky" || len(o.RequestIDs) != 2 {
				t.Errorf("WithResponseInto: outcome = %+v, %v; want success in 2 attempts", o, ok)
			}
		})
	}
}

// TestOutcomeThroughGoOpenAI: go-openai's APIError keeps no response, so
// the outcome comes through RequestOutcomeInto or WithOnOutcome, and with
// it errors.Is(err, ErrCircuitOpen) even where a client flattens errors.
func TestOutcomeThroughGoOpenAI(t *testing.T) {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("down",
		always(llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel"))))
	defer gw.Close()
	var hooked []llmtransport.Outcome
	tr := llmtransport.New(nil, append(fast, llmtransport.WithOnOutcome(func(_ context.Context, o llmtransport.Outcome) {
		hooked = append(hooked, o)
	}))...)
	cfg := goopenai.DefaultConfig("sk-test")
	cfg.BaseURL = gw.URL + "/v1"
	cfg.HTTPClient = &http.Client{Transport: tr}
	c := goopenai.NewClientWithConfig(cfg)

	var o llmtransport.Outcome
	ctx := llmtransport.WithRequestOptions(t.Context(), llmtransport.RequestOutcomeInto(&o))
	_, err := c.CreateChatCompletion(ctx, goChatRequest("down"))
	var apiErr *goopenai.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("got %v, want *goopenai.APIError", err)
	}
	if o.Code != "get_channel_failed" || o.Attempts != 1+ourRetries || o.Status != 503 || o.RequestID != lastRequestID(t, gw) {
		t.Errorf("RequestOutcomeInto: %+v", o)
	}
	for range 50 {
		if _, err := c.CreateChatCompletion(ctx, goChatRequest("down")); err == nil {
			t.Fatal("a dead model answered")
		}
		if errors.Is(o.Err, llmtransport.ErrCircuitOpen) {
			break
		}
	}
	if !errors.Is(o.Err, llmtransport.ErrCircuitOpen) {
		t.Skip("needs breaker: 50 failing calls did not open the circuit")
	}
	if last := hooked[len(hooked)-1]; !errors.Is(last.Err, llmtransport.ErrCircuitOpen) || last.Attempts != 0 {
		t.Errorf("WithOnOutcome: last outcome %+v, want the circuit's refusal", last)
	}
}
