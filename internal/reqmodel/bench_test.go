package reqmodel

import (
	"encoding/json"
	"testing"

	"github.com/llmtransport/llmtransport/internal/workload"
)

// BenchmarkRequestModel times Find on chat bodies of 1 KB and 1 MB with
// "model" last, read through GetBody and buffered.
func BenchmarkRequestModel(b *testing.B) {
	for _, bc := range []struct {
		name string
		body []byte
	}{
		{"1KB", workload.ProseChatBody(1<<10, "gpt-4o-mini")},
		{"1MB", workload.ProseChatBody(1<<20, "gpt-4o-mini")},
		// Many short strings, escapes and nested "model" keys: a worst case.
		{"1MB-dense", workload.DenseChatBody(1<<20, "gpt-4o-mini")},
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

// BenchmarkFindWith times FindWith, which pacing calls, against Find on
// the bench's 1 KB request (workload.Chat1K: "model" first, no max_tokens)
// and on one that names max_tokens, read through GetBody.
func BenchmarkFindWith(b *testing.B) {
	withMax := append(append([]byte(nil), workload.Chat1K[:len(workload.Chat1K)-1]...), `,"max_tokens":256}`...)
	for _, bc := range []struct {
		name string
		body []byte
	}{{"1KB", workload.Chat1K}, {"1KB-max_tokens", withMax}} {
		req := newModelRequest(b, "http://gw.test/v1/chat/completions", "application/json", bc.body)
		b.Run(bc.name+"/Find", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Find(req, nil)
			}
		})
		b.Run(bc.name+"/FindWith", func(b *testing.B) {
			var p Params
			b.ReportAllocs()
			for b.Loop() {
				FindWith(req, nil, &p)
			}
		})
	}
}
