package llmtransport

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-retryablehttp"
)

// Request bodies whose GetBody does not give a fresh copy but the very
// reader Body holds (go-retryablehttp's requests over an io.ReadSeeker, and
// hand-written GetBody funcs that seek and return the same reader). Reading
// GetBody to find the model must not take the bytes the transport then sends.

// bodyRecorder is a loopback server that records every body it receives
// and answers 503 for the model "broken", 200 otherwise.
type bodyRecorder struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newBodyRecorder(t *testing.T) *bodyRecorder {
	t.Helper()
	r := &bodyRecorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, err := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.mu.Unlock()
		if err != nil {
			w.WriteHeader(400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(string(b), `"broken"`) {
			w.WriteHeader(503)
			io.WriteString(w, `{"error":{"message":"upstream down","type":"server_error"}}`)
			return
		}
		io.WriteString(w, `{"id":"ok"}`)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *bodyRecorder) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

// circuitModels returns the models of tr's circuits, and the state of each.
func circuitModels(tr *Transport) map[string]CircuitState {
	m := map[string]CircuitState{}
	for _, c := range tr.Circuits() {
		m[c.Model] = c.State
	}
	return m
}

// TestSharedBodyRetryablehttp: go-retryablehttp's Client over a Transport.
// For a strings.Reader (an io.ReadSeeker) its GetBody seeks the one reader
// back to 0 and returns it, the same reader its Body is: the server must
// still receive every byte, and the model must still key the circuits.
func TestSharedBodyRetryablehttp(t *testing.T) {
	checkLeaks(t)
	rec := newBodyRecorder(t)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	tr := New(base, WithMaxRetries(0), WithBreakerThreshold(0.5, 3))
	rc := retryablehttp.NewClient()
	rc.Logger = nil
	rc.RetryMax = 0
	rc.HTTPClient = &http.Client{Transport: tr}
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler

	good := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	broken := `{"messages":[{"role":"user","content":"hi"}],"model":"broken"}`
	send := func(body string) (int, error) {
		req, err := retryablehttp.NewRequestWithContext(t.Context(), http.MethodPost, rec.srv.URL+"/v1/chat/completions", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := rc.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := send(good); err != nil || code != 200 {
		t.Fatalf("good model: got %d, %v; want 200", code, err)
	}
	for i := range 3 {
		if code, err := send(broken); err != nil || code != 503 {
			t.Fatalf("broken model, call %d: got %d, %v; want 503", i, code, err)
		}
	}
	// The broken model's circuit is open; the good model's is not.
	if _, err := send(broken); err == nil || !strings.Contains(err.Error(), "circuit open") {
		t.Errorf("broken model after 3 failures: got %v, want its open circuit", err)
	}
	if code, err := send(good); err != nil || code != 200 {
		t.Errorf("good model after the other's circuit opened: got %d, %v; want 200", code, err)
	}
	got := rec.received()
	want := []string{good, broken, broken, broken, good}
	if len(got) != len(want) {
		t.Fatalf("server received %d bodies %q, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d: server received %q, want %q", i, got[i], want[i])
		}
	}
	states := circuitModels(tr)
	if states["broken"] != CircuitOpen || states["gpt-4o"] != CircuitClosed {
		t.Errorf("circuits %v, want broken open and gpt-4o closed", states)
	}
}

// sameSeeker is a body whose GetBody seeks the one reader back to the start
// and returns it, as a hand-written GetBody over a ReadSeeker does.
type sameSeeker struct {
	*strings.Reader
	closed bool
}

func (s *sameSeeker) Close() error { s.closed = true; return nil }

// TestSharedBodyCustomGetBody: GetBody returns the very io.ReadSeeker that
// Body is (seekable), the same reader behind io.NopCloser (not seekable), or
// an *os.File it seeks back. Each time the server receives the whole body,
// on the first attempt and on every retry, and the model is found. (The
// file is closed by the base transport once sent, so its GetBody cannot
// give it again: that call makes one attempt.)
func TestSharedBodyCustomGetBody(t *testing.T) {
	checkLeaks(t)
	rec := newBodyRecorder(t)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	body := `{"messages":[{"role":"user","content":"hi"}],"model":"broken"}`
	file := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func() (io.ReadCloser, func() (io.ReadCloser, error)){
		"same ReadSeeker": func() (io.ReadCloser, func() (io.ReadCloser, error)) {
			rs := &sameSeeker{Reader: strings.NewReader(body)}
			return rs, func() (io.ReadCloser, error) { _, err := rs.Seek(0, io.SeekStart); return rs, err }
		},
		"same reader behind NopCloser": func() (io.ReadCloser, func() (io.ReadCloser, error)) {
			rs := strings.NewReader(body)
			return io.NopCloser(rs), func() (io.ReadCloser, error) { _, err := rs.Seek(0, io.SeekStart); return io.NopCloser(rs), err }
		},
		"file, GetBody wraps it": func() (io.ReadCloser, func() (io.ReadCloser, error)) {
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			return f, func() (io.ReadCloser, error) { _, err := f.Seek(0, io.SeekStart); return io.NopCloser(f), err }
		},
	}
	for name, mk := range cases {
		rec.mu.Lock()
		rec.bodies = nil
		rec.mu.Unlock()
		tr := New(base, fastRetries()...)
		b, getBody := mk()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, rec.srv.URL+"/v1/chat/completions", b)
		req.ContentLength = int64(len(body))
		req.GetBody = getBody
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got := rec.received()
		want := DefaultMaxRetries + 1
		if _, ok := b.(*os.File); ok {
			want = 1
		}
		if len(got) != want {
			t.Errorf("%s: server received %d requests, want %d", name, len(got), want)
		}
		for i, g := range got {
			if g != body {
				t.Errorf("%s: attempt %d: server received %q, want %q", name, i, g, body)
			}
		}
		if _, ok := circuitModels(tr)["broken"]; !ok {
			t.Errorf("%s: circuits %v, want one for the model \"broken\"", name, circuitModels(tr))
		}
		if f, ok := b.(*os.File); ok {
			f.Close()
		}
	}
}

// TestSharedBodyLarge: a shared body larger than the buffer limit is sent
// once, whole: what was read to find the model goes first, then the rest.
func TestSharedBodyLarge(t *testing.T) {
	checkLeaks(t)
	rec := newBodyRecorder(t)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	body := string(chatBodyOfSize(64<<10, "gpt-4o"))
	body = `{"model":"big",` + body[1:]
	rs := strings.NewReader(body)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, rec.srv.URL+"/v1/chat/completions", io.NopCloser(rs))
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { _, err := rs.Seek(0, io.SeekStart); return io.NopCloser(rs), err }
	tr := New(base, WithMaxBufferedBody(4<<10))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	got := rec.received()
	if len(got) != 1 || got[0] != body {
		t.Fatalf("server received %d bodies (first %d bytes), want the %d-byte body once", len(got), len(got[0]), len(body))
	}
	if !bytes.Equal([]byte(got[0]), []byte(body)) {
		t.Fatal("body differs")
	}
	if _, ok := circuitModels(tr)["big"]; !ok {
		t.Errorf("circuits %v, want one for the model \"big\"", circuitModels(tr))
	}
}

// TestSharedBodyLargeNotRetried: a body too large to buffer whose GetBody
// hands back the same reader without rewinding it is sent once, whole, and
// not retried (a retry would send what is left of it: nothing), as a body
// without GetBody.
func TestSharedBodyLargeNotRetried(t *testing.T) {
	checkLeaks(t)
	rec := newBodyRecorder(t)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	body := string(chatBodyOfSize(64<<10, "gpt-4o"))
	body = `{"model":"broken",` + body[1:]
	rc := io.NopCloser(strings.NewReader(body))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, rec.srv.URL+"/v1/chat/completions", rc)
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return rc, nil } // the same reader, never rewound
	tr := New(base, WithMaxBufferedBody(4<<10), WithBackoff(1, 1))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := rec.received(); len(got) != 1 || got[0] != body || resp.StatusCode != 503 {
		t.Fatalf("server received %d bodies (first of %d bytes), status %d; want the %d-byte body once and its 503", len(got), len(got[0]), resp.StatusCode, len(body))
	}
}
