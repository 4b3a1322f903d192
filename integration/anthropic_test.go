package integration_test

// anthropic-sdk-go (v2) against llmtransporttest's /v1/messages, with the
// transport as its HTTP client and as its middleware.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

const claude = "claude-sonnet-4-5"

// countingRT counts the calls that reach the Transport: one per SDK attempt.
type countingRT struct {
	rt http.RoundTripper
	n  atomic.Int64
}

func (c *countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

// anthropicWays are the two ways of plugging a Transport into the SDK. Each
// returns the client and a counter of the SDK's attempts.
var anthropicWays = []struct {
	name string
	new  func(gw *llmtransporttest.Server, tr *llmtransport.Transport, opts ...aoption.RequestOption) (anthropic.Client, *atomic.Int64)
}{
	{"WithHTTPClient", func(gw *llmtransporttest.Server, tr *llmtransport.Transport, opts ...aoption.RequestOption) (anthropic.Client, *atomic.Int64) {
		c := &countingRT{rt: tr}
		base := []aoption.RequestOption{aoption.WithBaseURL(gw.URL), aoption.WithAPIKey("sk-ant-test"),
			aoption.WithHTTPClient(&http.Client{Transport: c})}
		return anthropic.NewClient(append(base, opts...)...), &c.n
	}},
	{"WithMiddleware", func(gw *llmtransporttest.Server, tr *llmtransport.Transport, opts ...aoption.RequestOption) (anthropic.Client, *atomic.Int64) {
		var n atomic.Int64
		count := func(r *http.Request, next aoption.MiddlewareNext) (*http.Response, error) {
			n.Add(1)
			return next(r)
		}
		base := []aoption.RequestOption{aoption.WithBaseURL(gw.URL), aoption.WithAPIKey("sk-ant-test"),
			aoption.WithHTTPClient(gw.Client()), aoption.WithMiddleware(count, tr.Middleware)}
		return anthropic.NewClient(append(base, opts...)...), &n
	}},
}

func messageParams() anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     claude,
		MaxTokens: 64,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello"))},
	}
}

func messageText(m *anthropic.Message) string {
	var b strings.Builder
	for _, c := range m.Content {
		b.WriteString(c.Text)
	}
	return b.String()
}

// TestAnthropic529Retried: two 529 overloaded_error answers are retried by
// the transport and the third answers; the SDK, with WithMaxRetries(0),
// made one attempt.
func TestAnthropic529Retried(t *testing.T) {
	for _, way := range anthropicWays {
		gw := llmtransporttest.NewServer(llmtransporttest.WithScript(claude, llmtransporttest.Overloaded(), llmtransporttest.Overloaded()))
		client, attempts := way.new(gw, llmtransport.New(nil, fast...), aoption.WithMaxRetries(0))
		m, err := client.Messages.New(t.Context(), messageParams())
		if err != nil {
			t.Fatalf("%s: %v", way.name, err)
		}
		if got := messageText(m); got != llmtransporttest.DefaultReply || m.StopReason != "end_turn" {
			t.Errorf("%s: got %q (%s)", way.name, got, m.StopReason)
		}
		if gw.Requests(claude) != 3 || attempts.Load() != 1 {
			t.Errorf("%s: %d upstream requests, %d SDK attempts; want 3 and 1", way.name, gw.Requests(claude), attempts.Load())
		}
		gw.Close()
	}
}

// TestAnthropicGiveUpOnce: a model that is always overloaded, with the SDK's
// default retries (2): the transport's last 529 carries X-Should-Retry:
// false, which the SDK obeys, so the call costs 1 + ourRetries requests
// and the SDK's *anthropic.Error has the real status, type and request ID.
func TestAnthropicGiveUpOnce(t *testing.T) {
	for _, way := range anthropicWays {
		gw := llmtransporttest.NewServer(llmtransporttest.WithModel(claude, always(llmtransporttest.Overloaded())))
		client, attempts := way.new(gw, llmtransport.New(nil, fast...))
		_, err := client.Messages.New(t.Context(), messageParams())
		var apiErr *anthropic.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("%s: got %v, want *anthropic.Error", way.name, err)
		}
		if apiErr.StatusCode != 529 || apiErr.Type() != "overloaded_error" || apiErr.RequestID != lastRequestID(t, gw) {
			t.Errorf("%s: got %d %q request ID %q; want 529 overloaded_error %q", way.name, apiErr.StatusCode, apiErr.Type(), apiErr.RequestID, lastRequestID(t, gw))
		}
		if gw.Requests(claude) != 1+ourRetries || attempts.Load() != 1 {
			t.Errorf("%s: %d upstream requests, %d SDK attempts; want %d and 1", way.name, gw.Requests(claude), attempts.Load(), 1+ourRetries)
		}
		gw.Close()
	}
}

// TestAnthropicCircuitOpen: once the model's circuit is open, the SDK's
// call fails at once with an error that errors.Is finds ErrCircuitOpen in,
// and nothing reaches the gateway. An open circuit is an error without a
// response, so the SDK retries it (it cannot carry X-Should-Retry):
// with its default of 2 retries, three attempts, each refused.
func TestAnthropicCircuitOpen(t *testing.T) {
	for _, way := range anthropicWays {
		gw := llmtransporttest.NewServer(llmtransporttest.WithModel(claude, always(llmtransporttest.Overloaded())))
		tr := llmtransport.New(nil, append(fast, llmtransport.WithBreakerThreshold(0.5, 3), llmtransport.WithBreakerOpenTimeout(time.Hour))...)
		client, attempts := way.new(gw, tr, aoption.WithMaxRetries(0))
		for i := 0; ; i++ {
			_, err := client.Messages.New(t.Context(), messageParams())
			if errors.Is(err, llmtransport.ErrCircuitOpen) {
				break
			}
			if i == 5 {
				t.Fatalf("%s: the circuit did not open: %v", way.name, err)
			}
		}
		before, sdkBefore := gw.Requests(claude), attempts.Load()
		_, err := client.Messages.New(t.Context(), messageParams())
		var coe *llmtransport.CircuitOpenError
		if !errors.Is(err, llmtransport.ErrCircuitOpen) || !errors.As(err, &coe) || coe.Model != claude {
			t.Errorf("%s: got %v, want the open circuit of %s", way.name, err, claude)
		}
		if gw.Requests(claude) != before || attempts.Load()-sdkBefore != 1 {
			t.Errorf("%s, WithMaxRetries(0): %d upstream requests, %d SDK attempts; want 0 and 1", way.name, gw.Requests(claude)-before, attempts.Load()-sdkBefore)
		}

		// The SDK's default retries: the refusal is retried twice.
		sdkBefore = attempts.Load()
		_, err = client.Messages.New(t.Context(), messageParams(), aoption.WithMaxRetries(2))
		if !errors.Is(err, llmtransport.ErrCircuitOpen) {
			t.Errorf("%s, SDK retries: got %v, want ErrCircuitOpen", way.name, err)
		}
		if gw.Requests(claude) != before || attempts.Load()-sdkBefore != 3 {
			t.Errorf("%s, SDK retries: %d upstream requests, %d SDK attempts; want 0 and 3", way.name, gw.Requests(claude)-before, attempts.Load()-sdkBefore)
		}
		gw.Close()
	}
}

// streamText reads an SDK stream to its end and returns its text and error.
func streamText(ctx context.Context, client anthropic.Client) (string, error) {
	s := client.Messages.NewStreaming(ctx, messageParams())
	defer s.Close()
	var b strings.Builder
	for s.Next() {
		ev := s.Current()
		if ev.Type == "content_block_delta" {
			b.WriteString(ev.Delta.Text)
		}
	}
	return b.String(), s.Err()
}

// TestAnthropicMidStream: an overloaded_error event after the first token
// reaches the SDK as its stream's error (an *anthropic.Error of type
// overloaded_error), after the text that came before it, and is not
// retried; one before any token (after message_start, ping and
// content_block_start only) is retried by the transport, and the SDK reads
// a whole answer.
func TestAnthropicMidStream(t *testing.T) {
	for _, way := range anthropicWays {
		gw := llmtransporttest.NewServer(
			llmtransporttest.WithModel(claude, always(llmtransporttest.MidStreamOverloaded(1))),
			llmtransporttest.WithScript("early", llmtransporttest.MidStreamOverloaded(0)),
		)
		client, _ := way.new(gw, llmtransport.New(nil, fast...), aoption.WithMaxRetries(0))
		text, err := streamText(t.Context(), client)
		var apiErr *anthropic.Error
		if !errors.As(err, &apiErr) || apiErr.Type() != "overloaded_error" {
			t.Errorf("%s: got %v, want the stream's overloaded_error", way.name, err)
		}
		if first := strings.SplitAfter(llmtransporttest.DefaultReply, " ")[0]; text != first {
			t.Errorf("%s: read %q before the error, want %q", way.name, text, first)
		}
		if gw.Requests(claude) != 1 {
			t.Errorf("%s: %d upstream requests, want 1 (an error after output is not retried)", way.name, gw.Requests(claude))
		}

		p := messageParams()
		p.Model = "early"
		s := client.Messages.NewStreaming(t.Context(), p)
		var b strings.Builder
		for s.Next() {
			if ev := s.Current(); ev.Type == "content_block_delta" {
				b.WriteString(ev.Delta.Text)
			}
		}
		if err := s.Err(); err != nil || b.String() != llmtransporttest.DefaultReply || gw.Requests("early") != 2 {
			t.Errorf("%s, error before output: got %q, %v after %d requests; want the reply after 2", way.name, b.String(), err, gw.Requests("early"))
		}
		s.Close()
		gw.Close()
	}
}
