package llmtransporttest_test

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/llmtransport/llmtransport/llmtransporttest"
)

func ExampleNewServer() {
	// "flaky" fails once the way new-api does, then answers.
	gw := llmtransporttest.NewServer(
		llmtransporttest.WithScript("flaky",
			llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error: do request failed")),
	)
	defer gw.Close()

	for range 2 {
		resp, err := http.Post(gw.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"flaky","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	fmt.Println("requests:", gw.Requests("flaky"), "failed:", gw.FaultCount("new_api:do_request_failed"))
	// Output:
	// 500 req_000001
	// 200 req_000002
	// requests: 2 failed: 1
}
