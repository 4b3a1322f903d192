package reqmodel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/llmtransport/llmtransport/internal/workload"
)

// newModelRequest returns a POST of body to url, of content type ctype
// ("" for none), whose GetBody hands out bytes readers.
func newModelRequest(t testing.TB, url, ctype string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	return req
}

// requestModel is Find for tests that only want the model.
func requestModel(req *http.Request, body []byte) string {
	m, _, _ := Find(req, body)
	return m
}

// TestModelSources: where the model is read from, in order (context, path,
// body, query), and which bodies are not scanned.
func TestModelSources(t *testing.T) {
	chat := []byte(`{"model":"body-model"}`)
	tests := []struct {
		name, url, ctype string
		body             []byte
		ctx              string // "" for no NewContext
		want             string
	}{
		{"context wins", "http://gw.test/v1beta/models/gemini-2.0-flash:generateContent", "application/json", chat, "ctx-model", "ctx-model"},
		{"gemini", "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent", "application/json", []byte(`{"contents":[]}`), "", "gemini-2.0-flash"},
		{"gemini stream", "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", "application/json", nil, "", "gemini-2.5-pro"},
		{"gemini v1 countTokens", "https://generativelanguage.googleapis.com/v1/models/gemini-pro:countTokens", "", nil, "", "gemini-pro"},
		{"gemini embed", "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:embedContent", "", nil, "", "text-embedding-004"},
		{"tuned model", "https://generativelanguage.googleapis.com/v1beta/tunedModels/my-tune:generateContent", "", nil, "", "my-tune"},
		{"vertex", "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent", "", nil, "", "gemini-2.0-flash"},
		{"vertex anthropic", "https://x-aiplatform.googleapis.com/v1/projects/models/locations/l/publishers/anthropic/models/claude-3-5-sonnet@20240620:rawPredict", "", nil, "", "claude-3-5-sonnet@20240620"},
		{"models list is no model", "https://api.openai.com/v1/models/gpt-4o", "", nil, "", ""},
		{"azure", "https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21", "application/json", []byte(`{"messages":[]}`), "", "my-gpt4o"},
		{"openai body", "https://api.openai.com/v1/chat/completions", "application/json", chat, "", "body-model"},
		{"json with charset", "https://api.openai.com/v1/chat/completions", "application/json; charset=utf-8", chat, "", "body-model"},
		{"no content type", "https://api.openai.com/v1/chat/completions", "", chat, "", "body-model"},
		{"multipart is not scanned", "https://api.openai.com/v1/audio/transcriptions", "multipart/form-data; boundary=x", chat, "", ""},
		{"realtime query", "https://api.openai.com/v1/realtime?model=gpt-4o-realtime-preview", "", nil, "", "gpt-4o-realtime-preview"},
		{"escaped query", "https://gw.test/v1/realtime?a=1&model=org%2Fm+1", "", nil, "", "org/m 1"},
		{"no model", "https://api.openai.com/v1/files", "", nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newModelRequest(t, tt.url, tt.ctype, tt.body)
			if tt.body == nil {
				req.Body, req.GetBody = nil, nil
			}
			if tt.ctx != "" {
				req = req.WithContext(NewContext(req.Context(), tt.ctx))
			}
			if got := requestModel(req, nil); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestModelFromLargeBody: a 1 MB body with "model" last, through each kind
// of reader GetBody may hand out, and buffered.
func TestModelFromLargeBody(t *testing.T) {
	body := workload.DenseChatBody(1<<20, "big-model")
	if len(body) < 1<<20 {
		t.Fatalf("body is %d bytes", len(body))
	}
	// Check the fixture with a real decoder first.
	var v struct{ Model string }
	if err := json.Unmarshal(body, &v); err != nil || v.Model != "big-model" {
		t.Fatalf("fixture: %v, model %q", err, v.Model)
	}
	check := func(name string, req *http.Request, buffered []byte) {
		t.Helper()
		if got := requestModel(req, buffered); got != "big-model" {
			t.Errorf("%s: got %q, want big-model", name, got)
		}
	}
	check("bytes.Reader", newModelRequest(t, "http://gw.test/v1/chat/completions", "application/json", body), nil)
	check("buffered", newModelRequest(t, "http://gw.test/v1/chat/completions", "", nil), body)

	sreq, err := http.NewRequest(http.MethodPost, "http://gw.test/v1/chat/completions", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	check("strings.Reader", sreq, nil)

	// A GetBody reader that is neither a bytes nor a strings reader, and
	// hands out a few bytes at a time.
	oreq := newModelRequest(t, "http://gw.test/v1/chat/completions", "application/json", nil)
	closed := 0
	oreq.Body = io.NopCloser(iotest.ErrReader(fmt.Errorf("req.Body must not be read")))
	oreq.GetBody = func() (io.ReadCloser, error) {
		return struct {
			io.Reader
			io.Closer
		}{iotest.HalfReader(bytes.NewReader(body)), closerFunc(func() error { closed++; return nil })}, nil
	}
	check("half reader", oreq, nil)
	if closed != 1 {
		t.Errorf("GetBody's reader closed %d times, want 1", closed)
	}
}

// closerFunc is an io.Closer made of a function.
type closerFunc func() error

// Close implements [io.Closer].
func (f closerFunc) Close() error { return f() }

// TestModelNeverReadsRequestBody: the model is read through GetBody; the
// request's own Body is neither read nor closed.
func TestModelNeverReadsRequestBody(t *testing.T) {
	req := newModelRequest(t, "http://gw.test/v1/chat/completions", "application/json", []byte(`{"model":"m"}`))
	body := &closeTracker{Reader: iotest.ErrReader(fmt.Errorf("read"))}
	req.Body = body
	if got := requestModel(req, nil); got != "m" {
		t.Errorf("got %q, want m", got)
	}
	if body.closed {
		t.Error("req.Body was closed")
	}
}

// closeTracker is a request body that records whether it was closed.
type closeTracker struct {
	io.Reader
	closed bool
}

// Close implements [io.Closer].
func (b *closeTracker) Close() error {
	b.closed = true
	return nil
}
