package classify

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// sseCT is the content type of an event stream.
const sseCT = "text/event-stream"

// wholeResp builds a 200 event stream response whose Content-Length says
// that body is all of it.
func wholeResp(body string) *http.Response {
	r := resp(200, "Content-Type", sseCT)
	r.ContentLength = int64(len(body))
	return r
}

// Events of the streams below.
const (
	evChunk    = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello\"},\"finish_reason\":null}]}\n\n"
	evStop     = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
	evFiltered = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"content_filter\"}]}\n\n"
	evUsage    = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n"
	evDone     = "data: [DONE]\n\n"
	evError    = "data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"code\":null}}\n\n"

	evAnthStart = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"stop_reason\":null}}\n\n"
	evAnthDelta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n"
	evAnthStop  = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	evAnthErr   = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"

	evRespCreated = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"error\":null}}\n\n"
	evRespDelta   = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n"
	evRespDone    = "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_1\",\"object\":\"response\"," +
		"\"status\":\"completed\",\"error\":null,\"incomplete_details\":null,\"output\":[{\"type\":\"message\",\"status\":\"completed\"," +
		"\"content\":[{\"type\":\"output_text\",\"text\":\"Hi\"}]}]}}\n\n"

	evAsstCreated = "event: thread.run.created\ndata: {\"id\":\"run_1\",\"object\":\"thread.run\",\"status\":\"queued\"}\n\n"
	evAsstDelta   = "event: thread.message.delta\ndata: {\"id\":\"msg_1\",\"object\":\"thread.message.delta\",\"delta\":{\"content\":[{\"index\":0,\"type\":\"text\",\"text\":{\"value\":\"Hi\"}}]}}\n\n"
	evAsstDone    = "event: thread.run.completed\ndata: {\"id\":\"run_1\",\"object\":\"thread.run\",\"status\":\"completed\"}\n\nevent: done\ndata: [DONE]\n\n"
)

// TestClassifyWholeStream checks that a stream known to have ended is
// judged by all its events: an error event anywhere, a finish reason in
// any chunk, and the absence of any finish reason.
func TestClassifyWholeStream(t *testing.T) {
	sse := func() *http.Response { return resp(200, "Content-Type", sseCT) }
	runRuleCases(t, []ruleCase{
		{name: "good stream", resp: sse(), body: evChunk + evStop + evUsage + evDone, class: ClassSuccess},
		{name: "error event after content then DONE (new-api)", resp: sse(), body: evChunk + evChunk + evError + evUsage + evDone,
			class: ClassUpstreamTransient, code: "server_error", retry: yes, breaker: yes, msg: "The server had an error"},
		{name: "rate limit event after content then DONE", resp: sse(),
			body:  evChunk + "data: {\"error\":{\"message\":\"Rate limit reached. Please try again in 2s.\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n" + evDone,
			class: ClassRateLimited, code: "rate_limit_exceeded", wait: 2 * time.Second},
		{name: "error event after content in a whole body", resp: wholeResp(evChunk + evError), body: evChunk + evError,
			class: ClassUpstreamTransient, code: "server_error"},
		{name: "content_filter in a later chunk", resp: sse(), body: evChunk + evFiltered + evUsage + evDone,
			class: ClassContentFiltered, code: "content_filter", typ: "-", retry: no, breaker: no},
		{name: "finish_reason error in a later chunk", resp: sse(),
			body:  evChunk + "data: {\"id\":\"gen-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\",\"error\":{\"code\":502,\"message\":\"Provider disconnected\"}}]}\n\n" + evDone,
			class: ClassUpstreamTransient, retry: yes, msg: "Provider disconnected"},
		{name: "ended without a finish reason (cut, new-api DONE)", resp: sse(), body: evChunk + evChunk + evUsage + evDone,
			class: ClassUpstreamTransient, code: "-", typ: "-", retry: yes, breaker: yes, msg: "without a finish reason"},
		{name: "whole body without a finish reason", resp: wholeResp(evChunk + evChunk), body: evChunk + evChunk,
			class: ClassUpstreamTransient, code: "-"},
		{name: "usage then DONE only (empty stream)", resp: sse(), body: evUsage + evDone, class: ClassUpstreamTransient},
		{name: "keep-alives then DONE", resp: sse(), body: ": PING\n\n: PING\n\n" + evDone, class: ClassTimeout, retry: yes},
		{name: "text error event after content", resp: sse(), body: evChunk + "data: Number of choices must be greater than 0.\n\n" + evDone,
			class: ClassInvalidRequest, msg: "Number of choices"},
		{name: "raw JSON error after content", resp: sse(),
			body:  evChunk + `{"error":{"message":"upstream error: do request failed","type":"new_api_error","code":"do_request_failed"}}`,
			class: ClassUpstreamTransient, code: "do_request_failed"},
		{name: "anthropic good stream", resp: sse(),
			body:  evAnthStart + evAnthDelta + "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}}\n\n" + evAnthStop,
			class: ClassSuccess},
		{name: "anthropic overloaded after content", resp: sse(), body: evAnthStart + evAnthDelta + evAnthErr,
			class: ClassOverloaded, code: "overloaded_error", retry: yes, breaker: yes},
		{name: "anthropic refusal", resp: sse(),
			body:  evAnthStart + evAnthDelta + "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"refusal\"}}\n\n" + evAnthStop,
			class: ClassContentFiltered, code: "refusal", typ: "-"},
		{name: "anthropic message_stop without a stop reason", resp: sse(), body: evAnthStart + evAnthDelta + evAnthStop,
			class: ClassUpstreamTransient},
		{name: "responses failed after deltas", resp: sse(),
			body: evRespCreated + evRespDelta + "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"id\":\"resp_1\",\"status\":\"failed\"," +
				"\"error\":{\"code\":\"server_is_overloaded\",\"message\":\"busy\"}}}\n\n",
			class: ClassOverloaded, code: "server_is_overloaded"},
		{name: "responses error event after deltas", resp: sse(),
			body:  evRespCreated + evRespDelta + "event: error\ndata: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\",\"message\":\"Rate limit reached. Please try again in 2s.\",\"param\":null}\n\n",
			class: ClassRateLimited, code: "rate_limit_exceeded", wait: 2 * time.Second},
		{name: "responses incomplete by content filter", resp: sse(),
			body: evRespCreated + evRespDelta + "event: response.incomplete\ndata: {\"type\":\"response.incomplete\",\"response\":{\"id\":\"resp_1\",\"status\":\"incomplete\"," +
				"\"incomplete_details\":{\"reason\":\"content_filter\"}}}\n\n",
			class: ClassContentFiltered, code: "content_filter"},
		{name: "responses incomplete by max tokens", resp: sse(),
			body: evRespCreated + evRespDelta + "event: response.incomplete\ndata: {\"type\":\"response.incomplete\",\"response\":{\"id\":\"resp_1\",\"status\":\"incomplete\"," +
				"\"incomplete_details\":{\"reason\":\"max_output_tokens\"}}}\n\n",
			class: ClassSuccess},
		{name: "responses completed", resp: sse(),
			body:  evRespCreated + evRespDelta + "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"error\":null}}\n\n",
			class: ClassSuccess},
		{name: "gemini safety finish in a whole stream", resp: wholeResp(geminiChunk("Hi", "") + geminiChunk("", "SAFETY")),
			body: geminiChunk("Hi", "") + geminiChunk("", "SAFETY"), class: ClassContentFiltered, code: "SAFETY"},
		{name: "gemini good whole stream", resp: wholeResp(geminiChunk("Hi", "") + geminiChunk("!", "STOP")),
			body: geminiChunk("Hi", "") + geminiChunk("!", "STOP"), class: ClassSuccess},
		{name: "gemini whole stream without a finish reason", resp: wholeResp(geminiChunk("Hi", "") + geminiChunk("!", "")),
			body: geminiChunk("Hi", "") + geminiChunk("!", ""), class: ClassUpstreamTransient, msg: "without a finish reason"},
		{name: "responses whole body cut before response.completed", resp: wholeResp(evRespCreated + evRespDelta),
			body: evRespCreated + evRespDelta, class: ClassUpstreamTransient, msg: "without a finish reason"},
		{name: "responses completed, response.status not read", resp: sse(),
			body:  evRespCreated + evRespDelta + "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":9}\n\n",
			class: ClassSuccess},
		{name: "assistants stream ends with DONE", resp: sse(), body: evAsstCreated + evAsstDelta + evAsstDone, class: ClassSuccess},
		{name: "assistants whole body", resp: wholeResp(evAsstCreated + evAsstDelta + evAsstDone),
			body: evAsstCreated + evAsstDelta + evAsstDone, class: ClassSuccess},
		{name: "unknown JSON format without finish reasons then DONE", resp: sse(),
			body: "data: {\"text\":\"Hi\"}\n\ndata: {\"text\":\"!\"}\n\n" + evDone, class: ClassSuccess},
	})
}

func geminiChunk(text, finish string) string {
	f := ""
	if finish != "" {
		f = `,"finishReason":"` + finish + `"`
	}
	return `data: {"candidates":[{"content":{"parts":[{"text":"` + text + `"}],"role":"model"}` + f + `,"index":0}]}` + "\r\n\r\n"
}

// TestClassifyStreamPrefix checks that a prefix of a stream (what the
// transport peeks: its first event, and whatever else came in the same
// read) is judged by its first event: it is never "a stream without a
// finish reason", and an error event that may be followed by anything
// does not count yet.
func TestClassifyStreamPrefix(t *testing.T) {
	sse := func() *http.Response { return resp(200, "Content-Type", sseCT) }
	runRuleCases(t, []ruleCase{
		{name: "first chunk only", resp: sse(), body: evChunk, class: ClassSuccess},
		{name: "chunks, no end", resp: sse(), body: evChunk + evChunk + evUsage, class: ClassSuccess},
		{name: "DONE cut off", resp: sse(), body: evChunk + "data: [DO", class: ClassSuccess},
		{name: "cut-off text after content", resp: sse(), body: evChunk + "data: Number of ch", class: ClassSuccess},
		{name: "content_filter chunk not yet ended", resp: sse(), body: evChunk + evFiltered, class: ClassSuccess},
		{name: "openai error event not yet ended", resp: sse(), body: evChunk + evError, class: ClassSuccess},
		{name: "Content-Length longer than the prefix", resp: func() *http.Response { r := sse(); r.ContentLength = 1 << 20; return r }(),
			body: evChunk + evChunk, class: ClassSuccess},
		{name: "first event filtered", resp: sse(), body: evFiltered, class: ClassContentFiltered, code: "content_filter"},
		{name: "first event an error", resp: sse(), body: evError + evChunk, class: ClassUpstreamTransient, code: "server_error"},
		{name: "anthropic error after content ends the stream", resp: sse(), body: evAnthStart + evAnthDelta + evAnthErr + evAnthDelta,
			class: ClassOverloaded},
		{name: "anthropic content only", resp: sse(), body: evAnthStart + evAnthDelta, class: ClassSuccess},
		{name: "cut after event: response.completed", resp: sse(),
			body: evRespCreated + evRespDelta + "event: response.completed\n", class: ClassSuccess},
		{name: "cut inside response.completed's data", resp: sse(),
			body: evRespCreated + evRespDelta + evRespDone[:len(evRespDone)/2], class: ClassSuccess},
		{name: "cut inside response.completed before its status", resp: sse(),
			body: evRespCreated + evRespDelta + "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\"", class: ClassSuccess},
		{name: "cut after event: message_stop", resp: sse(), body: evAnthStart + evAnthDelta + "event: message_stop\n", class: ClassSuccess},
		{name: "response.completed whole but not closed", resp: sse(),
			body: evRespCreated + evRespDelta + strings.TrimSuffix(evRespDone, "\n\n"), class: ClassSuccess},
	})
}

// healthyStreams are well-formed streams of each API and gateway, as they
// come on the wire: none may be judged a failure, whole or cut anywhere.
var healthyStreams = map[string]string{
	"openai include_usage": "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":10}}\n\n" +
		evDone,
	"azure prompt_filter first": "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}}}]}\n\n" +
		"data: {\"choices\":[{\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}},\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null,\"index\":0}],\"id\":\"c\",\"object\":\"chat.completion.chunk\"}\n\n" +
		"data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{},\"finish_reason\":\"stop\",\"index\":0}],\"id\":\"c\",\"object\":\"chat.completion.chunk\"}\n\n" +
		evDone,
	"responses": "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"error\":null,\"incomplete_details\":null,\"output\":[]}}\n\n" +
		"event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"error\":null,\"incomplete_details\":null,\"output\":[]}}\n\n" +
		"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\",\"logprobs\":[]}\n\n" +
		evRespDone,
	"anthropic spaced": "event: message_start\ndata: {\"type\": \"message_start\", \"message\": {\"id\": \"msg_1\", \"type\": \"message\", \"role\": \"assistant\", \"content\": [], \"stop_reason\": null, \"usage\": {\"input_tokens\": 25, \"output_tokens\": 1}}}\n\n" +
		"event: content_block_start\ndata: {\"type\": \"content_block_start\", \"index\": 0, \"content_block\": {\"type\": \"text\", \"text\": \"\"}}\n\n" +
		"event: ping\ndata: {\"type\": \"ping\"}\n\n" +
		"event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"Hello\"}}\n\n" +
		"event: content_block_stop\ndata: {\"type\": \"content_block_stop\", \"index\": 0}\n\n" +
		"event: message_delta\ndata: {\"type\": \"message_delta\", \"delta\": {\"stop_reason\": \"tool_use\", \"stop_sequence\":null}, \"usage\": {\"output_tokens\": 15}}\n\n" +
		"event: message_stop\ndata: {\"type\": \"message_stop\"}\n\n",
	"gemini crlf":       geminiChunk("Hi", "") + geminiChunk(" there", "STOP"),
	"assistants":        evAsstCreated + evAsstDelta + evAsstDone,
	"openrouter":        ": OPENROUTER PROCESSING\n\n" + evChunk + evStop + evDone,
	"unknown with DONE": "data: {\"text\":\"Hi\"}\n\n" + evDone,
}

// noFinishMsg is the message of a stream that ended without a finish
// reason.
const noFinishMsg = "stream ended without a finish reason"

// TestClassifyHealthyStreams checks that well-formed streams of each API
// (chat completions, Azure, Responses, Anthropic, Gemini, Assistants) are a
// success whole, with or without a Content-Length, and that no prefix of
// one, cut at any byte, is "a stream without a finish reason": a prefix
// cut inside Responses' response.completed has not read its finish yet,
// and an Assistants stream has no finish reason to miss.
func TestClassifyHealthyStreams(t *testing.T) {
	for name, body := range healthyStreams {
		t.Run(name, func(t *testing.T) {
			for _, r := range []*http.Response{resp(200, "Content-Type", sseCT), wholeResp(body)} {
				if c := Classify(r, []byte(body)); c.Class != ClassSuccess {
					t.Errorf("Content-Length %d: %v (%q, %q)", r.ContentLength, c.Class, c.Code, c.Message)
				}
			}
			r := resp(200, "Content-Type", sseCT)
			for i := 1; i < len(body); i++ {
				// A prefix before the first event has no event yet: only
				// the verdict on its end is checked.
				if c := Classify(r, []byte(body[:i])); c.Message == noFinishMsg {
					t.Fatalf("prefix %q: %v (%q)", body[:i], c.Class, c.Message)
				}
			}
		})
	}
}

// TestClassifyResponsesOver64K checks that a healthy Responses stream a
// little over 64 KiB, whose response.completed straddles the 64 KiB cut, is
// a success: the cut-off event's name alone does not end the stream.
func TestClassifyResponsesOver64K(t *testing.T) {
	var b strings.Builder
	b.WriteString(evRespCreated)
	for b.Len() < MaxPeek-300 {
		b.WriteString(evRespDelta)
	}
	b.WriteString("event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"instructions\":\"" +
		strings.Repeat("i", 2000) + "\",\"status\":\"completed\",\"error\":null}}\n\n")
	body := b.String()
	for _, r := range []*http.Response{resp(200, "Content-Type", sseCT), wholeResp(body)} {
		if c := Classify(r, []byte(body)); c.Class != ClassSuccess {
			t.Errorf("healthy %d-byte Responses stream (Content-Length %d): %v (%q)", len(body), r.ContentLength, c.Class, c.Message)
		}
	}
}

// TestClassifyJSONFinishReasons checks the finish and stop reasons of
// whole (non-stream) 2xx bodies.
func TestClassifyJSONFinishReasons(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{name: "chat completion content_filter", resp: resp(200, "Content-Type", jsonCT),
			body:  `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":"content_filter"}]}`,
			class: ClassContentFiltered, code: "content_filter", typ: "-"},
		{name: "second choice content_filter", resp: resp(200, "Content-Type", jsonCT),
			body:  `{"choices":[{"index":0,"finish_reason":"stop"},{"index":1,"finish_reason":"content_filter"}]}`,
			class: ClassContentFiltered, code: "content_filter"},
		{name: "anthropic message refusal", resp: resp(200, "Content-Type", jsonCT),
			body:  `{"id":"msg_1","type":"message","role":"assistant","content":[],"stop_reason":"refusal","stop_sequence":null}`,
			class: ClassContentFiltered, code: "refusal", typ: "-"},
		{name: "gemini blockReason", resp: resp(200, "Content-Type", jsonCT),
			body: `{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"}}`, class: ClassContentFiltered, code: "PROHIBITED_CONTENT"},
		{name: "gemini candidate SAFETY", resp: resp(200, "Content-Type", jsonCT),
			body: `{"candidates":[{"finishReason":"SAFETY","index":0}]}`, class: ClassContentFiltered, code: "SAFETY"},
		{name: "gemini candidate RECITATION", resp: resp(200, "Content-Type", jsonCT),
			body: `{"candidates":[{"finishReason":"RECITATION","content":{"parts":[]}}]}`, class: ClassContentFiltered, code: "RECITATION"},
		{name: "deepseek insufficient_system_resource", resp: resp(200, "Content-Type", jsonCT),
			body:  `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"content":""},"finish_reason":"insufficient_system_resource"}]}`,
			class: ClassUpstreamTransient, retry: yes, breaker: yes},
		{name: "deepseek insufficient_system_resource, streamed", resp: resp(200, "Content-Type", "text/event-stream"),
			body:  "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}\n\ndata: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"insufficient_system_resource\"}]}\n\ndata: [DONE]\n\n",
			class: ClassUpstreamTransient, retry: yes, breaker: yes},
		{name: "anthropic message end_turn", resp: resp(200, "Content-Type", jsonCT),
			body: `{"id":"msg_1","type":"message","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn"}`, class: ClassSuccess},
		{name: "embeddings without finish reason", resp: resp(200, "Content-Type", jsonCT),
			body: `{"object":"list","data":[{"object":"embedding","embedding":[0.1],"index":0}]}`, class: ClassSuccess},
	})
}

// TestClassifyStreamBounded checks that a stream is read no further than
// 64 KiB: an error event past it does not count, and a long stream of
// chunks costs a bounded amount of memory.
func TestClassifyStreamBounded(t *testing.T) {
	var b strings.Builder
	for b.Len() < MaxPeek {
		b.WriteString(evChunk)
	}
	long := b.String()
	if c := Classify(resp(200, "Content-Type", sseCT), []byte(long+evError+evDone)); c.Class != ClassSuccess {
		t.Errorf("an error past 64 KiB counted: %v", c.Class)
	}
	r := resp(200, "Content-Type", sseCT)
	body := []byte(long[:MaxPeek-len(evDone)] + evError + evDone)
	allocs := testing.AllocsPerRun(20, func() { Classify(r, body) })
	if allocs > 40 {
		t.Errorf("%v allocations per call on a 64 KiB stream, want a few", allocs)
	}
}
