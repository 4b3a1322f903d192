package llmtransport

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// TestRetryablehttpAsEngine records why the retry loop is our own rather
// than go-retryablehttp's Client (see the README's design notes). It runs
// go-retryablehttp configured as this package would use it — our CheckRetry
// and Backoff, PassthroughErrorHandler, no logger, bodies replayed through
// GetBody — against a server that always answers 503, and compares it with
// Transport on the same workload.
//
// The point that fails: every call that exhausts its retries makes
// go-retryablehttp call CloseIdleConnections on the shared base transport
// (client.go, the deferred call after the retry loop), so each failing call
// throws away the connection pool of every other request. The server counts
// one new connection per failing call; with Transport it counts one in all.
func TestRetryablehttpAsEngine(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	const calls = 10

	send := func(rt http.RoundTripper) int64 {
		conns.Store(0)
		for range calls {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, strings.NewReader(chatBody))
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("got %d, want the last 503", resp.StatusCode)
			}
		}
		return conns.Load()
	}

	base := &http.Transport{}
	defer base.CloseIdleConnections()
	rc := &retryablehttp.Client{
		HTTPClient:   &http.Client{Transport: base},
		RetryMax:     1,
		RetryWaitMin: time.Millisecond,
		RetryWaitMax: time.Millisecond,
		CheckRetry: func(ctx context.Context, resp *http.Response, err error) (bool, error) {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return err != nil || resp.StatusCode >= 500, nil
		},
		Backoff:      func(min, _ time.Duration, _ int, _ *http.Response) time.Duration { return min },
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	engine := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		// FromRequest would read the body into memory; a ReaderFunc over
		// GetBody replays it without a copy.
		getBody := req.GetBody
		rreq, err := retryablehttp.NewRequestWithContext(req.Context(), req.Method, req.URL.String(),
			retryablehttp.ReaderFunc(func() (io.Reader, error) { return getBody() }))
		if err != nil {
			return nil, err
		}
		rreq.Header = req.Header.Clone()
		return rc.Do(rreq)
	})
	withEngine := send(engine)

	base2 := &http.Transport{}
	defer base2.CloseIdleConnections()
	ours := send(New(base2, WithMaxRetries(1), WithBackoff(time.Millisecond, time.Millisecond), WithoutCircuitBreaker(), WithRetryBudget(0, 0)))

	t.Logf("connections opened for %d failing calls: go-retryablehttp engine %d, Transport %d", calls, withEngine, ours)
	if ours != 1 {
		t.Errorf("Transport opened %d connections, want 1", ours)
	}
	if withEngine < calls {
		t.Errorf("go-retryablehttp opened %d connections, want %d (one per give-up); if this changed upstream, reconsider it as the engine", withEngine, calls)
	}
}
