package llmtransporttest

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Anthropic Messages API and Gemini's generateContent, beside the chat
// completions of server.go.
//
// POST /v1/messages answers as Anthropic's API does: a JSON message, or
// with "stream":true an event stream of named events (message_start, ping,
// content_block_start, one content_block_delta per word of the reply,
// content_block_stop, message_delta with its stop_reason, message_stop).
// POST /v1beta/models/{model}:generateContent (or /v1/models/…) answers
// with a GenerateContentResponse, and :streamGenerateContent with one
// response per word, as an event stream with ?alt=sse and as a JSON array
// without it. The model and the scripts are the same as for chat
// completions: a script's faults answer every API's requests of its model.

// apiKind is the API a request was made to.
type apiKind uint8

const (
	apiChat      apiKind = iota // POST /v1/chat/completions
	apiAnthropic                // POST /v1/messages
	apiGemini                   // POST /v1beta/models/{model}:generateContent
)

// event is one server-sent event: data, under name when name is not empty.
type event struct {
	name string
	data []byte
}

// lead is how many events of x's stream come before its first output (the
// Anthropic stream's message_start, ping and content_block_start); tail is
// how many end it once the output is over (the chat completion's finish
// chunk; Anthropic's content_block_stop, message_delta and message_stop;
// Gemini's last response, with its finishReason). A fault that breaks a
// stream "after n chunks" sends the lead, then n events of output.
func (x *exchange) lead() int {
	if x.api == apiAnthropic {
		return 3
	}
	return 0
}

func (x *exchange) tail() int {
	if x.api == apiAnthropic {
		return 3
	}
	return 1
}

// words splits the reply into the pieces a stream sends, one per event.
func (s *Server) words() []string {
	var out []string
	for i, w := range strings.SplitAfter(s.cfg.reply, " ") {
		if w == "" && i > 0 {
			continue
		}
		out = append(out, w)
	}
	return out
}

// geminiPath reports whether r is a Gemini generateContent call, and its
// model and whether it streams.
func geminiPath(r *http.Request) (model string, stream, ok bool) {
	if r.Method != http.MethodPost {
		return "", false, false
	}
	rest, found := strings.CutPrefix(r.URL.Path, "/v1beta/models/")
	if !found {
		if rest, found = strings.CutPrefix(r.URL.Path, "/v1/models/"); !found {
			return "", false, false
		}
	}
	model, verb, found := strings.Cut(rest, ":")
	switch {
	case !found || model == "" || strings.Contains(model, "/"):
		return "", false, false
	case verb == "generateContent":
		return model, false, true
	case verb == "streamGenerateContent":
		return model, true, true
	}
	return "", false, false
}

// hasKey reports whether r carries key the way clients of api send it.
func hasKey(r *http.Request, api apiKind, key string) bool {
	if r.Header.Get("Authorization") == "Bearer "+key {
		return true
	}
	switch api {
	case apiAnthropic:
		return r.Header.Get("X-Api-Key") == key
	case apiGemini:
		return r.Header.Get("X-Goog-Api-Key") == key || r.URL.Query().Get("key") == key
	}
	return false
}

// badJSON is the answer to a body that is not JSON.
func badJSON(api apiKind) Fault {
	switch api {
	case apiAnthropic:
		return AnthropicError(http.StatusBadRequest, "invalid_request_error", "There was an error parsing the body of your request.")
	case apiGemini:
		return GeminiError(http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received.")
	}
	return OpenAIError(http.StatusBadRequest, "invalid_request_error", "", "We could not parse the JSON body of your request.")
}

// badKey is the answer to a request without the key of WithAPIKey.
func badKey(api apiKind) Fault {
	switch api {
	case apiAnthropic:
		return AnthropicError(http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
	case apiGemini:
		return GeminiBadRequest("API_KEY_INVALID", "API key not valid. Please pass a valid API key.")
	}
	return OpenAIError(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
}

// --- Anthropic ---

// anthropicMessage returns the JSON message of x.
func (s *Server) anthropicMessage(x *exchange) []byte {
	return mustJSON(map[string]any{
		"id":            "msg_" + x.requestID,
		"type":          "message",
		"role":          "assistant",
		"model":         x.model,
		"content":       []any{map[string]any{"type": "text", "text": s.cfg.reply}},
		"stop_reason":   "end_turn",
		"stop_sequence": nil,
		"usage":         map[string]any{"input_tokens": 8, "output_tokens": len(s.words())},
	})
}

// anthropicEvents returns the events of x's Anthropic stream.
func (s *Server) anthropicEvents(x *exchange) []event {
	ev := func(name string, v map[string]any) event {
		v["type"] = name
		return event{name: name, data: mustJSON(v)}
	}
	words := s.words()
	out := []event{
		ev("message_start", map[string]any{"message": map[string]any{
			"id": "msg_" + x.requestID, "type": "message", "role": "assistant", "model": x.model,
			"content": []any{}, "stop_reason": nil, "stop_sequence": nil,
			"usage": map[string]any{"input_tokens": 8, "output_tokens": 1},
		}}),
		ev("ping", map[string]any{}),
		ev("content_block_start", map[string]any{"index": 0, "content_block": map[string]any{"type": "text", "text": ""}}),
	}
	for _, w := range words {
		out = append(out, ev("content_block_delta", map[string]any{"index": 0, "delta": map[string]any{"type": "text_delta", "text": w}}))
	}
	return append(out,
		ev("content_block_stop", map[string]any{"index": 0}),
		ev("message_delta", map[string]any{
			"delta": map[string]any{"stop_reason": "end_turn", "stop_sequence": nil},
			"usage": map[string]any{"output_tokens": len(words)},
		}),
		ev("message_stop", map[string]any{}),
	)
}

// AnthropicError answers as Anthropic's API does: status, the header
// request-id, and {"type":"error","error":{"type":"<typ>","message":…},
// "request_id":"req_…"}. Typical types: invalid_request_error (400),
// authentication_error (401), billing_error (402), permission_error (403),
// not_found_error (404), rate_limit_error (429), api_error (500),
// overloaded_error (529, also [Overloaded]). Its name is "anthropic:<typ>".
func AnthropicError(status int, typ, message string) Fault {
	return Fault{name: "anthropic:" + typ, serve: func(w http.ResponseWriter, x *exchange) {
		writeAnthropicError(w, x, status, typ, message)
	}}
}

func writeAnthropicError(w http.ResponseWriter, x *exchange, status int, typ, message string) {
	w.Header().Set("Request-Id", x.requestID)
	writeJSON(w, status, map[string]any{
		"type":       "error",
		"error":      map[string]any{"type": typ, "message": message},
		"request_id": x.requestID,
	})
}

// AnthropicRateLimited answers 429 rate_limit_error as Anthropic's API
// does when the organization's request limit is used up: retry-after in
// whole seconds (wait rounded up), and the anthropic-ratelimit-* headers:
// -requests-limit 50, -requests-remaining 0 and -requests-reset at now +
// wait (RFC 3339, rounded up to the second), with the -tokens,
// -input-tokens and -output-tokens ones not exhausted. Its name is
// "anthropic:rate_limited".
func AnthropicRateLimited(wait time.Duration) Fault {
	return Fault{name: "anthropic:rate_limited", serve: func(w http.ResponseWriter, x *exchange) {
		now := time.Now()
		at := now.Add(wait)
		if at.Truncate(time.Second) != at {
			at = at.Truncate(time.Second).Add(time.Second)
		}
		h := w.Header()
		h.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(wait.Seconds())), 10))
		h.Set("Anthropic-Ratelimit-Requests-Limit", "50")
		h.Set("Anthropic-Ratelimit-Requests-Remaining", "0")
		h.Set("Anthropic-Ratelimit-Requests-Reset", at.UTC().Format(time.RFC3339))
		soon := now.Add(time.Second).Truncate(time.Second).UTC().Format(time.RFC3339)
		for _, dim := range []struct{ name, limit, remaining string }{
			{"Tokens", "80000", "52000"}, {"Input-Tokens", "40000", "31000"}, {"Output-Tokens", "40000", "21000"},
		} {
			h.Set("Anthropic-Ratelimit-"+dim.name+"-Limit", dim.limit)
			h.Set("Anthropic-Ratelimit-"+dim.name+"-Remaining", dim.remaining)
			h.Set("Anthropic-Ratelimit-"+dim.name+"-Reset", soon)
		}
		writeAnthropicError(w, x, http.StatusTooManyRequests, "rate_limit_error",
			"This request would exceed the rate limit for your organization of 50 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.")
	}}
}

// --- Gemini ---

// geminiResponse returns x's GenerateContentResponse.
func (s *Server) geminiResponse(x *exchange) []byte {
	return geminiChunk(x, s.cfg.reply, true, len(s.words()))
}

// geminiChunks returns the events of x's Gemini stream: one response per
// word, the last with its finishReason.
func (s *Server) geminiChunks(x *exchange) []event {
	words := s.words()
	out := make([]event, len(words))
	for i, w := range words {
		out[i] = event{data: geminiChunk(x, w, i == len(words)-1, i+1)}
	}
	return out
}

func geminiChunk(x *exchange, text string, last bool, tokens int) []byte {
	cand := map[string]any{"content": map[string]any{"parts": []any{map[string]any{"text": text}}, "role": "model"}, "index": 0}
	if last {
		cand["finishReason"] = "STOP"
	}
	return mustJSON(map[string]any{
		"candidates":    []any{cand},
		"usageMetadata": map[string]any{"promptTokenCount": 8, "candidatesTokenCount": tokens, "totalTokenCount": 8 + tokens},
		"modelVersion":  x.model,
		"responseId":    x.requestID,
	})
}

// geminiArray is a :streamGenerateContent answer without alt=sse: the
// responses as one JSON array.
func geminiArray(events []event) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, e := range events {
		if i > 0 {
			b.WriteString(",\r\n")
		}
		b.Write(e.data)
	}
	b.WriteString("]")
	return b.Bytes()
}

// GeminiError answers as Gemini's API does: status and a google.rpc.Status
// body, {"error":{"code":<status>,"message":…,"status":"<grpcStatus>",
// "details":[…]}}, two-space indented with a trailing newline; details
// (each a map with its "@type") are left out when there are none. Gemini
// sends no request ID. Its name is "gemini:<grpcStatus>".
func GeminiError(status int, grpcStatus, message string, details ...map[string]any) Fault {
	return Fault{name: "gemini:" + grpcStatus, serve: func(w http.ResponseWriter, x *exchange) {
		e := map[string]any{"code": status, "message": message, "status": grpcStatus}
		if len(details) > 0 {
			e["details"] = details
		}
		b, err := json.MarshalIndent(map[string]any{"error": e}, "", "  ")
		if err != nil {
			panic("llmtransporttest: " + err.Error())
		}
		b = append(b, '\n')
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(status)
		w.Write(b)
	}}
}

// GeminiRateLimited answers 429 RESOURCE_EXHAUSTED as Gemini does when a
// per-minute quota is used up: a QuotaFailure violation of a PerMinute
// quota, a Help link, and a RetryInfo whose retryDelay is wait ("1.5s";
// fractional seconds as protobuf durations allow), the only wait hint
// Gemini gives (no Retry-After header). Its name is
// "gemini:RESOURCE_EXHAUSTED".
func GeminiRateLimited(wait time.Duration) Fault {
	delay := strconv.FormatFloat(wait.Seconds(), 'f', -1, 64) + "s"
	return GeminiError(http.StatusTooManyRequests, "RESOURCE_EXHAUSTED",
		"You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. Please retry in "+delay+".",
		map[string]any{
			"@type": "type.googleapis.com/google.rpc.QuotaFailure",
			"violations": []any{map[string]any{
				"quotaMetric":     "generativelanguage.googleapis.com/generate_content_free_tier_requests",
				"quotaId":         "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
				"quotaDimensions": map[string]any{"location": "global", "model": "gemini-2.5-flash"},
				"quotaValue":      "10",
			}},
		},
		map[string]any{
			"@type": "type.googleapis.com/google.rpc.Help",
			"links": []any{map[string]any{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}},
		},
		map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
	)
}

// GeminiUnavailable answers 503 UNAVAILABLE, "The model is overloaded.
// Please try again later.", as Gemini does when it is out of capacity. Its
// name is "gemini:UNAVAILABLE".
func GeminiUnavailable() Fault {
	return GeminiError(http.StatusServiceUnavailable, "UNAVAILABLE", "The model is overloaded. Please try again later.")
}

// GeminiBadRequest answers 400 INVALID_ARGUMENT with message and an
// ErrorInfo detail of reason, such as "API_KEY_INVALID" (what Gemini sends
// for a bad key: 400, not 401). Its name is "gemini:INVALID_ARGUMENT".
func GeminiBadRequest(reason, message string) Fault {
	return GeminiError(http.StatusBadRequest, "INVALID_ARGUMENT", message, map[string]any{
		"@type":    "type.googleapis.com/google.rpc.ErrorInfo",
		"reason":   reason,
		"domain":   "googleapis.com",
		"metadata": map[string]any{"service": "generativelanguage.googleapis.com"},
	})
}
