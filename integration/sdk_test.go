package integration_test

// Integration tests with the real SDKs (openai-go v3 and go-openai) against
// the fake gateway of llmtransporttest, through every entry point.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	goopenai "github.com/sashabaranov/go-openai"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// ourRetries is the number of retries the transport makes in these tests.
const ourRetries = 2

// fast are the options of every transport in these tests: a known number of
// retries and millisecond backoff so that the tests run quickly.
var fast = []llmtransport.Option{
	llmtransport.WithMaxRetries(ourRetries),
	llmtransport.WithBackoff(time.Millisecond, 5*time.Millisecond),
}

// reply is what a successful call returned.
type reply struct {
	content   string
	requestID string
}

// apiError is what the SDK's error type tells once the transport gave up.
type apiError struct {
	status      int
	code        string
	message     string
	requestID   string // "" when the SDK's error cannot carry it
	shouldRetry string // the X-Should-Retry header, "" when not reachable
}

// chatClient is one SDK, plugged into the transport one way.
type chatClient interface {
	complete(ctx context.Context, model string) (reply, error)
	stream(ctx context.Context, model string) (reply, error)
	apiError(err error) (apiError, bool)
}

// entryPoint is one way of plugging the transport into an SDK.
type entryPoint struct {
	name string
	// sdkRetries reports whether the SDK retries on its own.
	sdkRetries bool
	// newClient returns a client of gw whose calls go through a Transport
	// made with opts. sdkOpts are client options for openai-go (ignored by
	// go-openai, which has no retries of its own).
	newClient func(gw *llmtransporttest.Server, opts []llmtransport.Option, sdkOpts ...option.RequestOption) chatClient
}

// openaiGoClient returns an openai-go client of gw with a test key and
// opts on top.
func openaiGoClient(gw *llmtransporttest.Server, opts ...option.RequestOption) chatClient {
	base := []option.RequestOption{option.WithBaseURL(gw.URL + "/v1/"), option.WithAPIKey("sk-test")}
	return openaiGo{openai.NewClient(append(base, opts...)...)}
}

// entryPoints are the ways every test plugs the transport into an SDK.
var entryPoints = []entryPoint{
	{
		name: "openai-go/WithHTTPClient", sdkRetries: true,
		newClient: func(gw *llmtransporttest.Server, opts []llmtransport.Option, sdkOpts ...option.RequestOption) chatClient {
			hc := &http.Client{Transport: llmtransport.New(nil, opts...)}
			return openaiGoClient(gw, append([]option.RequestOption{option.WithHTTPClient(hc)}, sdkOpts...)...)
		},
	},
	{
		name: "openai-go/WithMiddleware", sdkRetries: true,
		newClient: func(gw *llmtransporttest.Server, opts []llmtransport.Option, sdkOpts ...option.RequestOption) chatClient {
			tr := llmtransport.New(nil, opts...)
			return openaiGoClient(gw, append([]option.RequestOption{option.WithMiddleware(tr.Middleware)}, sdkOpts...)...)
		},
	},
	{
		name: "openai-go/WrapClient", sdkRetries: true,
		newClient: func(gw *llmtransporttest.Server, opts []llmtransport.Option, sdkOpts ...option.RequestOption) chatClient {
			hc := llmtransport.WrapClient(&http.Client{}, opts...)
			return openaiGoClient(gw, append([]option.RequestOption{option.WithHTTPClient(hc)}, sdkOpts...)...)
		},
	},
	{
		name: "go-openai/HTTPClient",
		newClient: func(gw *llmtransporttest.Server, opts []llmtransport.Option, _ ...option.RequestOption) chatClient {
			cfg := goopenai.DefaultConfig("sk-test")
			cfg.BaseURL = gw.URL + "/v1"
			cfg.HTTPClient = &http.Client{Transport: llmtransport.New(nil, opts...)}
			return goOpenAI{goopenai.NewClientWithConfig(cfg)}
		},
	},
}

// --- openai-go ---

// openaiGo is a chatClient over openai-go v3.
type openaiGo struct{ c openai.Client }

// chatParams is a one-message chat request to model, for openai-go.
func chatParams(model string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	}
}

// complete makes a plain chat call.
func (o openaiGo) complete(ctx context.Context, model string) (reply, error) {
	var raw *http.Response
	cc, err := o.c.Chat.Completions.New(ctx, chatParams(model), option.WithResponseInto(&raw))
	var r reply
	if raw != nil {
		r.requestID = raw.Header.Get("X-Request-Id")
	}
	if err != nil {
		return r, err
	}
	if len(cc.Choices) == 0 {
		return r, errors.New("no choices")
	}
	r.content = cc.Choices[0].Message.Content
	return r, nil
}

// stream makes a streamed chat call and gathers its content.
func (o openaiGo) stream(ctx context.Context, model string) (reply, error) {
	var raw *http.Response
	s := o.c.Chat.Completions.NewStreaming(ctx, chatParams(model), option.WithResponseInto(&raw))
	defer s.Close()
	var b strings.Builder
	for s.Next() {
		if ch := s.Current(); len(ch.Choices) > 0 {
			b.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	r := reply{content: b.String()}
	if raw != nil {
		r.requestID = raw.Header.Get("X-Request-Id")
	}
	return r, s.Err()
}

// apiError reads openai-go's *openai.Error.
func (openaiGo) apiError(err error) (apiError, bool) {
	var e *openai.Error
	if !errors.As(err, &e) {
		return apiError{}, false
	}
	return apiError{
		status: e.StatusCode, code: e.Code, message: e.Message,
		requestID:   e.Response.Header.Get("X-Request-Id"),
		shouldRetry: e.Response.Header.Get("X-Should-Retry"),
	}, true
}

// --- go-openai ---

// goOpenAI is a chatClient over go-openai.
type goOpenAI struct{ c *goopenai.Client }

// goChatRequest is a one-message chat request to model, for go-openai.
func goChatRequest(model string) goopenai.ChatCompletionRequest {
	return goopenai.ChatCompletionRequest{
		Model:    model,
		Messages: []goopenai.ChatCompletionMessage{{Role: goopenai.ChatMessageRoleUser, Content: "hi"}},
	}
}

// complete makes a plain chat call.
func (g goOpenAI) complete(ctx context.Context, model string) (reply, error) {
	resp, err := g.c.CreateChatCompletion(ctx, goChatRequest(model))
	r := reply{requestID: resp.Header().Get("X-Request-Id")}
	if err != nil {
		return r, err
	}
	if len(resp.Choices) == 0 {
		return r, errors.New("no choices")
	}
	r.content = resp.Choices[0].Message.Content
	return r, nil
}

// stream makes a streamed chat call and gathers its content.
func (g goOpenAI) stream(ctx context.Context, model string) (reply, error) {
	s, err := g.c.CreateChatCompletionStream(ctx, goChatRequest(model))
	if err != nil {
		return reply{}, err
	}
	defer s.Close()
	r := reply{requestID: s.Header().Get("X-Request-Id")}
	var b strings.Builder
	for {
		chunk, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r.content = b.String()
			return r, err
		}
		if len(chunk.Choices) > 0 {
			b.WriteString(chunk.Choices[0].Delta.Content)
		}
	}
	r.content = b.String()
	return r, nil
}

// newAPIRequestID finds the request ID new-api appends to its messages.
var newAPIRequestID = regexp.MustCompile(`\(request id: ([^)]+)\)`)

// apiError reads go-openai's *APIError.
func (goOpenAI) apiError(err error) (apiError, bool) {
	var e *goopenai.APIError
	if !errors.As(err, &e) {
		return apiError{}, false
	}
	a := apiError{status: e.HTTPStatusCode, message: e.Message}
	if e.Code != nil {
		a.code = fmt.Sprint(e.Code)
	}
	// go-openai's error keeps no headers; new-api repeats the ID in the message.
	if m := newAPIRequestID.FindStringSubmatch(e.Message); m != nil {
		a.requestID = m[1]
	}
	return a, true
}

// --- tests ---

// always is a fault script that serves f to every request.
func always(f llmtransporttest.Fault) func(int) llmtransporttest.Fault {
	return func(int) llmtransporttest.Fault { return f }
}

// lastRequestID is the x-request-id of the last request the gateway answered.
func lastRequestID(t *testing.T, gw *llmtransporttest.Server) string {
	t.Helper()
	log := gw.Log()
	if len(log) == 0 {
		t.Fatal("the gateway received no request")
	}
	return log[len(log)-1].RequestID
}

// TestSDKGiveUpOnce checks that a model failing every time costs exactly
// 1+ourRetries upstream requests even with openai-go's default retries (2):
// the transport marks the response it gives up on X-Should-Retry: false,
// so the SDK does not retry it 3×(1+ourRetries) times. The SDK's error then
// carries the gateway's real status, code, message and request ID.
func TestSDKGiveUpOnce(t *testing.T) {
	for _, ep := range entryPoints {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%t", ep.name, stream), func(t *testing.T) {
				gw := llmtransporttest.NewServer(llmtransporttest.WithModel("down",
					always(llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error: do request failed"))))
				defer gw.Close()
				c := ep.newClient(gw, fast) // the SDK's default retries

				call := c.complete
				if stream {
					call = c.stream
				}
				_, err := call(t.Context(), "down")
				if err == nil {
					t.Fatal("got no error from a model that always fails")
				}
				if got, want := gw.Requests("down"), 1+ourRetries; got != want {
					t.Errorf("got %d upstream requests, want %d (SDK retries amplified ours)", got, want)
				}
				ae, ok := c.apiError(err)
				if !ok {
					t.Fatalf("got %T %v, want the SDK's API error type", err, err)
				}
				id := lastRequestID(t, gw)
				if ae.status != 500 || ae.code != "do_request_failed" || !strings.Contains(ae.message, "upstream error: do request failed (request id: "+id+")") {
					t.Errorf("got %+v, want status 500, code do_request_failed and the gateway's message", ae)
				}
				if ae.requestID != id {
					t.Errorf("got request ID %q from the error, want %q", ae.requestID, id)
				}
				if ep.sdkRetries && ae.shouldRetry != "false" {
					t.Errorf("got X-Should-Retry %q on the final response, want false", ae.shouldRetry)
				}
			})
		}
	}
}

// TestSDKRecovers checks that transient faults of every shape are retried
// by the transport, below the SDK, and that the answer (plain or streamed)
// arrives intact with its request ID.
func TestSDKRecovers(t *testing.T) {
	faults := []llmtransporttest.Fault{
		llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error: do request failed"),
		llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel"),
		llmtransporttest.Overloaded(),
		llmtransporttest.BadGatewayHTML(),
		llmtransporttest.FlatError(502, "upstream_error", "bad upstream"),
		llmtransporttest.RateLimited(llmtransporttest.RetryAfterMs, 2*time.Millisecond),
		llmtransporttest.RateLimited(llmtransporttest.ResetTokens, 2*time.Millisecond),
		llmtransporttest.RateLimited(llmtransporttest.BodyRetryDelay, 2*time.Millisecond),
		llmtransporttest.RateLimited(llmtransporttest.MessageText, 2*time.Millisecond),
		llmtransporttest.ResetBeforeHeaders(),
		llmtransporttest.Delay(time.Millisecond, llmtransporttest.OpenAIError(504, "server_error", "", "Gateway Timeout")),
	}
	for _, ep := range entryPoints {
		for _, f := range faults {
			for _, stream := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/stream=%t", ep.name, f.Name(), stream), func(t *testing.T) {
					gw := llmtransporttest.NewServer(llmtransporttest.WithScript("m", f, f))
					defer gw.Close()
					c := ep.newClient(gw, fast)
					call := c.complete
					if stream {
						call = c.stream
					}
					r, err := call(t.Context(), "m")
					if err != nil {
						t.Fatalf("got %v, want success after two faults", err)
					}
					if r.content != llmtransporttest.DefaultReply {
						t.Errorf("got content %q, want %q", r.content, llmtransporttest.DefaultReply)
					}
					if got := gw.Requests("m"); got != 3 {
						t.Errorf("got %d upstream requests, want 3", got)
					}
					if id := lastRequestID(t, gw); r.requestID != id {
						t.Errorf("got request ID %q, want %q", r.requestID, id)
					}
				})
			}
		}
	}
}

// TestSDKTransportErrorsNeedMaxRetries0 documents why openai-go users should
// set option.WithMaxRetries(0): X-Should-Retry can only be put on a
// response, so when the transport gives up on a transport error (here a
// connection reset every time) the SDK retries it again, each time with the
// transport's own retries. With WithMaxRetries(0) there is one retry layer.
func TestSDKTransportErrorsNeedMaxRetries0(t *testing.T) {
	for _, ep := range entryPoints {
		t.Run(ep.name, func(t *testing.T) {
			run := func(sdkOpts ...option.RequestOption) (int, error) {
				gw := llmtransporttest.NewServer(llmtransporttest.WithModel("m", always(llmtransporttest.ResetBeforeHeaders())))
				defer gw.Close()
				_, err := ep.newClient(gw, append(fast[:len(fast):len(fast)], llmtransport.WithoutCircuitBreaker()), sdkOpts...).complete(t.Context(), "m")
				return gw.Requests("m"), err
			}
			n, err := run(option.WithMaxRetries(0))
			if n != 1+ourRetries {
				t.Errorf("with WithMaxRetries(0): got %d upstream requests, want %d", n, 1+ourRetries)
			}
			if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
				t.Errorf("got %v, want the connection reset", err)
			}
			if !ep.sdkRetries {
				return
			}
			n, _ = run(option.WithMaxRetries(1), option.WithMaxRetryDelay(time.Millisecond))
			if want := 2 * (1 + ourRetries); n != want {
				t.Errorf("with the SDK retrying once: got %d upstream requests, want %d (SDK attempts × ours)", n, want)
			}
		})
	}
}

// TestSDKLastResponseBeforeResets checks that a 503 followed by retries
// whose connections are reset reaches the SDK as the 503, marked
// X-Should-Retry: false, so that the SDK's own retries (openai-go's default
// 2) do not run all of ours again for each reset.
func TestSDKLastResponseBeforeResets(t *testing.T) {
	for _, ep := range entryPoints {
		t.Run(ep.name, func(t *testing.T) {
			gw := llmtransporttest.NewServer(llmtransporttest.WithModel("m", func(n int) llmtransporttest.Fault {
				if n == 0 {
					return llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel")
				}
				return llmtransporttest.ResetBeforeHeaders()
			}))
			defer gw.Close()
			c := ep.newClient(gw, append(fast[:len(fast):len(fast)], llmtransport.WithoutCircuitBreaker())) // the SDK's default retries
			_, err := c.complete(t.Context(), "m")
			if got, want := gw.Requests("m"), 1+ourRetries; got != want {
				t.Errorf("got %d upstream requests, want %d (the SDK retried a transport error)", got, want)
			}
			ae, ok := c.apiError(err)
			if !ok || ae.status != 503 || ae.code != "get_channel_failed" {
				t.Fatalf("got %T %v, want the 503 as the SDK's API error", err, err)
			}
		})
	}
}

// TestSDKStreamBrokenMidway checks that a stream failing after its first
// chunks is not retried (the caller already has part of the answer) and
// that the SDK reports the error after the chunks that came.
func TestSDKStreamBrokenMidway(t *testing.T) {
	for _, ep := range entryPoints {
		t.Run(ep.name, func(t *testing.T) {
			gw := llmtransporttest.NewServer(
				llmtransporttest.WithReply("one two three four"),
				llmtransporttest.WithModel("m", always(llmtransporttest.MidStreamError(3))))
			defer gw.Close()
			r, err := ep.newClient(gw, fast).stream(t.Context(), "m")
			if err == nil {
				t.Fatal("got no error from a stream that broke")
			}
			var se *ssestream.StreamError
			if strings.HasPrefix(ep.name, "openai-go") && !errors.As(err, &se) {
				t.Errorf("got %T %v, want *ssestream.StreamError", err, err)
			}
			if r.content != "one two " {
				t.Errorf("got content %q before the error, want %q", r.content, "one two ")
			}
			if got := gw.Requests("m"); got != 1 {
				t.Errorf("got %d upstream requests, want 1 (no retry after the first chunk)", got)
			}
		})
	}
}

// classifies reports whether Classify gives class for a response of the
// fake gateway; it guards tests of classification rules that another part of
// the package provides.
func classifies(t *testing.T, f llmtransporttest.Fault, stream bool, class llmtransport.Class) bool {
	t.Helper()
	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("m", f))
	defer gw.Close()
	body := fmt.Sprintf(`{"model":"m","stream":%t}`, stream)
	resp, err := gw.Client().Post(gw.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return llmtransport.Classify(resp, b).Class == class
}

// TestSDKNotRetried checks that what must not be retried (a quota 429) goes
// to the caller after one request, even with openai-go's default retries,
// which retry every 429.
func TestSDKNotRetried(t *testing.T) {
	if !classifies(t, llmtransporttest.InsufficientQuota(), false, llmtransport.ClassQuotaExhausted) {
		t.Skip("needs classify: Classify does not yet read insufficient_quota from the body")
	}
	for _, ep := range entryPoints {
		t.Run(ep.name, func(t *testing.T) {
			gw := llmtransporttest.NewServer(llmtransporttest.WithModel("m", always(llmtransporttest.InsufficientQuota())))
			defer gw.Close()
			c := ep.newClient(gw, fast)
			_, err := c.complete(t.Context(), "m")
			if got := gw.Requests("m"); got != 1 {
				t.Errorf("got %d upstream requests, want 1", got)
			}
			ae, ok := c.apiError(err)
			if !ok || ae.status != 429 || ae.code != "insufficient_quota" {
				t.Errorf("got %v (%+v), want a 429 insufficient_quota API error", err, ae)
			}
		})
	}
}

// TestSDKErrorFirstStream checks that a 200 event stream whose first event
// is an error is retried like the error it carries: nothing reached the
// caller yet.
func TestSDKErrorFirstStream(t *testing.T) {
	if classifies(t, llmtransporttest.ErrorFirstStream(), true, llmtransport.ClassSuccess) {
		t.Skip("needs classify: Classify does not yet read an error event at the head of a 200 stream")
	}
	for _, ep := range entryPoints {
		t.Run(ep.name, func(t *testing.T) {
			gw := llmtransporttest.NewServer(llmtransporttest.WithScript("m", llmtransporttest.ErrorFirstStream()))
			defer gw.Close()
			r, err := ep.newClient(gw, fast).stream(t.Context(), "m")
			if err != nil {
				t.Fatalf("got %v, want success on the second attempt", err)
			}
			if r.content != llmtransporttest.DefaultReply || gw.Requests("m") != 2 {
				t.Errorf("got %q after %d requests, want %q after 2", r.content, gw.Requests("m"), llmtransporttest.DefaultReply)
			}
		})
	}
}

// TestSDKCircuitOpen checks that once a dead model's circuit opens, calls
// fail fast, without a request, with an error that errors.Is matches to
// ErrCircuitOpen through the SDK, while another model on the same transport
// still answers.
func TestSDKCircuitOpen(t *testing.T) {
	for _, ep := range entryPoints {
		t.Run(ep.name, func(t *testing.T) {
			gw := llmtransporttest.NewServer(llmtransporttest.WithModel("dead",
				always(llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel"))))
			defer gw.Close()
			// A circuit-open error is a Go error, which only WithMaxRetries(0)
			// keeps openai-go from retrying.
			c := ep.newClient(gw, fast, option.WithMaxRetries(0))

			var err error
			for range 50 {
				if _, err = c.complete(t.Context(), "dead"); errors.Is(err, llmtransport.ErrCircuitOpen) {
					break
				}
			}
			if !errors.Is(err, llmtransport.ErrCircuitOpen) {
				t.Skip("needs breaker: 50 failing calls did not open the circuit (guard admits everything)")
			}
			var coe *llmtransport.CircuitOpenError
			if !errors.As(err, &coe) {
				t.Fatalf("got %T, want a *CircuitOpenError in the chain", err)
			}
			if u, _ := url.Parse(gw.URL); coe.Host != u.Host || coe.Model != "dead" {
				t.Errorf("got circuit %q/%q, want %q/dead", coe.Host, coe.Model, u.Host)
			}
			before := gw.Requests("dead")
			if _, err := c.complete(t.Context(), "dead"); !errors.Is(err, llmtransport.ErrCircuitOpen) {
				t.Errorf("got %v on the next call, want ErrCircuitOpen", err)
			}
			if got := gw.Requests("dead"); got != before {
				t.Errorf("an open circuit sent %d requests, want 0", got-before)
			}
			if r, err := c.complete(t.Context(), "healthy"); err != nil || r.content != llmtransporttest.DefaultReply {
				t.Errorf("another model: got %q, %v; want an answer", r.content, err)
			}
		})
	}
}
