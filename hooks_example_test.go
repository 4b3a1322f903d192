package llmtransport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// chat posts a one-message chat completion for model to base through c.
func chat(ctx context.Context, c *http.Client, base, model string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.Do(req)
}

// New wraps a base transport (nil: http.DefaultTransport) with the retry,
// circuit and tracing layers: a model that is overloaded once answers at
// the second attempt, and the caller sees only the answer.
func ExampleNew() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("gpt-4o-mini", llmtransporttest.Overloaded()))
	defer gw.Close()

	client := &http.Client{Transport: llmtransport.New(nil,
		llmtransport.WithBackoff(time.Millisecond, 10*time.Millisecond))}
	resp, err := chat(context.Background(), client, gw.URL, "gpt-4o-mini")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", gw.Requests("gpt-4o-mini"), "upstream requests")
	// Output:
	// 200 after 2 upstream requests
}

// WithOnRetry sees every retry before its wait, with the call's context
// (here a value the caller put there; with tracing, the call's span for a
// trace ID in the log line).
func ExampleWithOnRetry() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("gpt-4o-mini",
		llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel")))
	defer gw.Close()

	type userKey struct{}
	tr := llmtransport.New(nil,
		llmtransport.WithBackoff(time.Millisecond, 10*time.Millisecond),
		llmtransport.WithOnRetry(func(ev llmtransport.RetryEvent) {
			fmt.Printf("user %v: attempt %d of %s was %s (%s), retrying\n",
				ev.Context.Value(userKey{}), ev.Attempt, ev.Model, ev.Classification.Class, ev.Classification.Code)
		}))
	ctx := context.WithValue(context.Background(), userKey{}, "alice")
	resp, err := chat(ctx, &http.Client{Transport: tr}, gw.URL, "gpt-4o-mini")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output:
	// user alice: attempt 0 of gpt-4o-mini was upstream_transient (get_channel_failed), retrying
	// 200
}

// WithRetryPolicy decides each retry that the limits allow: here, a batch
// job's requests (marked in their context) are not retried on a rate
// limit, so that they leave the quota to interactive ones.
func ExampleWithRetryPolicy() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("gpt-4o-mini", func(int) llmtransporttest.Fault {
		return llmtransporttest.RateLimited(llmtransporttest.RetryAfterMs, time.Millisecond)
	}))
	defer gw.Close()

	type batchKey struct{}
	tr := llmtransport.New(nil,
		llmtransport.WithMaxRetries(2),
		llmtransport.WithoutCircuitBreaker(),
		llmtransport.WithRetryPolicy(func(ev llmtransport.RetryEvent) bool {
			if ev.Context.Value(batchKey{}) != nil && ev.Classification.Class == llmtransport.ClassRateLimited {
				return false
			}
			return ev.Classification.Retryable
		}))
	client := &http.Client{Transport: tr}
	for _, ctx := range []context.Context{
		context.WithValue(context.Background(), batchKey{}, true),
		context.Background(),
	} {
		before := gw.Requests("gpt-4o-mini")
		resp, err := chat(ctx, client, gw.URL, "gpt-4o-mini")
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode, "after", gw.Requests("gpt-4o-mini")-before, "upstream requests")
	}
	// Output:
	// 429 after 1 upstream requests
	// 429 after 3 upstream requests
}

// WithClassifier replaces the classification: here a gateway's private
// code, "busy_retry_later" in a 400, is made a retryable overload, and
// everything else is left to llmtransport.Classify.
func ExampleWithClassifier() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("gpt-4o-mini",
		llmtransporttest.FlatError(400, "busy_retry_later", "try again")))
	defer gw.Close()

	tr := llmtransport.New(nil,
		llmtransport.WithBackoff(time.Millisecond, 10*time.Millisecond),
		llmtransport.WithClassifier(func(resp *http.Response, body []byte) llmtransport.Classification {
			cl := llmtransport.Classify(resp, body)
			if cl.Code == "busy_retry_later" {
				cl.Class, cl.Retryable, cl.BreakerFailure = llmtransport.ClassOverloaded, true, true
			}
			return cl
		}))
	resp, err := chat(context.Background(), &http.Client{Transport: tr}, gw.URL, "gpt-4o-mini")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", gw.Requests("gpt-4o-mini"), "upstream requests")
	// Output:
	// 200 after 2 upstream requests
}

// WithOnCircuitStateChange reports each circuit's changes: log them, page
// someone, or switch traffic.
func ExampleWithOnCircuitStateChange() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("dead", func(int) llmtransporttest.Fault {
		return llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel")
	}))
	defer gw.Close()

	tr := llmtransport.New(nil,
		llmtransport.WithMaxRetries(0),
		llmtransport.WithBreakerThreshold(0.5, 2),
		llmtransport.WithOnCircuitStateChange(func(ch llmtransport.CircuitStateChange) {
			fmt.Printf("circuit of %s: %s → %s\n", ch.Model, ch.From, ch.To)
		}))
	client := &http.Client{Transport: tr}
	for range 3 {
		resp, err := chat(context.Background(), client, gw.URL, "dead")
		if err != nil {
			fmt.Println("refused:", errors.Is(err, llmtransport.ErrCircuitOpen))
			continue
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	// Output:
	// 503
	// circuit of dead: closed → open
	// 503
	// refused: true
}

// OutcomeOf tells what the transport made of a call from its response (or
// from the response an SDK's error keeps, such as openai-go's
// apierror.Error.Response): the class and code of the last attempt, the
// server's verdict on retrying it (the response itself now says
// X-Should-Retry: false), the attempts and their request IDs.
func ExampleOutcomeOf() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("gpt-4o-mini", func(int) llmtransporttest.Fault {
		return llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel")
	}))
	defer gw.Close()

	client := &http.Client{Transport: llmtransport.New(nil,
		llmtransport.WithMaxRetries(2),
		llmtransport.WithBackoff(time.Millisecond, 10*time.Millisecond),
		llmtransport.WithoutCircuitBreaker())}
	resp, err := chat(context.Background(), client, gw.URL, "gpt-4o-mini")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	o, _ := llmtransport.OutcomeOf(resp)
	fmt.Println(o.Class, o.Code, "retryable:", o.Retryable, "X-Should-Retry:", resp.Header.Get("X-Should-Retry"))
	fmt.Println(o.Attempts, "attempts of", o.Model, o.RequestIDs)
	// Output:
	// upstream_transient get_channel_failed retryable: true X-Should-Retry: false
	// 3 attempts of gpt-4o-mini [req_000001 req_000002 req_000003]
}

// WithOnOutcome gets the outcome of every call, response or error, with the
// call's context: the way to it for clients whose errors keep no response
// (go-openai, langchaingo), and to keep errors.Is(err, ErrCircuitOpen)
// where such a client flattens the transport's error.
func ExampleWithOnOutcome() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("dead", func(int) llmtransporttest.Fault {
		return llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel")
	}))
	defer gw.Close()

	tr := llmtransport.New(nil,
		llmtransport.WithMaxRetries(0),
		llmtransport.WithBreakerThreshold(0.5, 2),
		llmtransport.WithOnOutcome(func(ctx context.Context, o llmtransport.Outcome) {
			switch {
			case errors.Is(o.Err, llmtransport.ErrCircuitOpen):
				fmt.Println(o.Model, "refused by its open circuit")
			case o.Err != nil:
				fmt.Println(o.Model, "failed:", o.Err)
			default:
				fmt.Println(o.Model, o.Class, o.Code, "in", o.Attempts, "attempt(s)")
			}
		}))
	client := &http.Client{Transport: tr}
	for range 3 {
		if resp, err := chat(context.Background(), client, gw.URL, "dead"); err == nil {
			resp.Body.Close()
		}
	}
	// Output:
	// dead upstream_transient get_channel_failed in 1 attempt(s)
	// dead upstream_transient get_channel_failed in 1 attempt(s)
	// dead refused by its open circuit
}

// WithRequestOptions overrides the transport's options for the requests of
// one context: here no retry for a health check, and the outcome stored for
// the caller, as a client that keeps no response (go-openai) needs.
func ExampleWithRequestOptions() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithModel("gpt-4o-mini", func(int) llmtransporttest.Fault {
		return llmtransporttest.Overloaded()
	}))
	defer gw.Close()

	client := &http.Client{Transport: llmtransport.New(nil, llmtransport.WithoutCircuitBreaker())}
	var o llmtransport.Outcome
	ctx := llmtransport.WithRequestOptions(context.Background(),
		llmtransport.RequestMaxRetries(0),
		llmtransport.RequestWithoutFallbacks(),
		llmtransport.RequestOutcomeInto(&o))
	resp, err := chat(ctx, client, gw.URL, "gpt-4o-mini")
	if err != nil {
		fmt.Println(err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, o.Class, "in", o.Attempts, "attempt")
	// Output:
	// 529 overloaded in 1 attempt
}

// WithMeterProvider sends the transport's metrics to a meter provider:
// here the OpenTelemetry SDK's with an in-memory reader. The call's
// duration is gen_ai.client.operation.duration, each attempt's
// http.client.request.duration, by the OpenTelemetry conventions.
func ExampleWithMeterProvider() {
	gw := llmtransporttest.NewServer(llmtransporttest.WithScript("gpt-4o-mini", llmtransporttest.Overloaded()))
	defer gw.Close()

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	client := &http.Client{Transport: llmtransport.New(nil,
		llmtransport.WithMeterProvider(mp),
		llmtransport.WithBackoff(time.Millisecond, 10*time.Millisecond))}
	resp, err := chat(context.Background(), client, gw.URL, "gpt-4o-mini")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					fmt.Printf("%s{%s} %d\n", m.Name, attr(p.Attributes, "llm.error.class"), p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					fmt.Printf("%s{%s} count %d\n", m.Name, attr(p.Attributes, "error.type"), p.Count)
				}
			}
		}
	}
	// Unordered output:
	// llm.client.attempts{llm.error.class=overloaded} 1
	// llm.client.attempts{llm.error.class=success} 1
	// llm.client.retries{llm.error.class=overloaded} 1
	// llm.client.wait.duration{} count 1
	// http.client.request.duration{error.type=529} count 1
	// http.client.request.duration{} count 1
	// gen_ai.client.operation.duration{} count 1
}

// attr formats the attribute k of set as k=v, "" when set has none.
func attr(set attribute.Set, k string) string {
	if v, ok := set.Value(attribute.Key(k)); ok {
		return k + "=" + v.String()
	}
	return ""
}
