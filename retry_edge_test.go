package llmtransport

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// lateBody is a response body whose bytes come after delay, unless ctx
// (the attempt's) ends first, as a real transport's body would.
type lateBody struct {
	ctx    context.Context
	delay  time.Duration
	r      io.Reader
	waited bool
}

func (b *lateBody) Read(p []byte) (int, error) {
	if !b.waited {
		t := time.NewTimer(b.delay)
		defer t.Stop()
		select {
		case <-t.C:
			b.waited = true
		case <-b.ctx.Done():
			return 0, context.Cause(b.ctx)
		}
	}
	return b.r.Read(p)
}

func (b *lateBody) Close() error { return nil }

// TestRetryFirstByteTimeoutSparesErrorBodies: WithFirstByteTimeout bounds
// the headers (and a stream's first event), nothing else. An error whose
// headers come at once and whose body comes later is read whole and
// classified by its body: a 400 reaches the caller intact, and a 429
// "insufficient_quota" is not retried as the plain rate limit its status
// alone would say. A 200 stream whose first event is late still times out.
func TestRetryFirstByteTimeoutSparesErrorBodies(t *testing.T) {
	const (
		contextBody = `{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`
		quotaBody   = `{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","code":"insufficient_quota"}}`
		event       = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
	)
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		attempts    int
	}{
		{"400 context length", 400, "application/json", contextBody, 1},
		{"429 insufficient quota", 429, "application/json", quotaBody, 1},
		{"500 error stream", 500, "text/event-stream", "event: error\ndata: " + contextBody + "\n\n", 1},
		// The stream's first event is bounded: attempt 0 times out, the
		// retry (answered at once) is what the caller reads.
		{"200 stream, first event late", 200, "text/event-stream", event, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{respond: func(i int, req *http.Request) (*http.Response, error) {
					r := response(tt.status, "", "Content-Type", tt.contentType)
					r.ContentLength = -1
					delay := 5 * time.Second
					if i > 0 && tt.status == 200 {
						delay = 0
					}
					r.Body = &lateBody{ctx: req.Context(), delay: delay, r: strings.NewReader(tt.body)}
					return r, nil
				}}
				tr := New(f, WithoutCircuitBreaker(), WithFirstByteTimeout(time.Second))
				resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
				if err != nil {
					t.Fatal(err)
				}
				got, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if rerr != nil || string(got) != tt.body || resp.StatusCode != tt.status {
					t.Fatalf("got %d %q (read error %v), want %d %q intact", resp.StatusCode, got, rerr, tt.status, tt.body)
				}
				if f.attempts() != tt.attempts {
					t.Fatalf("got %d attempts, want %d", f.attempts(), tt.attempts)
				}
			})
		})
	}
}
