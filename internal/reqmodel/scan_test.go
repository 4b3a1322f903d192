package reqmodel

import (
	"strings"
	"testing"
)

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

// TestModelFromBody: the top-level "model" of JSON bodies of every shape,
// fed to the scanner in pieces of any size, read through GetBody, and after
// a long first member so that the tail is looked at on its own.
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

// TestTailModel: the backward walk from the end of a body finds the last
// top-level "model", or says it cannot tell.
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
