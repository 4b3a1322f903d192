package llmtransport

import (
	"bytes"

	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// bigChatBody returns a JSON chat request of about size bytes whose
// messages mention "model" in strings and nested keys, with the top-level
// "model" as its last key.
func bigChatBody(size int, model string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"messages":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"role":"user","content":"which \"model\": are you? {\"model\":\"fake-%d\"} \\\\","metadata":{"model":"nested-%d","tags":["model",{"model":[1,2,{"x":"}"}]}],"n":-1.5e3,"ok":true,"none":null}}`, i, i)
	}
	b.WriteString(`],"temperature":0.2,"stream":false,"model":`)
	m, _ := json.Marshal(model)
	b.Write(m)
	b.WriteString("}")
	return b.Bytes()
}

// chatBody returns a JSON chat request of about size bytes shaped like the
// ones SDKs send (openai-go writes "messages" before "model"): a system
// prompt, turns of prose, and "model" last.
func chatBodyOfSize(size int, model string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"messages":[{"role":"system","content":"You are a helpful assistant. Answer briefly."}`)
	para := strings.Repeat(`The quick brown fox jumps over the lazy dog; \"quoted\" text,\nnew lines and a model name or two. `, 40)
	for i := 0; b.Len() < size-200; i++ {
		role := [...]string{"user", "assistant"}[i%2]
		content := para[:min(len(para), max(size-200-b.Len(), 16))]
		for strings.HasSuffix(content, "\\") {
			content = content[:len(content)-1]
		}
		fmt.Fprintf(&b, `,{"role":%q,"content":"%s"}`, role, content)
	}
	b.WriteString(`],"temperature":0.7,"max_tokens":512,"stream":true,"model":`)
	m, _ := json.Marshal(model)
	b.Write(m)
	b.WriteString("}")
	return b.Bytes()
}

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

// scanAll runs the scanner over body fed in pieces of the given size.
func scanAll(body []byte, piece int) string {
	s := new(modelScanner)
	s.reset()
	for len(body) > 0 {
		n := min(piece, len(body))
		if s.feed(body[:n]) {
			break
		}
		body = body[n:]
	}
	return s.result()
}

// scanWholeOf runs scanWhole (head, tail, then the rest) over body.
func scanWholeOf(body []byte) string {
	s := new(modelScanner)
	s.reset()
	s.scanWhole(body)
	return s.result()
}

func TestModelFromBody(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"first key", `{"model":"gpt-4o","messages":[]}`, "gpt-4o"},
		{"last key", `{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o"}`, "gpt-4o"},
		{"white space", " \n\t{ \"a\" : 1 ,\r\n \"model\" : \"m1\" }", "m1"},
		{"nested model key is skipped", `{"metadata":{"model":"no"},"model":"yes"}`, "yes"},
		{"nested only", `{"metadata":{"model":"no"},"messages":[{"model":"no"}]}`, ""},
		{"model inside a string", `{"content":"\"model\":\"no\"","model":"yes"}`, "yes"},
		{"key that ends like model", `{"xmodel":"no","model_id":"no","model":"yes"}`, "yes"},
		{"escaped backslash before quote", `{"a":"x\\","model":"yes"}`, "yes"},
		{"escaped quote", `{"a":"x\"model\":\"no","model":"yes"}`, "yes"},
		{"escaped key", `{"mod\u0065l":"esc"}`, "esc"},
		{"escaped value", `{"model":"a\/b\u00e9"}`, "a/bé"},
		{"scalars", `{"n":12.5e-3,"t":true,"f":false,"z":null,"model":"m"}`, "m"},
		{"arrays of arrays", `{"input":[[1,2],[3,[4,"]"]]],"model":"emb"}`, "emb"},
		{"model not a string", `{"model":null}`, ""},
		{"model number", `{"model":4}`, ""},
		{"empty object", `{}`, ""},
		{"array", `[{"model":"no"}]`, ""},
		{"not json", `model=gpt-4o`, ""},
		{"truncated", `{"messages":[{"content":"abc`, ""},
		{"truncated model", `{"model":"gpt-`, ""},
		{"too long", `{"model":"` + strings.Repeat("m", maxModelLen+1) + `"}`, ""},
		{"longest", `{"model":"` + strings.Repeat("m", maxModelLen) + `"}`, strings.Repeat("m", maxModelLen)},
		{"bad escape", `{"model":"a\qb"}`, ""},
		{"first of duplicates", `{"model":"a","model":"b"}`, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, piece := range []int{1, 2, 3, 7, 1 << 20} {
				if got := scanAll([]byte(tt.body), piece); got != tt.want {
					t.Errorf("in pieces of %d: got %q, want %q", piece, got, tt.want)
				}
			}
			req := newModelRequest(t, "http://gw.test/v1/chat/completions", "application/json", []byte(tt.body))
			if got := requestModel(req, nil); got != tt.want {
				t.Errorf("through GetBody: got %q, want %q", got, tt.want)
			}
			// The same after 8 KiB of messages, so that the tail is
			// looked at on its own.
			if strings.HasPrefix(strings.TrimSpace(tt.body), "{") && tt.name != "first of duplicates" {
				pad := `{"pad":["` + strings.Repeat(`x\"{[`, 2<<10) + `"],` + strings.TrimPrefix(strings.TrimSpace(tt.body), "{")
				if tt.body == "{}" {
					pad = `{"pad":["` + strings.Repeat(`x\"{[`, 2<<10) + `"]}`
				}
				if got := scanWholeOf([]byte(pad)); got != tt.want {
					t.Errorf("after a long first member: got %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestTailModel(t *testing.T) {
	long := `{"messages":[` + strings.Repeat(`{"role":"user","content":"a \"model\": {[\\"},`, 400) + `{}]`
	tests := []struct {
		name, body string
		budget     int
		want       string
		ok         bool
	}{
		{"model last", long + `,"model":"m"}`, 200, "m", true},
		{"params after model", long + `,"model":"m","temperature":0.5,"stream":true,"stop":["\n","}"],"n":null}`, 200, "m", true},
		{"nested model keys in the tail", `{"a":1,"meta":{"model":"no","x":[{"model":"no"}]},"model":"yes"}`, 1 << 10, "yes", true},
		{"escapes in the tail", `{"c":"a\"b\\","d":"\\\"","model":"m\u00e9"}`, 1 << 10, "mé", true},
		{"white space", " {\n \"model\" :\t\"m\" \r\n} \n", 1 << 10, "m", true},
		{"model first, tail too long", `{"model":"m",` + long[1:] + `}`, 200, "", false},
		{"model first, whole body", `{"model":"m","x":{"model":"n"}}`, 1 << 10, "m", true},
		{"no model", `{"messages":[{"model":"x"}],"temperature":1}`, 1 << 10, "", true},
		{"empty object", `{}`, 10, "", true},
		{"model not a string", `{"a":"b","model":5}`, 10, "", true},
		{"not an object", `[{"model":"m"}]`, 10, "", false},
		{"junk before", `x{"model":"m","a":1}`, 1 << 10, "m", true},
		{"junk before, no model", `x{"a":1}`, 1 << 10, "", false},
		{"truncated", `{"a":"b`, 10, "", false},
		{"backslashes across the budget", `{"a":"` + strings.Repeat(`\\`, 100) + `\"","model":"m"}`, 30, "m", true},
		{"backslash run cut by the budget", `{"a":"` + strings.Repeat(`\\`, 100) + `\""}`, 30, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tailModel([]byte(tt.body), tt.budget)
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestModelFromLargeBody(t *testing.T) {
	body := bigChatBody(1<<20, "big-model")
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

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func TestModelNeverReadsRequestBody(t *testing.T) {
	req := newModelRequest(t, "http://gw.test/v1/chat/completions", "application/json", []byte(`{"model":"m"}`))
	body := &trackBody{Reader: iotest.ErrReader(fmt.Errorf("read"))}
	req.Body = body
	if got := requestModel(req, nil); got != "m" {
		t.Errorf("got %q, want m", got)
	}
	if body.isClosed() {
		t.Error("req.Body was closed")
	}
}

func TestModelSources(t *testing.T) {
	chat := []byte(`{"model":"body-model"}`)
	tests := []struct {
		name, url, ctype string
		body             []byte
		ctx              string // "" for no ContextWithModel
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
				req = req.WithContext(ContextWithModel(req.Context(), tt.ctx))
			}
			if got := requestModel(req, nil); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// topLevelModels finds the first and the last top-level "model" of a JSON
// object with encoding/json, for the fuzz target to compare against.
func topLevelModels(b []byte) (first, last string, ok bool) {
	d := json.NewDecoder(bytes.NewReader(b))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return "", "", false
	}
	seen := false
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return "", "", false
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return "", "", false
		}
		if k == "model" {
			var m string
			if json.Unmarshal(v, &m) != nil || len(m) > maxModelLen {
				m = ""
			}
			if !seen {
				first, seen = m, true
			}
			last = m
		}
	}
	return first, last, true
}

func FuzzRequestModel(f *testing.F) {
	f.Add([]byte(`{"model":"gpt-4o"}`), 3)
	f.Add([]byte(`{"a":{"model":"x"},"b":["\"model\"",1,true],"model":"y"}`), 1)
	f.Add([]byte(`{"mod\u0065l":"a\\\"b"}`), 2)
	f.Add(bigChatBody(2000, "m"), 17)
	f.Add([]byte(`{"model":`), 1)
	f.Add([]byte(` { "model" : "gpt-4o" , "x":1}`), 1)
	f.Add([]byte(`{"model":"a\\u0041"}`), 1)
	f.Add([]byte(`{"model":"`+strings.Repeat("m", maxModelLen+1)+`"}`), 7)
	f.Add([]byte(`{"a":"\\\"}","b":{"c":[1,"]"]},"model":"x\u0041"}`), 5)
	f.Fuzz(func(t *testing.T, body []byte, piece int) {
		piece = 1 + abs(piece)%64
		whole := scanAll(body, len(body)+1)
		if got := scanAll(body, piece); got != whole {
			t.Fatalf("in pieces of %d: %q, whole: %q", piece, got, whole)
		}
		if len(whole) > maxModelLen {
			t.Fatalf("model of %d bytes", len(whole))
		}
		tail, tailOK := tailModel(body, len(body)/2+1)
		if len(tail) > maxModelLen {
			t.Fatalf("tail model of %d bytes", len(tail))
		}
		viaWhole := scanWholeOf(body)
		if head, ok := headModel(body); ok && head != whole {
			t.Fatalf("headModel: %q, the scanner: %q", head, whole)
		}
		if json.Valid(body) && utf8.Valid(body) {
			first, last, ok := topLevelModels(body)
			if ok && whole != first {
				t.Fatalf("got %q, encoding/json finds %q first", whole, first)
			}
			if ok && tailOK && tail != last {
				t.Fatalf("tail: got %q, encoding/json finds %q last", tail, last)
			}
			if ok && viaWhole != first && viaWhole != last {
				t.Fatalf("whole: got %q, encoding/json finds %q first and %q last", viaWhole, first, last)
			}
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func BenchmarkRequestModel(b *testing.B) {
	for _, bc := range []struct {
		name string
		body []byte
	}{
		{"1KB", chatBodyOfSize(1<<10, "gpt-4o-mini")},
		{"1MB", chatBodyOfSize(1<<20, "gpt-4o-mini")},
		// Many short strings, escapes and nested "model" keys: a worst case.
		{"1MB-dense", bigChatBody(1<<20, "gpt-4o-mini")},
	} {
		if !json.Valid(bc.body) {
			b.Fatalf("%s: fixture is not JSON", bc.name)
		}
		if got := scanAll(bc.body, len(bc.body)); got != "gpt-4o-mini" {
			b.Fatalf("%s: fixture gives %q", bc.name, got)
		}
		b.Run(bc.name+"/GetBody", func(b *testing.B) {
			req := newModelRequest(b, "http://gw.test/v1/chat/completions", "application/json", bc.body)
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if requestModel(req, nil) != "gpt-4o-mini" {
					b.Fatal("model not found")
				}
			}
		})
		b.Run(bc.name+"/buffered", func(b *testing.B) {
			req := newModelRequest(b, "http://gw.test/v1/chat/completions", "application/json", nil)
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if requestModel(req, bc.body) != "gpt-4o-mini" {
					b.Fatal("model not found")
				}
			}
		})
	}
}

// requestModel is findModel for tests that only want the model.
func requestModel(req *http.Request, body []byte) string {
	m, _, _ := findModel(req, body)
	return m
}
