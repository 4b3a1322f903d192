package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	goopenai "github.com/sashabaranov/go-openai"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// The transport under openai-go, as its HTTP client. openai-go retries
// transport errors on its own, so turn its retries off: the transport is
// the one retry layer.
func Example_openaiGo() {
	// A gateway whose model fails twice the way new-api does, then answers.
	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("gpt-4o-mini",
		llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error: do request failed"),
		llmtransporttest.Overloaded()))
	defer gw.Close()

	client := openai.NewClient(
		option.WithBaseURL(gw.URL+"/v1/"),
		option.WithAPIKey("sk-example"),
		option.WithHTTPClient(&http.Client{Transport: llmtransport.New(nil,
			llmtransport.WithBackoff(time.Millisecond, 10*time.Millisecond))}),
		option.WithMaxRetries(0),
	)
	cc, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cc.Choices[0].Message.Content)
	fmt.Println("upstream requests:", gw.Requests("gpt-4o-mini"))
	// Output:
	// Hello from the fake gateway.
	// upstream requests: 3
}

// The transport as an openai-go middleware ([llmtransport.Transport.Middleware]),
// for a client whose HTTP client is set elsewhere. Streams work through it
// unchanged.
func Example_middleware() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("gpt-4o-mini",
		llmtransporttest.RateLimited(llmtransporttest.RetryAfterMs, 5*time.Millisecond)))
	defer gw.Close()

	tr := llmtransport.New(nil)
	client := openai.NewClient(
		option.WithBaseURL(gw.URL+"/v1/"),
		option.WithAPIKey("sk-example"),
		option.WithMiddleware(tr.Middleware),
		option.WithMaxRetries(0),
	)
	stream := client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
	})
	defer stream.Close()
	var text strings.Builder
	for stream.Next() {
		if ch := stream.Current(); len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(text.String())
	fmt.Println("upstream requests:", gw.Requests("gpt-4o-mini"))
	// Output:
	// Hello from the fake gateway.
	// upstream requests: 2
}

// The transport under go-openai, which has no retries of its own.
func Example_goOpenAI() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("gpt-4o-mini",
		llmtransporttest.BadGatewayHTML()))
	defer gw.Close()

	cfg := goopenai.DefaultConfig("sk-example")
	cfg.BaseURL = gw.URL + "/v1"
	cfg.HTTPClient = &http.Client{Transport: llmtransport.New(nil,
		llmtransport.WithBackoff(time.Millisecond, 10*time.Millisecond))}
	client := goopenai.NewClientWithConfig(cfg)

	resp, err := client.CreateChatCompletion(context.Background(), goopenai.ChatCompletionRequest{
		Model:    "gpt-4o-mini",
		Messages: []goopenai.ChatCompletionMessage{{Role: goopenai.ChatMessageRoleUser, Content: "Say hello"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Choices[0].Message.Content)
	fmt.Println("request ID:", resp.Header().Get("X-Request-Id"))
	// Output:
	// Hello from the fake gateway.
	// request ID: req_000002
}
