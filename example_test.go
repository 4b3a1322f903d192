package llmtransport_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// WrapClient adds the transport to an existing http.Client without changing
// it. After the last retry the caller gets the gateway's real response.
func ExampleWrapClient() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("gpt-4o-mini",
		func(int) llmtransporttest.Fault {
			return llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel")
		}))
	defer gw.Close()

	client := llmtransport.WrapClient(&http.Client{},
		llmtransport.WithMaxRetries(2),
		llmtransport.WithBackoff(time.Millisecond, 10*time.Millisecond),
		llmtransport.WithoutCircuitBreaker())
	resp, err := client.Post(gw.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, resp.Header.Get("X-Should-Retry"))
	fmt.Println(string(body))
	fmt.Println("upstream requests:", gw.Requests("gpt-4o-mini"))
	// Output:
	// 503 false
	// {"error":{"code":"get_channel_failed","message":"no available channel (request id: req_000003)","param":"","type":"new_api_error"}}
	// upstream requests: 3
}

// Middleware runs a request through the transport's layers and sends each
// attempt through next: here an http.Client's Do, as openai-go's and
// anthropic-sdk-go's option.WithMiddleware call it (see the integration
// module's Example_middleware for openai-go itself).
func ExampleTransport_Middleware() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("gpt-4o-mini",
		llmtransporttest.Overloaded()))
	defer gw.Close()

	tr := llmtransport.New(nil, llmtransport.WithBackoff(time.Millisecond, 10*time.Millisecond))
	req, err := http.NewRequest(http.MethodPost, gw.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := tr.Middleware(req, http.DefaultClient.Do)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Println(resp.StatusCode)
	fmt.Println("upstream requests:", gw.Requests("gpt-4o-mini"))
	// Output:
	// 200
	// upstream requests: 2
}
