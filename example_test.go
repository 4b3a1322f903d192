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
