package llmtransport

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// waitHold waits for m to have applied a hold of kind for model, or fails
// the test after hangGuard (a hang detector, never a timing assertion).
func waitHold(t *testing.T, m *fakeMember, kind HoldKind, model string) {
	t.Helper()
	timeout := time.After(hangGuard)
	for {
		select {
		case h := <-m.applied:
			if h.Kind == kind && h.Model == model {
				return
			}
		case <-timeout:
			t.Fatalf("no %v hold for %s applied within %v", kind, model, hangGuard)
		}
	}
}

// TestFleetLoopback: two Transports over one real fake gateway on loopback,
// connected by the in-memory fleet. A's 429 with retry-after-ms 1500 makes
// B send 0 requests for that model and key until the hold ends (by the
// gateway's own clock), while B's requests for another key or model go; a
// model that fails every call is cut off on B once A's circuit opens: B
// sends it nothing and gets ErrCircuitOpen.
func TestFleetLoopback(t *testing.T) {
	srv := llmtransporttest.NewServer(
		llmtransporttest.WithModel("gpt-4o", func(n int) llmtransporttest.Fault {
			if n == 0 {
				return llmtransporttest.RateLimited(llmtransporttest.RetryAfterMs, 1500*time.Millisecond)
			}
			return llmtransporttest.OK()
		}),
		llmtransporttest.WithModel("dead", func(int) llmtransporttest.Fault { return llmtransporttest.Overloaded() }),
	)
	t.Cleanup(srv.Close)
	base := srv.Client().Transport
	f := newFakeFleet()
	fa, fb := f.member(), f.member()
	client := func(name string, m *fakeMember) *Transport {
		tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r.Header.Set("X-Client", name)
			return base.RoundTrip(r)
		}), WithMaxRetries(0), WithSharedState(m))
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	a, b := client("A", fa), client("B", fb)
	call := func(tr *Transport, model, key string) (int, error) {
		body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
		req, _ := http.NewRequestWithContext(context.Background(), "POST", srv.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	find := func(client, model, key string) []llmtransporttest.Request {
		var out []llmtransporttest.Request
		for _, r := range srv.Log() {
			if r.Header.Get("X-Client") == client && r.Model == model && strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") == key {
				out = append(out, r)
			}
		}
		return out
	}

	if st, err := call(a, "gpt-4o", "key-A"); st != 429 || err != nil {
		t.Fatalf("A: %d %v, want 429", st, err)
	}
	limitedAt := find("A", "gpt-4o", "key-A")[0].Time
	waitHold(t, fb, HoldCooldown, "gpt-4o")
	for _, other := range [][2]string{{"gpt-4o", "key-B"}, {"gpt-4o-mini", "key-A"}} {
		if st, err := call(b, other[0], other[1]); st != 200 || err != nil {
			t.Errorf("B %v: %d %v", other, st, err)
		}
	}
	if st, err := call(b, "gpt-4o", "key-A"); st != 200 || err != nil {
		t.Errorf("B held: %d %v", st, err)
	}
	held := find("B", "gpt-4o", "key-A")
	if len(held) != 1 {
		t.Fatalf("B sent %d requests for the held model and key, want 1 (after the hold)", len(held))
	}
	if d := held[0].Time.Sub(limitedAt); d < 1500*time.Millisecond {
		t.Errorf("B's request for the held model and key reached the gateway %v after A's 429, inside the 1.5s hold", d)
	}

	for range DefaultBreakerMinFailures {
		call(a, "dead", "k")
	}
	waitHold(t, fb, HoldOpen, "dead")
	_, err := call(b, "dead", "k")
	if !errors.Is(err, ErrCircuitOpen) {
		t.Errorf("B on the dead model: %v, want ErrCircuitOpen", err)
	}
	if n := srv.Requests("dead"); n != DefaultBreakerMinFailures {
		t.Errorf("the dead model got %d requests, want only A's %d", n, DefaultBreakerMinFailures)
	}
}
