package llmtransport_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// A call for a model that cannot answer is answered by the next model of
// its chain; the response says which, and why.
func ExampleWithFallbacks() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("gpt-4o",
		func(int) llmtransporttest.Fault { return llmtransporttest.Overloaded() }))
	defer gw.Close()

	client := &http.Client{Transport: llmtransport.New(nil,
		llmtransport.WithMaxRetries(0),
		llmtransport.WithFallbacks(map[string][]string{"gpt-4o": {"gpt-4o-mini"}}),
	)}
	resp, err := client.Post(gw.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		panic(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fb, _ := llmtransport.FallbackOf(resp)
	fmt.Println(resp.StatusCode, fb.Model, "answered for", fb.From+":", fb.Reason)
	// Output: 200 gpt-4o-mini answered for gpt-4o: overloaded
}

// A fallback target on another gateway, with another key: the chain names
// the target, the route says where it goes.
func ExampleWithFallbackRoute() {
	gatewayA := llmtransporttest.NewServer(llmtransporttest.WithModel("gpt-4o",
		func(int) llmtransporttest.Fault { return llmtransporttest.Overloaded() }))
	defer gatewayA.Close()
	gatewayB := llmtransporttest.NewServer(llmtransporttest.WithAPIKey("sk-key-of-b"))
	defer gatewayB.Close()
	hostB := strings.TrimPrefix(gatewayB.URL, "http://")

	client := &http.Client{Transport: llmtransport.New(nil,
		llmtransport.WithMaxRetries(0),
		llmtransport.WithFallbacks(map[string][]string{"gpt-4o": {"gpt-4o on B"}}),
		llmtransport.WithFallbackRoute("gpt-4o on B", "gpt-4o", func(r *http.Request) {
			r.URL.Host, r.Host = hostB, "" // r is the transport's copy
			r.Header.Set("Authorization", "Bearer sk-key-of-b")
		}),
	)}
	req, _ := http.NewRequest("POST", gatewayA.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-key-of-a")
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "A got", gatewayA.Total(), "request, B got", gatewayB.Requests("gpt-4o"))
	// Output: 200 A got 1 request, B got 1
}
