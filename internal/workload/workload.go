// Package workload holds the request bodies, the fake upstream and the
// request loops that the module's benchmarks (bench_test.go) and the
// comparison program (bench/) share, so that both measure the same thing,
// and the chat bodies the model finder's tests and the transport's tests
// share (DenseChatBody, ProseChatBody).
package workload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// The request bodies of the workloads.
var (
	// Chat1K is a 1 KB chat completion request, "model" first.
	Chat1K = ChatBody(1<<10, false)
	// Chat1M is a 1 MB chat completion request whose "model" is the last
	// top-level key, so that finding it means getting past the whole body.
	Chat1M = ChatBody(1<<20, true)
)

// ChatBody returns a JSON chat completion request of about size bytes: a
// few messages with escaped quotes and a nested object holding a decoy
// "model", and the real "model" first or last.
func ChatBody(size int, modelLast bool) []byte {
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

// DenseChatBody returns a JSON chat request of about size bytes whose
// messages mention "model" in strings and nested keys, with many short
// strings, escapes and scalars, and the top-level "model" as its last key:
// a worst case for finding the model.
func DenseChatBody(size int, model string) []byte {
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

// ProseChatBody returns a JSON chat request of about size bytes shaped like
// the ones SDKs send (openai-go writes "messages" before "model"): a system
// prompt, turns of prose, and model last.
func ProseChatBody(size int, model string) []byte {
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

// ChatResponse is a typical non-streamed chat completion, about 1 KB.
var ChatResponse = []byte(`{"id":"chatcmpl-9xYz","object":"chat.completion","created":1735689600,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"` +
	strings.Repeat("The quarterly report shows steady revenue. ", 18) +
	`"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":240,"completion_tokens":160,"total_tokens":400},"system_fingerprint":"fp_0123456789"}`)

// SSEEvents is the number of chunks of the streamed response, the last
// of which carries the finish reason.
const SSEEvents = 200

// SSEChunk is one chunk of the streamed response.
var SSEChunk = []byte(`data: {"id":"chatcmpl-9xYz","object":"chat.completion.chunk","created":1735689600,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}` + "\n\n")

// SSEFinish is the last chunk of the streamed response: its finish reason.
var SSEFinish = []byte(`data: {"id":"chatcmpl-9xYz","object":"chat.completion.chunk","created":1735689600,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n")

// Upstream returns the handlers of a fake OpenAI-compatible upstream:
//
//	POST /ok      reads the body, answers 200 with ChatResponse
//	POST /stream  reads the body, answers an event stream of SSEEvents chunks
//	POST /dead    reads the body, answers 503 with a JSON error; counted in dead
func Upstream(dead *atomic.Int64) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-request-id", "req-0123456789")
		w.Write(ChatResponse)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		f := w.(http.Flusher)
		for range SSEEvents - 1 {
			w.Write(SSEChunk)
			f.Flush()
		}
		w.Write(SSEFinish)
		io.WriteString(w, "data: [DONE]\n\n")
	})
	mux.HandleFunc("/dead", func(w http.ResponseWriter, r *http.Request) {
		dead.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":{"message":"upstream unavailable","type":"server_error","code":"service_unavailable"}}`)
	})
	return mux
}

// Send posts body to url through rt, as an SDK would, reads the response to
// its end and reports an error unless it was a 200.
func Send(rt http.RoundTripper, url string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-bench")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("got status %d, want 200", resp.StatusCode)
	}
	return nil
}

// DeadCalls sends n calls with Chat1K to url (an upstream that always
// fails) through rt: all at once when burst is set, else one after the
// other. Errors (retries exhausted, an open circuit) are expected.
func DeadCalls(rt http.RoundTripper, url string, n int, burst bool) {
	one := func() { Send(rt, url, Chat1K) }
	if !burst {
		for range n {
			one()
		}
		return
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			one()
		})
	}
	close(start)
	wg.Wait()
}

// EvictSize is the size of the buffer Evict writes: 2 MiB, past a core's
// L2 cache, about what a loopback round trip walks through between two
// calls at c=1.
const EvictSize = 2 << 20

// Evict writes a byte in every 64 of buf (EvictSize bytes for the cold
// benchmarks), so that what a call touches next is no longer in the
// caches closest to the core: a round trip's worth of other work.
func Evict(buf []byte) {
	for i := 0; i < len(buf); i += 64 {
		buf[i]++
	}
}
