package main

import (
	"bytes"
	"fmt"
	"strings"
)

// The request bodies of the workloads.
var (
	// chat1K is a 1 KB chat completion request, "model" first.
	chat1K = chatBody(1<<10, false)
	// chat1M is a 1 MB chat completion request whose "model" is the last
	// top-level key: finding it means getting past the whole body.
	chat1M = chatBody(1<<20, true)
)

// chatBody returns a JSON chat completion request of about size bytes: a
// few messages with escaped quotes and a nested object holding a decoy
// "model", and the real "model" first or last.
func chatBody(size int, modelLast bool) []byte {
	var b bytes.Buffer
	b.WriteString(`{`)
	if !modelLast {
		b.WriteString(`"model":"gpt-4o-mini",`)
	}
	b.WriteString(`"temperature":0.2,"metadata":{"user":"u-42","tags":["a","b",{"model":"not-this-one"}]},"messages":[`)
	line := `Summarise the \"quarterly\" report: revenue, costs {and} [margins]. `
	for i := 0; b.Len() < size-256; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		fmt.Fprintf(&b, `{"role":%q,"content":"`, role)
		for j := 0; j < 16 && b.Len() < size-256; j++ {
			b.WriteString(line)
		}
		b.WriteString(`"}`)
	}
	b.WriteString(`]`)
	if modelLast {
		b.WriteString(`,"model":"gpt-4o-mini"`)
	}
	b.WriteString(`}`)
	return b.Bytes()
}

// chatResponse is a typical non-streamed chat completion, about 1 KB.
var chatResponse = []byte(`{"id":"chatcmpl-9xYz","object":"chat.completion","created":1735689600,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"` +
	strings.Repeat("The quarterly report shows steady revenue. ", 18) +
	`"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":240,"completion_tokens":160,"total_tokens":400},"system_fingerprint":"fp_0123456789"}`)
