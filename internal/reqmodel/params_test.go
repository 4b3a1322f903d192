package reqmodel

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llmtransport/llmtransport/internal/workload"
)

// scanParams runs the scanner over body in pieces of piece bytes, reading
// the numbers.
func scanParams(body []byte, piece int) (string, Params) {
	s := new(modelScanner)
	s.reset()
	s.num.collect = true
	for len(body) > 0 {
		n := min(piece, len(body))
		if s.feed(body[:n]) {
			break
		}
		body = body[n:]
	}
	var p Params
	s.num.put(&p)
	return s.result(), p
}

// refParams reads what FindWith should with encoding/json: the first
// top-level "model" (a string within the limit, else none), the largest
// max_tokens, max_completion_tokens or max_output_tokens and the last n
// that are non-negative numbers without an exponent, their fractions
// dropped.
func refParams(b []byte) (model string, p Params, ok bool) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return "", p, false
	}
	seen := false
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return "", p, false
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return "", p, false
		}
		num := func() (int64, bool) {
			s := string(v)
			if s == "" || s[0] < '0' || s[0] > '9' || strings.ContainsAny(s, "eE-+") {
				return 0, false
			}
			s, _, _ = strings.Cut(s, ".")
			var n int64
			for _, c := range s {
				n = min(n*10+int64(c-'0'), maxParam)
			}
			return n, true
		}
		switch k {
		case "model":
			if !seen {
				seen = true
				if json.Unmarshal(v, &model) != nil || len(model) > maxModelLen {
					model = ""
				}
			}
		case "max_tokens", "max_completion_tokens", "max_output_tokens":
			if n, ok := num(); ok {
				p.MaxOutput = max(p.MaxOutput, n)
			}
		case "n":
			if n, ok := num(); ok {
				p.N = n
			}
		}
	}
	return model, p, true
}

func TestFindWithParams(t *testing.T) {
	for _, tc := range []struct {
		body  string
		model string
		p     Params
	}{
		{`{"model":"gpt-4o","max_tokens":256}`, "gpt-4o", Params{MaxOutput: 256}},
		{`{"messages":[{"max_tokens":9}],"max_completion_tokens":1024,"n":3,"model":"o3"}`, "o3", Params{MaxOutput: 1024, N: 3}},
		{`{"model":"x","max_output_tokens":100,"max_tokens":50}`, "x", Params{MaxOutput: 100}},
		{`{"model":"x","max_tokens":256.0,"n":2.5}`, "x", Params{MaxOutput: 256, N: 2}},
		{`{"model":"x","max_tokens":-1,"n":1e3}`, "x", Params{}},
		{`{"model":"x","max_tokens":"256","n":null}`, "x", Params{}},
		{`{"model":"x","max_tokens":99999999999999999999999}`, "x", Params{MaxOutput: maxParam}},
		{`{"model":1,"model":"y","max_tokens":7}`, "", Params{MaxOutput: 7}},
		{`{"model":"a","model":"b","max_t\u006fkens":8}`, "a", Params{MaxOutput: 8}},
		{`{"max_tokens":12`, "", Params{}},
		{`{"max_tokens":12,`, "", Params{MaxOutput: 12}},
		{`[1]`, "", Params{}},
		// The model first and none of the numbers: headWith's answer.
		{`{"model":"x","temperature":1,"messages":[{"role":"user","content":"n max_tokens"}]}`, "x", Params{}},
		{`{"model":"x","messages":[{"max_tokens":3,"n":2}]}`, "x", Params{}},
		// Keys written with escapes are keys all the same.
		{`{"model":"x","m\u0061x_tokens":9,"\u006e":4}`, "x", Params{MaxOutput: 9, N: 4}},
		{`{"model":"x","n":2}`, "x", Params{N: 2}},
		// An escaped underscore is an underscore.
		{`{"model":"x","max\u005ftokens":9}`, "x", Params{MaxOutput: 9}},
		{`{"model":"x","max\u005Ftokens":9,"n":2}`, "x", Params{MaxOutput: 9, N: 2}},
		{`{"model":"x","note":"0005F 005 005"}`, "x", Params{}},
	} {
		for _, piece := range []int{1, 2, 3, 7, 1 << 20} {
			m, p := scanParams([]byte(tc.body), piece)
			if m != tc.model || p != tc.p {
				t.Errorf("%s in pieces of %d: %q %+v, want %q %+v", tc.body, piece, m, p, tc.model, tc.p)
			}
		}
		// Through FindWith, every way the body can come.
		for name, mk := range map[string]func() *http.Request{
			"GetBody": func() *http.Request {
				r, _ := http.NewRequest("POST", "http://h/v1/chat/completions", strings.NewReader(tc.body))
				return r
			},
			"reader": func() *http.Request {
				r, _ := http.NewRequest("POST", "http://h/v1/chat/completions", strings.NewReader(tc.body))
				r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(iotestOneByte(tc.body)), nil }
				return r
			},
		} {
			var p Params
			m, shared, err := FindWith(mk(), nil, &p)
			if err != nil || shared != nil || m != tc.model || !sameOutput(p, tc.p) {
				t.Errorf("%s via %s: %q %+v %v %v, want %q %+v", tc.body, name, m, p, shared, err, tc.model, tc.p)
			}
		}
		var p Params
		if m := InBodyWith([]byte(tc.body), true, &p); m != tc.model || !sameOutput(p, tc.p) {
			t.Errorf("%s InBodyWith: %q %+v", tc.body, m, p)
		}
	}
}

// iotestOneByte is a reader of s that is not an io.WriterTo and reads a
// byte at a time.
func iotestOneByte(s string) io.Reader { return &oneByte{s: s} }

type oneByte struct{ s string }

func (r *oneByte) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0], r.s = r.s[0], r.s[1:]
	return 1, nil
}

// The model named by the context or the path wins, and the body's numbers
// are still read (an Azure deployment's body names max_tokens).
func TestFindWithPathModel(t *testing.T) {
	r, _ := http.NewRequest("POST", "http://h/openai/deployments/dep1/chat/completions?api-version=1", strings.NewReader(`{"model":"ignored","max_tokens":64}`))
	var p Params
	m, _, err := FindWith(r, nil, &p)
	if err != nil || m != "dep1" || p.MaxOutput != 64 {
		t.Errorf("path: %q %+v %v", m, p, err)
	}
	r, _ = http.NewRequestWithContext(NewContext(context.Background(), "ctx-model"), "POST", "http://h/v1/chat/completions", strings.NewReader(`{"model":"ignored","max_tokens":8,"n":2}`))
	p = Params{}
	m, _, err = FindWith(r, nil, &p)
	if err != nil || m != "ctx-model" || p != (Params{MaxOutput: 8, N: 2}) {
		t.Errorf("context: %q %+v %v", m, p, err)
	}
	// Without Params, Find as before.
	r, _ = http.NewRequest("POST", "http://h/v1/chat/completions", strings.NewReader(`{"model":"m","max_tokens":64}`))
	if m, _, _ := FindWith(r, nil, nil); m != "m" {
		t.Errorf("nil Params: %q", m)
	}
}

// FindWith on a known body does not allocate more than Find does.
func TestFindWithAllocs(t *testing.T) {
	body := workload.DenseChatBody(1000, "gpt-4o")
	body = append(body[:len(body)-1], `,"max_tokens":256}`...)
	r, _ := http.NewRequest("POST", "http://h/v1/chat/completions", bytes.NewReader(body))
	find := testing.AllocsPerRun(100, func() { Find(r, nil) })
	var p Params
	with := testing.AllocsPerRun(100, func() { FindWith(r, nil, &p) })
	if p.MaxOutput != 256 {
		t.Fatalf("max_tokens not found: %+v", p)
	}
	if with > find {
		t.Errorf("FindWith: %v allocs, Find: %v", with, find)
	}
}

// FuzzParams: the numbers read do not depend on how the body is cut, and
// agree with encoding/json on valid JSON; the model read with them is the
// first top-level one, as Find's forward scan finds it.
func FuzzParams(f *testing.F) {
	f.Add([]byte(`{"model":"gpt-4o","max_tokens":256,"n":2}`), 3)
	f.Add([]byte(`{"a":{"max_tokens":1},"max_completion_tokens":12.5,"model":"y"}`), 1)
	f.Add([]byte(`{"max_tokens":1e3,"n":-1,"max_output_tokens":null}`), 2)
	f.Add([]byte(`{"m\u0061x_tokens":5,"model":"a","model":"b"}`), 4)
	f.Add([]byte(`{"model":"a","\u006e":3,"model":"b"}`), 5)
	f.Add([]byte(`{"model":"a","messages":[{"content":"\"n\""}],"x":[1]}`), 6)
	f.Add(workload.Chat1K, 7)
	f.Add([]byte(`{"model":"a","max\u005Ftokens":3,"n":2}`), 8)
	f.Fuzz(func(t *testing.T, body []byte, piece int) {
		piece = 1 + abs(piece)%64
		wm, wp := scanParams(body, len(body)+1)
		if m, p := scanParams(body, piece); m != wm || p != wp {
			t.Fatalf("in pieces of %d: %q %+v, whole: %q %+v", piece, m, p, wm, wp)
		}
		if wp.MaxOutput < 0 || wp.MaxOutput > maxParam || wp.N < 0 || wp.N > maxParam {
			t.Fatalf("out of range: %+v", wp)
		}
		if m, ok := headWith(body); ok && (m != wm || !sameOutput(wp, Params{})) {
			t.Fatalf("headWith: %q, the scan: %q %+v", m, wm, wp)
		}
		if json.Valid(body) && utf8.Valid(body) {
			if m, p, ok := refParams(body); ok && (m != wm || p != wp) {
				t.Fatalf("got %q %+v, encoding/json: %q %+v", wm, wp, m, p)
			}
		}
	})
}

// sameOutput reports whether p and q estimate the same output: the same
// MaxOutput and, when it is not 0, the same N (n multiplies nothing
// else, and headWith leaves it unread when MaxOutput must be 0).
func sameOutput(p, q Params) bool {
	return p.MaxOutput == q.MaxOutput && (p.MaxOutput == 0 || p.N == q.N)
}
