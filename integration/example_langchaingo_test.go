package integration_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tmc/langchaingo/llms"
	lcopenai "github.com/tmc/langchaingo/llms/openai"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// The transport under langchaingo's OpenAI LLM, as its HTTP client.
// langchaingo has no retries of its own: the transport is the retry layer.
func Example_langchaingo() {
	// A gateway whose model fails twice, then answers.
	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("gpt-4o-mini",
		llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error: do request failed"),
		llmtransporttest.Overloaded()))
	defer gw.Close()

	llm, err := lcopenai.New(
		lcopenai.WithToken("sk-example"),
		lcopenai.WithModel("gpt-4o-mini"),
		lcopenai.WithBaseURL(gw.URL+"/v1"),
		lcopenai.WithHTTPClient(&http.Client{Transport: llmtransport.New(nil,
			llmtransport.WithBackoff(time.Millisecond, 10*time.Millisecond))}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp, err := llm.GenerateContent(context.Background(),
		[]llms.MessageContent{llms.TextParts(llms.ChatMessageTypeHuman, "Say hello")})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Choices[0].Content)
	fmt.Println("upstream requests:", gw.Requests("gpt-4o-mini"))
	// Output:
	// Hello from the fake gateway.
	// upstream requests: 3
}

// langchaingo replaces an error of its HTTP client with one of its own
// text that wraps nothing, so errors.Is(err, llmtransport.ErrCircuitOpen)
// is false on what it returns. The transport's outcome, asked for on the
// context of the call, keeps the circuit's refusal.
func Example_langchaingoCircuitOpen() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("gpt-4o-mini",
		func(int) llmtransporttest.Fault {
			return llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error: do request failed")
		}))
	defer gw.Close()

	// One failed call opens the circuit here (the default is 3 in 30 s).
	tr := llmtransport.New(nil, llmtransport.WithMaxRetries(0), llmtransport.WithBreakerThreshold(0.5, 1))
	llm, err := lcopenai.New(
		lcopenai.WithToken("sk-example"),
		lcopenai.WithModel("gpt-4o-mini"),
		lcopenai.WithBaseURL(gw.URL+"/v1"),
		lcopenai.WithHTTPClient(&http.Client{Transport: tr}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 2 {
		var o llmtransport.Outcome
		ctx := llmtransport.WithRequestOptions(context.Background(), llmtransport.RequestOutcomeInto(&o))
		_, err := llm.GenerateContent(ctx,
			[]llms.MessageContent{llms.TextParts(llms.ChatMessageTypeHuman, "Say hello")})
		fmt.Println("langchaingo:", err)
		fmt.Println("  errors.Is(err, ErrCircuitOpen):", errors.Is(err, llmtransport.ErrCircuitOpen))
		fmt.Println("  errors.Is(o.Err, ErrCircuitOpen):", errors.Is(o.Err, llmtransport.ErrCircuitOpen))
		fmt.Printf("  attempts: %d, code: %q\n", o.Attempts, o.Code)
	}
	fmt.Println("upstream requests:", gw.Requests("gpt-4o-mini"))
	// Output:
	// langchaingo: API returned unexpected status code: 500: upstream error: do request failed (request id: req_000001)
	//   errors.Is(err, ErrCircuitOpen): false
	//   errors.Is(o.Err, ErrCircuitOpen): false
	//   attempts: 1, code: "do_request_failed"
	// langchaingo: network error: failed to reach API server
	//   errors.Is(err, ErrCircuitOpen): false
	//   errors.Is(o.Err, ErrCircuitOpen): true
	//   attempts: 0, code: ""
	// upstream requests: 1
}
