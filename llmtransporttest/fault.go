package llmtransporttest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Fault is one scripted answer of a [Server]: a normal completion, an error
// response in the shape a real gateway or provider sends, or a broken
// connection. Make one with the constructors of this package ([OK],
// [NewAPIError], [RateLimited], [ResetBeforeHeaders]…). The zero Fault
// answers like [OK].
//
// Faults are values; one Fault can answer any number of requests, from any
// number of goroutines.
type Fault struct {
	name  string
	delay time.Duration
	serve func(w http.ResponseWriter, x *exchange)
}

// Name returns the fault's name, under which [Server.FaultCount] and
// [Stats.ByFault] count it: "ok", "new_api:get_channel_failed",
// "rate_limited:retry-after-ms", "reset_before_headers"…
func (f Fault) Name() string {
	if f.name == "" {
		return "ok"
	}
	return f.name
}

// String returns the fault's name.
func (f Fault) String() string { return f.Name() }

// exchange is one request being answered.
type exchange struct {
	s         *Server
	r         *http.Request
	api       apiKind
	model     string
	stream    bool
	requestID string
}

// OK answers with a normal chat completion: a JSON chat.completion, or, when
// the request asked for "stream":true, a text/event-stream of
// chat.completion.chunk events (one per word of the reply) ending with
// "data: [DONE]". The reply is set by [WithReply].
func OK() Fault { return Fault{name: "ok", serve: serveOK} }

// OpenAIError answers with status and OpenAI's error envelope
// {"error":{"message","type","param","code"}}. An empty code is sent as null.
func OpenAIError(status int, typ, code, message string) Fault {
	name := "openai_error:" + strconv.Itoa(status)
	if code != "" {
		name = "openai_error:" + code
	}
	return Fault{name: name, serve: func(w http.ResponseWriter, x *exchange) {
		writeJSON(w, status, openAIEnvelope(message, typ, code))
	}}
}

// NewAPIError answers as the new-api gateway (QuantumNous/new-api, and
// one-api before it) does: status, the header X-Oneapi-Request-Id, and
// {"error":{"message":"<message> (request id: <id>)","type":"new_api_error",
// "param":"","code":"<code>"}}. Typical codes: "do_request_failed" and
// "get_channel_failed" (500), "model_not_found" (503),
// "insufficient_user_quota" (403), "bad_request_body" (500).
func NewAPIError(status int, code, message string) Fault {
	return Fault{name: "new_api:" + code, serve: func(w http.ResponseWriter, x *exchange) {
		w.Header().Set("X-Oneapi-Request-Id", x.requestID)
		writeJSON(w, status, map[string]any{"error": map[string]any{
			"message": message + " (request id: " + x.requestID + ")",
			"type":    "new_api_error",
			"param":   "",
			"code":    code,
		}})
	}}
}

// FlatError answers with status and a flat body without an "error" key,
// {"code":"<code>","message":"<message>","data":null}, as new-api's task
// endpoints and several Chinese gateways do. openai-go cannot read it into
// its error type; go-openai returns it as a *RequestError.
func FlatError(status int, code, message string) Fault {
	return Fault{name: "flat:" + code, serve: func(w http.ResponseWriter, x *exchange) {
		writeJSON(w, status, map[string]any{"code": code, "message": message, "data": nil})
	}}
}

// Hint is the way a 429 response says how long to wait.
type Hint uint8

// The wait hints of [RateLimited].
const (
	NoHint            Hint = iota // no hint at all
	RetryAfterSeconds             // Retry-After: <whole seconds, rounded up>
	RetryAfterDate                // Retry-After: <HTTP-date> (whole seconds, rounded up)
	RetryAfterMs                  // retry-after-ms: <milliseconds> (OpenAI, Azure)
	ResetTokens                   // x-ratelimit-reset-tokens: 1.5s (OpenAI's duration format)
	BodyRetryDelay                // Gemini's google.rpc.RetryInfo "retryDelay":"1.5s" in the body
	MessageText                   // "Please try again in 1.5s." in the error message (OpenAI)
)

var hintNames = [...]string{
	NoHint:            "none",
	RetryAfterSeconds: "retry-after",
	RetryAfterDate:    "retry-after-date",
	RetryAfterMs:      "retry-after-ms",
	ResetTokens:       "x-ratelimit-reset-tokens",
	BodyRetryDelay:    "body-retry-delay",
	MessageText:       "message",
}

// String returns the hint's name as used in fault names, such as
// "retry-after-ms".
func (h Hint) String() string {
	if int(h) < len(hintNames) {
		return hintNames[h]
	}
	return "hint(" + strconv.Itoa(int(h)) + ")"
}

// RateLimited answers 429 asking the client to wait for wait, in the way h
// names. The body is OpenAI's rate_limit_exceeded envelope, except for
// [BodyRetryDelay], which sends Gemini's RESOURCE_EXHAUSTED body with a
// RetryInfo detail. Its name is "rate_limited:" followed by h's name.
func RateLimited(h Hint, wait time.Duration) Fault {
	return Fault{name: "rate_limited:" + h.String(), serve: func(w http.ResponseWriter, x *exchange) {
		msg := "Rate limit reached for " + x.model + " in organization org-fake on requests per min (RPM): Limit 60, Used 60, Requested 1."
		switch h {
		case RetryAfterSeconds:
			w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(wait.Seconds())), 10))
		case RetryAfterDate:
			at := time.Now().Add(wait)
			if at.Truncate(time.Second) != at {
				at = at.Truncate(time.Second).Add(time.Second)
			}
			w.Header().Set("Retry-After", at.UTC().Format(http.TimeFormat))
		case RetryAfterMs:
			w.Header().Set("Retry-After-Ms", strconv.FormatInt(wait.Milliseconds(), 10))
		case ResetTokens:
			w.Header().Set("X-Ratelimit-Limit-Tokens", "30000")
			w.Header().Set("X-Ratelimit-Remaining-Tokens", "0")
			w.Header().Set("X-Ratelimit-Reset-Tokens", wait.String())
		case BodyRetryDelay:
			writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": map[string]any{
				"code":    429,
				"message": "You exceeded your current quota, please check your plan and billing details.",
				"status":  "RESOURCE_EXHAUSTED",
				"details": []any{map[string]any{
					"@type":      "type.googleapis.com/google.rpc.RetryInfo",
					"retryDelay": strconv.FormatFloat(wait.Seconds(), 'f', -1, 64) + "s",
				}},
			}})
			return
		case MessageText:
			msg += " Please try again in " + wait.String() + ". Visit https://platform.openai.com/account/rate-limits to learn more."
		}
		writeJSON(w, http.StatusTooManyRequests, openAIEnvelope(msg, "requests", "rate_limit_exceeded"))
	}}
}

// InsufficientQuota answers as OpenAI does when the account has no credit
// left: 429 with type and code "insufficient_quota". It is a 429 that must
// not be retried.
func InsufficientQuota() Fault {
	return Fault{name: "insufficient_quota", serve: func(w http.ResponseWriter, x *exchange) {
		writeJSON(w, http.StatusTooManyRequests, openAIEnvelope(
			"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
			"insufficient_quota", "insufficient_quota"))
	}}
}

// Overloaded answers as Anthropic does when it is out of capacity: 529 with
// {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}
// and the request ID also in the header request-id.
func Overloaded() Fault {
	return Fault{name: "overloaded", serve: func(w http.ResponseWriter, x *exchange) {
		w.Header().Set("Request-Id", x.requestID)
		writeJSON(w, 529, map[string]any{
			"type":  "error",
			"error": map[string]any{"type": "overloaded_error", "message": "Overloaded"},
		})
	}}
}

const nginx502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"

// BadGatewayHTML answers as an nginx in front of a dead upstream does: 502
// with an HTML page.
func BadGatewayHTML() Fault {
	return Fault{name: "bad_gateway_html", serve: func(w http.ResponseWriter, x *exchange) {
		w.Header().Set("Server", "nginx")
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte(nginx502))
	}}
}

// ResetBeforeHeaders reads the request and then resets the connection (TCP
// RST) without answering: the client gets a transport error such as
// "connection reset by peer".
func ResetBeforeHeaders() Fault {
	return Fault{name: "reset_before_headers", serve: func(w http.ResponseWriter, x *exchange) {
		hijackClose(w, true)
	}}
}

// ResetAfterHeaders sends the headers of a successful answer (200, JSON or
// event stream as the request asked) and then closes the connection before
// any body byte: the client reads an unexpected EOF.
func ResetAfterHeaders() Fault {
	return Fault{name: "reset_after_headers", serve: func(w http.ResponseWriter, x *exchange) {
		if x.stream {
			setSSEHeaders(w)
		} else {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "1024")
		}
		w.WriteHeader(http.StatusOK)
		hijackClose(w, false)
	}}
}

// TruncatedBody sends a successful answer and closes the connection halfway
// through its body: a JSON completion cut in the middle (Content-Length
// promises more), or an event stream cut after its first chunk event,
// without [DONE].
func TruncatedBody() Fault {
	return Fault{name: "truncated_body", serve: func(w http.ResponseWriter, x *exchange) {
		if x.stream {
			setSSEHeaders(w)
			w.WriteHeader(http.StatusOK)
			writeEvents(w, x, x.s.chunks(x)[:x.lead()+1])
			hijackClose(w, false)
			return
		}
		b := x.s.completion(x)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		w.Write(b[:len(b)/2])
		hijackClose(w, false)
	}}
}

// MidStreamError answers a streaming request with a 200 event stream whose
// first n chunk events are normal, followed by an error event
// data: {"error":{…}} and the end of the stream, as new-api and vLLM do when
// the upstream fails mid-generation. A request that did not ask for a stream
// gets [TruncatedBody] instead.
func MidStreamError(n int) Fault {
	return midStream("mid_stream_error", n, func(w http.ResponseWriter, _ *exchange, _ int) {
		writeEvent(w, mustJSON(openAIEnvelope("upstream stream interrupted: unexpected EOF", "upstream_error", "stream_interrupted")))
	})
}

// MidStreamErrorThenDone is [MidStreamError] as new-api sends it: after the
// error event it forwarded from the upstream, the gateway appends its own
// usage chunk and data: [DONE], so that the stream ends as a healthy one
// does. A request that did not ask for a stream gets [TruncatedBody].
func MidStreamErrorThenDone(n int) Fault {
	return midStream("mid_stream_error_then_done", n, func(w http.ResponseWriter, x *exchange, n int) {
		writeEvent(w, mustJSON(openAIEnvelope("upstream error: unexpected EOF", "upstream_error", "do_request_failed")))
		writeEvent(w, mustJSON(map[string]any{
			"id": "chatcmpl-" + x.requestID, "object": "chat.completion.chunk", "model": x.model,
			"choices": []any{}, "usage": map[string]any{"prompt_tokens": 9, "completion_tokens": n, "total_tokens": 9 + n},
		}))
		writeEvent(w, []byte("[DONE]"))
	})
}

// MidStreamOverloaded answers a streaming request with a 200 event stream
// whose first n chunk events are normal, followed by an error event in
// Anthropic's shape, event: error with
// data: {"type":"error","error":{"type":"overloaded_error",…}}, and the end
// of the stream, as Anthropic's API does when it runs out of capacity
// mid-answer. On /v1/messages the stream is Anthropic's own: message_start,
// ping and content_block_start, then n content_block_delta events, then
// the error (n = 0: before any output). A request that did not ask for a
// stream gets [TruncatedBody].
func MidStreamOverloaded(n int) Fault {
	return midStream("mid_stream_overloaded", n, func(w http.ResponseWriter, _ *exchange, _ int) {
		io.WriteString(w, "event: error\n")
		writeEvent(w, []byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
	})
}

// midStream is the fault named name that answers a streaming request with
// a 200 event stream of its first n chunk events (at most all but the
// last; for Anthropic, its lifecycle events and then n deltas, at most
// all), then what end writes, given the number of chunks sent; a request
// that did not ask for a stream gets [TruncatedBody].
func midStream(name string, n int, end func(w http.ResponseWriter, x *exchange, sent int)) Fault {
	return Fault{name: name, serve: func(w http.ResponseWriter, x *exchange) {
		if !x.stream {
			TruncatedBody().serve(w, x)
			return
		}
		setSSEHeaders(w)
		w.WriteHeader(http.StatusOK)
		chunks := x.s.chunks(x)
		sent := min(x.lead()+max(n, 0), len(chunks)-x.tail())
		writeEvents(w, x, chunks[:sent])
		end(w, x, sent-x.lead())
	}}
}

// ErrorFirstStream answers 200 but with an error in place of the answer: for
// a streaming request, an event stream whose first event is
// data: {"error":{…}} followed by data: [DONE]; otherwise a JSON body
// {"error":{…}} with status 200, which openai-go and go-openai both take for
// an empty success. Gateways do this when the upstream fails after the
// gateway committed to a 200.
func ErrorFirstStream() Fault {
	return Fault{name: "error_first_stream", serve: func(w http.ResponseWriter, x *exchange) {
		env := openAIEnvelope("upstream error: do request failed", "upstream_error", "do_request_failed")
		if !x.stream {
			writeJSON(w, http.StatusOK, env)
			return
		}
		setSSEHeaders(w)
		w.WriteHeader(http.StatusOK)
		writeEvent(w, mustJSON(env))
		writeEvent(w, []byte("[DONE]"))
	}}
}

// GarbageHeaders answers with wait hints no client can use: Retry-After
// twice, as "soon" and as 99999999999 seconds; retry-after-ms: NaN;
// x-ratelimit-reset-tokens: -1s; x-ratelimit-reset-requests: 1e309. When
// padding is above 0 it also sends a header X-Padding of padding bytes (a
// value above a client's header limit makes the client fail the request). A
// status of 400 or more answers with OpenAI's server_error envelope; a lower
// status answers like [OK], a normal completion under the same headers. Its
// name is "garbage_headers:<status>".
func GarbageHeaders(status int, padding int) Fault {
	return Fault{name: "garbage_headers:" + strconv.Itoa(status), serve: func(w http.ResponseWriter, x *exchange) {
		h := w.Header()
		h.Set("Retry-After", "soon")
		h.Add("Retry-After", "99999999999")
		h.Set("Retry-After-Ms", "NaN")
		h.Set("X-Ratelimit-Reset-Tokens", "-1s")
		h.Set("X-Ratelimit-Reset-Requests", "1e309")
		if padding > 0 {
			h.Set("X-Padding", strings.Repeat("x", padding))
		}
		if status < 400 {
			serveOK(w, x)
			return
		}
		writeJSON(w, status, openAIEnvelope("The server had an error while processing your request.", "server_error", ""))
	}}
}

// Response answers with status, the headers of header (which may be nil)
// and body, verbatim. Use it to replay a body captured from a real gateway.
// Its name is "status:<status>".
func Response(status int, header http.Header, body string) Fault {
	return Fault{name: "status:" + strconv.Itoa(status), serve: func(w http.ResponseWriter, x *exchange) {
		for k, vs := range header {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	}}
}

// Handler answers with h, for anything the other constructors do not cover.
// The x-request-id header is already set when h runs. name is the fault's
// name for the counters.
func Handler(name string, h http.HandlerFunc) Fault {
	return Fault{name: name, serve: func(w http.ResponseWriter, x *exchange) { h(w, x.r) }}
}

// Delay returns f answering only after d, as a slow upstream does (slow
// headers). The wait ends early when the client goes away or the server is
// closed. Its name is "slow:" followed by f's name.
func Delay(d time.Duration, f Fault) Fault {
	f.delay += d
	f.name = "slow:" + f.Name()
	return f
}

// Mix returns a typical mix of transient faults, each worth retrying: new-api
// 500 do_request_failed and 503 get_channel_failed, Anthropic 529, nginx
// 502, 429 with a short retry-after-ms hint, 429 with a short
// x-ratelimit-reset-tokens hint, a connection reset before the headers, and
// an error-first stream.
func Mix() []Fault {
	return []Fault{
		NewAPIError(500, "do_request_failed", "upstream error: do request failed"),
		NewAPIError(503, "get_channel_failed", "no available channel for this model"),
		Overloaded(),
		BadGatewayHTML(),
		RateLimited(RetryAfterMs, 50*time.Millisecond),
		RateLimited(ResetTokens, 80*time.Millisecond),
		ResetBeforeHeaders(),
		ErrorFirstStream(),
	}
}

// Random returns a script for [WithModel] that answers each request with a
// fault with probability rate (0 to 1), picked uniformly from faults (from
// [Mix] when faults is empty), and with [OK] otherwise. The same seed gives
// the same sequence. The script is not safe for concurrent use; a Server
// calls it under its lock.
func Random(rate float64, seed uint64, faults ...Fault) func(n int) Fault {
	if len(faults) == 0 {
		faults = Mix()
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(int) Fault {
		if rng.Float64() < rate {
			return faults[rng.IntN(len(faults))]
		}
		return OK()
	}
}

// --- writing helpers ---

func openAIEnvelope(message, typ, code string) map[string]any {
	var c any
	if code != "" {
		c = code
	}
	return map[string]any{"error": map[string]any{"message": message, "type": typ, "param": nil, "code": c}}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("llmtransporttest: %v", err))
	}
	return b
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b := mustJSON(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func setSSEHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
}

// writeEvent writes one SSE event "data: <data>\n\n" and flushes it.
func writeEvent(w http.ResponseWriter, data []byte) {
	var b strings.Builder
	b.Grow(len(data) + 8)
	b.WriteString("data: ")
	b.Write(data)
	b.WriteString("\n\n")
	w.Write([]byte(b.String()))
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

func writeEvents(w http.ResponseWriter, x *exchange, events []event) {
	for _, e := range events {
		if e.name != "" {
			io.WriteString(w, "event: "+e.name+"\n")
		}
		writeEvent(w, e.data)
		if d := x.s.cfg.chunkDelay; d > 0 && !x.s.wait(x.r, d) {
			return
		}
	}
}

// hijackClose closes the connection under the handler: with a TCP RST and
// nothing sent when reset is true, else with a FIN after flushing what was
// written.
func hijackClose(w http.ResponseWriter, reset bool) {
	if f, ok := w.(http.Flusher); ok && !reset {
		f.Flush()
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	buf.Flush()
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		tc.SetLinger(0)
	}
	conn.Close()
}
