package integration_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// The transport under anthropic-sdk-go, as its HTTP client (or, keeping
// the SDK's client, aoption.WithMiddleware(tr.Middleware)). The SDK retries
// connection errors, an open circuit among them, so turn its retries off:
// the transport is the one retry layer.
func Example_anthropic() {
	// A Messages API whose model is overloaded twice (529), then answers.
	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("claude-sonnet-4-5",
		llmtransporttest.Overloaded(), llmtransporttest.Overloaded()))
	defer gw.Close()

	tr := llmtransport.New(nil, llmtransport.WithBackoff(time.Millisecond, 10*time.Millisecond))
	client := anthropic.NewClient(
		aoption.WithBaseURL(gw.URL),
		aoption.WithAPIKey("sk-ant-example"),
		aoption.WithHTTPClient(&http.Client{Transport: tr}),
		aoption.WithMaxRetries(0),
	)
	m, err := client.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-5",
		MaxTokens: 256,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello"))},
	})
	var apiErr *anthropic.Error
	switch {
	case errors.Is(err, llmtransport.ErrCircuitOpen):
		fmt.Println("the model's circuit is open:", err)
		return
	case errors.As(err, &apiErr):
		fmt.Println(apiErr.StatusCode, apiErr.Type(), apiErr.RequestID) // the gateway's last real answer
		return
	case err != nil:
		fmt.Println(err)
		return
	}
	fmt.Println(m.Content[0].Text)
	fmt.Println("upstream requests:", gw.Requests("claude-sonnet-4-5"))
	// Output:
	// Hello from the fake gateway.
	// upstream requests: 3
}
