package llmtransport_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/llmtransport/llmtransport"
)

// A failing model trips its own circuit: its requests then fail fast with
// ErrCircuitOpen, without reaching the server, while other models behind the
// same gateway keep working.
func ExampleWithBreakerThreshold() {
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Model string }
		json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		if req.Model == "broken-model" {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, `{"error":{"message":"upstream error","type":"upstream_error"}}`)
			return
		}
		fmt.Fprint(w, `{"choices":[{"message":{"content":"hello"}}]}`)
	}))
	defer gateway.Close()

	client := &http.Client{Transport: llmtransport.New(nil,
		llmtransport.WithMaxRetries(0),
		llmtransport.WithBreakerThreshold(0.5, 3),
		llmtransport.WithOnCircuitStateChange(func(ch llmtransport.CircuitStateChange) {
			fmt.Printf("circuit of %s: %s → %s\n", ch.Model, ch.From, ch.To)
		}),
	)}
	chat := func(model string) {
		body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
		resp, err := client.Post(gateway.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
		var open *llmtransport.CircuitOpenError
		switch {
		case errors.As(err, &open):
			fmt.Printf("%s: refused, circuit open (ErrCircuitOpen: %v)\n", open.Model, errors.Is(err, llmtransport.ErrCircuitOpen))
		case err != nil:
			fmt.Println(err)
		default:
			resp.Body.Close()
			fmt.Printf("%s: %d\n", model, resp.StatusCode)
		}
	}
	for range 4 {
		chat("broken-model")
		chat("good-model")
	}
	// Output:
	// broken-model: 502
	// good-model: 200
	// broken-model: 502
	// good-model: 200
	// circuit of broken-model: closed → open
	// broken-model: 502
	// good-model: 200
	// broken-model: refused, circuit open (ErrCircuitOpen: true)
	// good-model: 200
}

// Circuits reports the state of every (host, model) circuit, for
// dashboards. ContextWithModel names the model when the request does not
// (here, a GET without a body).
func ExampleTransport_Circuits() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer upstream.Close()

	tr := llmtransport.New(nil, llmtransport.WithMaxRetries(0), llmtransport.WithBreakerThreshold(0.5, 2))
	client := &http.Client{Transport: tr}
	ctx := llmtransport.ContextWithModel(context.Background(), "tts-1")
	for range 3 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, upstream.URL+"/v1/audio/status", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	for _, c := range tr.Circuits() {
		fmt.Printf("%s: %s, next probe within 10s: %v\n", c.Model, c.State, c.RetryIn > 0 && c.RetryIn <= 10*time.Second)
		fmt.Printf("the window that opened it: %d calls, %d failed\n", c.Requests, c.Failures)
	}
	// Output:
	// tts-1: open, next probe within 10s: true
	// the window that opened it: 2 calls, 2 failed
}
