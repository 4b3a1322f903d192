package reqmodel

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/llmtransport/llmtransport/internal/workload"
)

// TestRewrite: the model is replaced where Find reads it, and nowhere else;
// the request given is never modified.
func TestRewrite(t *testing.T) {
	tests := []struct {
		name, url, ctype, body string
		ctx                    bool
		want                   Where
		wantURL, wantBody      string // "" for unchanged body
	}{
		{"body first", "http://gw.test/v1/chat/completions", "application/json", `{"model":"a","messages":[{"role":"user","content":"model"}]}`, false, InJSON,
			"http://gw.test/v1/chat/completions", `{"model":"b-2","messages":[{"role":"user","content":"model"}]}`},
		{"body last, spaces kept", "http://gw.test/v1/chat/completions", "", "{ \"messages\": [ {\"model\":\"x\"} ],\n \"model\" : \"a\" }", false, InJSON,
			"http://gw.test/v1/chat/completions", "{ \"messages\": [ {\"model\":\"x\"} ],\n \"model\" : \"b-2\" }"},
		{"escaped key", "http://gw.test/v1/chat/completions", "application/json", `{"mod\u0065l":"a","n":1}`, false, InJSON,
			"http://gw.test/v1/chat/completions", `{"mod\u0065l":"b-2","n":1}`},
		{"duplicate keys: both", "http://gw.test/v1/chat/completions", "application/json", `{"model":"a","x":null,"model":"c"}`, false, InJSON,
			"http://gw.test/v1/chat/completions", `{"model":"b-2","x":null,"model":"b-2"}`},
		{"gemini path", "http://gw.test/v1beta/models/gem-a:streamGenerateContent?alt=sse", "application/json", `{"model":"ignored"}`, false, InPath,
			"http://gw.test/v1beta/models/b-2:streamGenerateContent?alt=sse", ""},
		{"azure path", "http://gw.test/openai/deployments/dep-a/chat/completions?api-version=2024-10-21", "application/json", `{"messages":[]}`, false, InPath,
			"http://gw.test/openai/deployments/b-2/chat/completions?api-version=2024-10-21", ""},
		{"query", "http://gw.test/v1/realtime?a=%2F&model=m-a&z=1", "", "", false, InQuery,
			"http://gw.test/v1/realtime?a=%2F&model=b-2&z=1", ""},
		{"context, body", "http://gw.test/v1/chat/completions", "application/json", `{"model":"a"}`, true, InJSON,
			"http://gw.test/v1/chat/completions", `{"model":"b-2"}`},
		{"invalid JSON", "http://gw.test/v1/chat/completions", "application/json", `{"model":"a",`, false, Nowhere, "", ""},
		{"model not a string", "http://gw.test/v1/chat/completions", "application/json", `{"model":7}`, false, Nowhere, "", ""},
		{"no model", "http://gw.test/v1/chat/completions", "application/json", `{"messages":[]}`, false, Nowhere, "", ""},
		{"multipart", "http://gw.test/v1/audio/transcriptions", "multipart/form-data; boundary=x", `{"model":"a"}`, false, Nowhere, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			req := newModelRequest(t, tt.url, tt.ctype, body)
			if tt.ctx {
				req = req.WithContext(NewContext(req.Context(), "a"))
			}
			origURL, origBody, origBodyRC := req.URL.String(), bytes.Clone(body), req.Body
			out, nb, where := Rewrite(req, body, "b-2")
			if where != tt.want {
				t.Fatalf("where = %d, want %d", where, tt.want)
			}
			if req.URL.String() != origURL || !bytes.Equal(body, origBody) || req.Body != origBodyRC {
				t.Fatal("the request given was modified")
			}
			if where == Nowhere {
				if out != nil || nb != nil {
					t.Fatal("no rewrite, yet a request or body")
				}
				return
			}
			if got := out.URL.String(); got != tt.wantURL {
				t.Errorf("URL %s, want %s", got, tt.wantURL)
			}
			if string(nb) != tt.wantBody {
				t.Errorf("body %s, want %s", nb, tt.wantBody)
			}
			if out.Body != nil || out.GetBody != nil {
				t.Error("the copy has a body")
			}
			if got := requestModel(withBody(out, nb, body), nil); got != "b-2" {
				t.Errorf("Find reads %q from the copy, want b-2", got)
			}
		})
	}
}

// withBody gives r a body: nb, or else the original.
func withBody(r *http.Request, nb, orig []byte) *http.Request {
	b := nb
	if b == nil {
		b = orig
	}
	r2, _ := http.NewRequestWithContext(r.Context(), r.Method, r.URL.String(), bytes.NewReader(b))
	r2.Header = r.Header
	return r2
}

// TestRewritePathRefusesShapeChanges: a model with a slash, or a colon in a
// Gemini path, is not written into the path.
func TestRewritePathRefusesShapeChanges(t *testing.T) {
	for _, m := range []string{"org/model", "a:b", ""} {
		req := newModelRequest(t, "http://gw.test/v1beta/models/gem-a:generateContent", "", nil)
		if _, _, where := Rewrite(req, nil, m); where != Nowhere {
			t.Errorf("%q: rewritten in the path", m)
		}
	}
	// An escaped path keeps its other escapes.
	req := newModelRequest(t, "http://gw.test/v1/projects/p%2Fq/models/gem-a:generateContent", "", nil)
	out, _, where := Rewrite(req, nil, "gem b")
	if where != InPath || out.URL.EscapedPath() != "/v1/projects/p%2Fq/models/gem%20b:generateContent" {
		t.Errorf("got %v %s", where, out.URL.EscapedPath())
	}
}

// TestRewriteBodyLarge: a 1 MB body, "model" last, is rewritten with one
// allocation of its final size.
func TestRewriteBodyLarge(t *testing.T) {
	body := workload.DenseChatBody(1<<20, "gpt-4o")
	out, ok := RewriteBody(body, "gpt-4o-mini")
	if !ok || len(out) != len(body)+len("-mini") {
		t.Fatalf("ok %v, %d bytes", ok, len(out))
	}
	if cap(out) != len(out) {
		t.Errorf("cap %d, len %d: the copy grew", cap(out), len(out))
	}
	if got := scanAll(out, len(out)); got != "gpt-4o-mini" {
		t.Errorf("model %q", got)
	}
}

// FuzzRewriteBody: on valid JSON the rewritten body is the original with
// only the top-level "model" string values changed (same keys in the same
// order, every other value byte for byte); otherwise nothing is rewritten.
func FuzzRewriteBody(f *testing.F) {
	f.Add([]byte(`{"model":"gpt-4o"}`), "m")
	f.Add([]byte(`{"a":{"model":"x"},"b":["\"model\"",1,true],"model":"y"}`), "z\"q")
	f.Add([]byte(`{"mod\u0065l":"a\\\"b", "model": null}`), "é")
	f.Add(workload.DenseChatBody(2000, "m"), "n")
	f.Add([]byte(`{"model":`), "x")
	f.Add([]byte(` { "model" : "gpt-4o" , "x":1} `), "\x00<>")
	f.Fuzz(func(t *testing.T, body []byte, model string) {
		orig := bytes.Clone(body)
		out, ok := RewriteBody(body, model)
		if !bytes.Equal(body, orig) {
			t.Fatal("the body given was modified")
		}
		if !json.Valid(body) {
			if ok {
				t.Fatal("invalid JSON rewritten")
			}
			return
		}
		spans, sok := decoderSpans(body)
		if !sok {
			if ok {
				t.Fatal("a body that is not an object was rewritten")
			}
			return
		}
		if !ok {
			if len(spans) > 0 {
				t.Fatalf("a top-level model string was not rewritten: %s", body)
			}
			return
		}
		// The oracle: encoding/json's offsets of the top-level "model"
		// strings, each replaced by model as encoding/json writes it.
		enc, _ := json.Marshal(model)
		var want []byte
		prev := 0
		for _, sp := range spans {
			want = append(want, body[prev:sp[0]]...)
			want = append(want, enc...)
			prev = sp[1]
		}
		want = append(want, body[prev:]...)
		if !bytes.Equal(out, want) {
			t.Fatalf("rewritten\n%q\nwant\n%q", out, want)
		}
		if !json.Valid(out) {
			t.Fatalf("rewritten body is not JSON: %s", out)
		}
	})
}

// decoderSpans returns, with encoding/json's decoder, the spans of the
// top-level "model" string values of b as written; ok is false when b is
// not an object.
func decoderSpans(b []byte) (spans [][2]int, ok bool) {
	d := json.NewDecoder(bytes.NewReader(b))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return nil, false
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, false
		}
		end := int(d.InputOffset())
		if k == "model" && len(v) > 0 && v[0] == '"' {
			spans = append(spans, [2]int{end - len(v), end})
		}
	}
	return spans, true
}
