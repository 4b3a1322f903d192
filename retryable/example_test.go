package retryable_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
	"github.com/llmtransport/llmtransport/retryable"
)

// go-retryablehttp outside, llmtransport inside as the Transport of its
// HTTPClient: llmtransport retries (1 + 3 attempts), go-retryablehttp does
// not multiply them, quota errors are sent once, and an open circuit comes
// back at once as ErrCircuitOpen.
func Example() {
	gw := llmtransporttest.NewServer(
		llmtransporttest.WithScript("flaky", // fails twice, then answers
			llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error"),
			llmtransporttest.Overloaded()),
		llmtransporttest.WithModel("broke", func(int) llmtransporttest.Fault { return llmtransporttest.InsufficientQuota() }),
	)
	defer gw.Close()

	tr := llmtransport.New(nil, llmtransport.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	client := retryable.NewClient(tr)
	// Or, on a Client of your own:
	//	c.CheckRetry, c.Backoff = retryable.CheckRetry, retryable.Backoff
	//	c.HTTPClient = &http.Client{Transport: tr}

	for _, model := range []string{"flaky", "broke"} {
		req, _ := retryablehttp.NewRequest(http.MethodPost, gw.URL+"/v1/chat/completions",
			[]byte(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if errors.Is(err, llmtransport.ErrCircuitOpen) {
			fmt.Println("circuit open:", err)
			continue
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Printf("%s: %d after %d upstream requests\n", model, resp.StatusCode, gw.Requests(model))
	}
	// Output:
	// flaky: 200 after 3 upstream requests
	// broke: 429 after 1 upstream requests
}
