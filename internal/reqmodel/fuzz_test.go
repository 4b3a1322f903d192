package reqmodel

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llmtransport/llmtransport/internal/workload"
)

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

// FuzzRequestModel: the scanner never panics, finds the same model however
// the body is cut into pieces, never returns a name over the limit, and
// agrees with encoding/json on valid JSON (the first top-level "model", or
// the last when the tail is looked at first).
func FuzzRequestModel(f *testing.F) {
	f.Add([]byte(`{"model":"gpt-4o"}`), 3)
	f.Add([]byte(`{"a":{"model":"x"},"b":["\"model\"",1,true],"model":"y"}`), 1)
	f.Add([]byte(`{"mod\u0065l":"a\\\"b"}`), 2)
	f.Add(workload.DenseChatBody(2000, "m"), 17)
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

// abs returns the absolute value of n.
func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
