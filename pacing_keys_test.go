package llmtransport

import (
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// What pacing promises of its keys and waits, end to end through a
// Transport: per host, model and API key (a fallback route's key too), a
// reservation given back when its attempt was not sent, the cap over an
// attempt's local waits together, Azure's windows in seconds.

// pacing is per (host, model, API key): a key with nothing left does
// not hold back another key or another model; Limits is sorted.
func TestPacingPerKeyAndModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, r *http.Request) (*http.Response, error) {
			return response(200, `{"id":"x"}`, limitHeaders("10", "0", "10s")...), nil
		}}
		tr := New(f, WithPacing(), WithMaxRetryWait(time.Minute))
		send := func(key, model string) time.Duration {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, gw, strings.NewReader(`{"model":"`+model+`"}`))
			req.Header.Set("Authorization", "Bearer "+key)
			start := time.Now()
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return time.Since(start)
		}
		send("sk-A-0123456789", "m1")
		if d := send("sk-B-0123456789", "m1"); d != 0 {
			t.Errorf("key B waited %v for key A's limit", d)
		}
		if d := send("sk-A-0123456789", "m2"); d != 0 {
			t.Errorf("model m2 waited %v for m1's limit", d)
		}
		l := tr.Limits()
		if len(l) != 3 || !slices.IsSortedFunc(l, func(a, b LearnedLimit) int {
			return strings.Compare(a.Model+"|"+a.Credential, b.Model+"|"+b.Credential)
		}) {
			t.Errorf("Limits: %+v", l)
		}
		if d := send("sk-A-0123456789", "m1"); d != 10*time.Second {
			t.Errorf("key A, m1 again: waited %v, want 10s", d)
		}
	})
}

// after a fallback routed to another host with another API key, the
// pacing key carries which credential?
func TestPacingFallbackRouteKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, r *http.Request) (*http.Response, error) {
			if r.URL.Host == "gw.test" {
				return response(529, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`), nil
			}
			return response(200, `{"id":"x"}`, limitHeaders("10", "0", "10s")...), nil
		}}
		tr := New(f, WithPacing(), WithMaxRetries(0), WithMaxRetryWait(time.Minute),
			WithFallbacks(map[string][]string{"m1": {"m1 at B"}}),
			WithFallbackRoute("m1 at B", "m1b", func(r *http.Request) {
				r.URL.Host, r.Host = "b.test", ""
				r.Header.Set("Authorization", "Bearer sk-key-of-b-0123456789")
			}))
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, gw, strings.NewReader(`{"model":"m1"}`))
		req.Header.Set("Authorization", "Bearer sk-key-of-a-0123456789")
		resp, err := tr.RoundTrip(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		resp.Body.Close()
		credOf := func(auth string) string {
			r, _ := http.NewRequest(http.MethodPost, gw, nil)
			r.Header.Set("Authorization", auth)
			return tr.cooldowns.credentialID(tr.cooldowns.credentialOf(r))
		}
		a, b := credOf("Bearer sk-key-of-a-0123456789"), credOf("Bearer sk-key-of-b-0123456789")
		l := tr.Limits()
		t.Logf("Limits: %+v; id of key A %s, of key B %s", l, a, b)
		if len(l) != 1 || l[0].Host != "b.test" || l[0].Credential != b {
			t.Errorf("b.test's limit is keyed by credential %q, want key B's %q (key A's is %q)", l[0].Credential, b, a)
		}
		// Key B, direct to b.test: the server said 0 left for 10 s.
		req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, "http://b.test/v1/chat/completions", strings.NewReader(`{"model":"m1b"}`))
		req.Header.Set("Authorization", "Bearer sk-key-of-b-0123456789")
		start := time.Now()
		resp, err = tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if d := time.Since(start); d != 10*time.Second {
			t.Errorf("key B direct to b.test waited %v, want the 10s its last response reported", d)
		}
	})
}

// an attempt whose body could not be replayed gives its cost back
// (not counted as lost).
func TestPacingNotSentGivesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			return response(500, `{"error":{"message":"boom","type":"server_error"}}`, limitHeaders("100", "1", "1m")...), nil
		}}
		tr := New(f, WithPacing(), WithBackoff(time.Millisecond, time.Millisecond), WithMaxRetryWait(5*time.Minute))
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, gw, strings.NewReader(`{"model":"m2"}`))
		req.Header.Set("Authorization", "Bearer sk-test-pacing-0123456789")
		gets := 0
		req.GetBody = func() (io.ReadCloser, error) {
			if gets++; gets == 1 {
				return io.NopCloser(strings.NewReader(`{"model":"m2"}`)), nil
			}
			return nil, io.ErrUnexpectedEOF
		}
		if resp, err := tr.RoundTrip(req); err == nil {
			resp.Body.Close()
		}
		sent := f.attempts()
		start := time.Now()
		pacedSend(t, tr, t.Context(), `{"model":"m2"}`)
		f.mu.Lock()
		d := f.times[sent].Sub(start)
		f.mu.Unlock()
		if d != 0 {
			t.Errorf("after a replay failure (1 left, nothing in flight) the next waited %v (attempts before: %d)", d, sent)
		}
		t.Logf("gets %d, attempts before %d, limits %+v", gets, sent, tr.Limits())
		if false {
		}
	})
}

// the cap bounds an attempt's *local* pacing waits together; and a
// wait not taken is a span event with waited=false, source "local".
func TestPacingLocalWaitsCappedTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry(t)
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			return response(200, `{"id":"x"}`, limitHeaders("1", "0", "1500ms")...), nil
		}}
		tr := New(f, tel.options(WithPacing(), WithMaxRetryWait(2*time.Second))...)
		pacedSend(t, tr, t.Context(), pacedBody)
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { pacedSend(t, tr, t.Context(), pacedBody) })
		}
		wg.Wait()
		if g1, g2 := f.gap(1), f.gap(2); g1 != 1500*time.Millisecond || g2 != 0 {
			t.Errorf("gaps %v, %v; want 1.5s then 0 (a second 1.5s wait would pass the 2s cap)", g1, g2)
		}
		var got []string
		for _, s := range tel.spans("chat gpt-4o-mini") {
			for _, e := range s.Events() {
				if e.Name == eventPaced {
					set := attribute.NewSet(e.Attributes...)
					w, _ := set.Value(keyPacingWait)
					wd, _ := set.Value(keyPacingWaited)
					src, _ := set.Value(keyPacingSource)
					got = append(got, strconv.FormatFloat(w.AsFloat64(), 'f', -1, 64)+"/"+strconv.FormatBool(wd.AsBool())+"/"+src.AsString())
				}
			}
		}
		slices.Sort(got)
		t.Logf("paced events: %v", got)
		if !slices.Contains(got, "1.5/false/local") || !slices.Contains(got, "1.5/true/local") {
			t.Errorf("paced events %v", got)
		}
	})
}

// Azure's short windows end to end: x-rate-limit-reset-requests in
// seconds paces, and the window is forgotten once passed.
func TestPacingAzureShortWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(i int, _ *http.Request) (*http.Response, error) {
			return response(200, `{"id":"x"}`, "X-Ratelimit-Limit-Requests", "10", "X-Ratelimit-Remaining-Requests", "0", "X-Rate-Limit-Reset-Requests", "1"), nil
		}}
		tr := New(f, WithPacing())
		pacedSend(t, tr, t.Context(), pacedBody)
		pacedSend(t, tr, t.Context(), pacedBody)
		if g := f.gap(1); g != time.Second {
			t.Errorf("waited %v, want Azure's 1s", g)
		}
		time.Sleep(1100 * time.Millisecond)
		if l := tr.Limits(); l != nil {
			t.Errorf("a passed window is still in Limits: %+v", l)
		}
	})
}
