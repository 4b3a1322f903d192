package integration_test

// Fallback chains through the real SDKs, every entry point.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// withChain is fast with the chain down → healthy.
func withChain(more ...llmtransport.Option) []llmtransport.Option {
	opts := append([]llmtransport.Option{}, fast...)
	opts = append(opts, llmtransport.WithFallbacks(map[string][]string{"down": {"healthy"}}))
	return append(opts, more...)
}

// TestSDKFallbackAnswers: a model that fails with a class that triggers a
// fallback is answered by the next model of its chain, plain and streamed,
// through every entry point, with the SDK's own retries on: the primary
// costs 1+ourRetries requests (or one for model_not_found) and the SDK
// sees one success.
func TestSDKFallbackAnswers(t *testing.T) {
	faults := []struct {
		f       llmtransporttest.Fault
		primary int
	}{
		{llmtransporttest.Overloaded(), 1 + ourRetries},
		{llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel"), 1 + ourRetries},
		{llmtransporttest.ResetBeforeHeaders(), 1 + ourRetries},
		{llmtransporttest.OpenAIError(404, "invalid_request_error", "model_not_found", "The model `down` does not exist"), 1},
		{llmtransporttest.ErrorFirstStream(), 1 + ourRetries},
	}
	for _, ep := range entryPoints {
		for _, fc := range faults {
			for _, stream := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/stream=%t", ep.name, fc.f.Name(), stream), func(t *testing.T) {
					gw := llmtransporttest.NewServer(llmtransporttest.WithModel("down", always(fc.f)))
					defer gw.Close()
					c := ep.newClient(gw, withChain())
					call := c.complete
					if stream {
						call = c.stream
					}
					r, err := call(t.Context(), "down")
					if err != nil {
						t.Fatalf("got %v, want the fallback's answer", err)
					}
					if r.content != llmtransporttest.DefaultReply {
						t.Errorf("got %q", r.content)
					}
					if got := gw.Requests("down"); got != fc.primary {
						t.Errorf("the primary got %d requests, want %d", got, fc.primary)
					}
					if got := gw.Requests("healthy"); got != 1 {
						t.Errorf("the fallback got %d requests, want 1", got)
					}
				})
			}
		}
	}
}

// TestSDKFallbackNever: the caller's own errors are not fallen back on:
// the SDK gets the primary's error, and the next model no request.
func TestSDKFallbackNever(t *testing.T) {
	faults := []llmtransporttest.Fault{
		llmtransporttest.OpenAIError(400, "invalid_request_error", "invalid_value", "Invalid value for 'temperature'"),
		llmtransporttest.OpenAIError(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided"),
		llmtransporttest.OpenAIError(403, "invalid_request_error", "model_not_allowed", "not allowed"),
		llmtransporttest.InsufficientQuota(),
		llmtransporttest.OpenAIError(400, "invalid_request_error", "context_length_exceeded", "maximum context length is 8192 tokens"),
	}
	for _, ep := range entryPoints {
		for _, f := range faults {
			t.Run(ep.name+"/"+f.Name(), func(t *testing.T) {
				gw := llmtransporttest.NewServer(llmtransporttest.WithModel("down", always(f)))
				defer gw.Close()
				_, err := ep.newClient(gw, withChain()).complete(t.Context(), "down")
				if _, ok := ep.newClient(gw, nil).apiError(err); !ok {
					t.Fatalf("got %v, want the SDK's API error", err)
				}
				if gw.Requests("healthy") != 0 || gw.Requests("down") != 1 {
					t.Errorf("down %d, healthy %d requests", gw.Requests("down"), gw.Requests("healthy"))
				}
			})
		}
	}
}

// TestSDKFallbackEveryTargetFails: when the chain fails too, openai-go
// gets the primary's real error, marked X-Should-Retry: false, so its own
// retries do not run the chain again.
func TestSDKFallbackEveryTargetFails(t *testing.T) {
	gw := llmtransporttest.NewServer(
		llmtransporttest.WithModel("down", always(llmtransporttest.NewAPIError(500, "do_request_failed", "primary failed"))),
		llmtransporttest.WithModel("healthy", always(llmtransporttest.Overloaded())),
	)
	defer gw.Close()
	hc := &http.Client{Transport: llmtransport.New(nil, withChain()...)}
	c := openai.NewClient(option.WithBaseURL(gw.URL+"/v1/"), option.WithAPIKey("sk-test"), option.WithHTTPClient(hc))
	_, err := c.Chat.Completions.New(t.Context(), chatParams("down"))
	ae, ok := openaiGo{}.apiError(err)
	if !ok || ae.status != 500 || ae.code != "do_request_failed" || ae.shouldRetry != "false" {
		t.Fatalf("got %v (%+v), want the primary's 500", err, ae)
	}
	// down: 1 + ourRetries, which use the chain's retries: healthy gets one.
	if d, h := gw.Requests("down"), gw.Requests("healthy"); d != 1+ourRetries || h != 1 {
		t.Errorf("down %d, healthy %d requests; want %d and 1", d, h, 1+ourRetries)
	}
}

// TestSDKFallbackMidStream: an error after the stream's first content is
// the caller's: no fallback, the SDK sees the content and then the error.
func TestSDKFallbackMidStream(t *testing.T) {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("down", always(llmtransporttest.MidStreamError(2))))
	defer gw.Close()
	c := entryPoints[0].newClient(gw, withChain())
	r, err := c.stream(t.Context(), "down")
	if err == nil || r.content == "" || !strings.HasPrefix(llmtransporttest.DefaultReply, r.content) {
		t.Errorf("got %q, %v; want the first words and the stream's error", r.content, err)
	}
	if gw.Requests("healthy") != 0 || gw.Requests("down") != 1 {
		t.Errorf("down %d, healthy %d requests", gw.Requests("down"), gw.Requests("healthy"))
	}
}

// TestSDKFallbackHeaders: the raw response says which model answered.
func TestSDKFallbackHeaders(t *testing.T) {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("down", always(llmtransporttest.Overloaded())))
	defer gw.Close()
	tr := llmtransport.New(nil, withChain()...)
	c := openai.NewClient(option.WithBaseURL(gw.URL+"/v1/"), option.WithAPIKey("sk-test"), option.WithMiddleware(tr.Middleware))
	var raw *http.Response
	cc, err := c.Chat.Completions.New(context.Background(), chatParams("down"), option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	fb, ok := llmtransport.FallbackOf(raw)
	if !ok || fb != (llmtransport.Fallback{Model: "healthy", From: "down", Reason: "overloaded"}) || cc.Model != "healthy" {
		t.Errorf("%+v, response model %q", fb, cc.Model)
	}
	// What the SDK wrote, byte for byte, with only the model changed.
	log := gw.Log()
	first, last := log[0], log[len(log)-1]
	if want := strings.Replace(string(first.Body), `"model":"down"`, `"model":"healthy"`, 1); first.Model != "down" || string(last.Body) != want {
		t.Errorf("the fallback got\n%s\nwant\n%s", last.Body, want)
	}
	for _, h := range []string{"Authorization", "Content-Type", "User-Agent", "X-Stainless-Lang", "Idempotency-Key"} {
		if first.Header.Get(h) != last.Header.Get(h) {
			t.Errorf("%s: %q, then %q", h, first.Header.Get(h), last.Header.Get(h))
		}
	}
}

// TestSDKFallbackCrossHost: openai-go's call for a model that gateway A
// cannot serve is answered by gateway B, with B's key, through a route.
func TestSDKFallbackCrossHost(t *testing.T) {
	a := llmtransporttest.NewServer(llmtransporttest.WithModel("down",
		always(llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel"))))
	defer a.Close()
	b := llmtransporttest.NewServer(llmtransporttest.WithAPIKey("sk-key-of-b"))
	defer b.Close()
	hostB := strings.TrimPrefix(b.URL, "http://")
	tr := llmtransport.New(nil, append(append([]llmtransport.Option{}, fast...),
		llmtransport.WithFallbacks(map[string][]string{"down": {"down at B"}}),
		llmtransport.WithFallbackRoute("down at B", "healthy", func(r *http.Request) {
			r.URL.Host, r.Host = hostB, ""
			r.Header.Set("Authorization", "Bearer sk-key-of-b")
		}))...)
	for _, stream := range []bool{false, true} {
		c := openaiGoClient(a, option.WithHTTPClient(&http.Client{Transport: tr}))
		call := c.complete
		if stream {
			call = c.stream
		}
		r, err := call(t.Context(), "down")
		if err != nil || r.content != llmtransporttest.DefaultReply {
			t.Fatalf("stream=%t: got %q, %v", stream, r.content, err)
		}
	}
	if a.Requests("healthy") != 0 || b.Requests("healthy") != 2 || b.Requests("down") != 0 {
		t.Errorf("A: down %d, healthy %d; B: healthy %d", a.Requests("down"), a.Requests("healthy"), b.Requests("healthy"))
	}
}
