package classify

import (
	"net/http"
	"strings"
)

// requestIDHeaders are the response headers that carry a request ID, most
// authoritative first: Anthropic, OpenAI, Azure, new-api/one-api, LiteLLM,
// OpenRouter, Cloudflare.
var requestIDHeaders = [...]string{
	"Request-Id",
	"X-Request-Id",
	"Apim-Request-Id",
	"X-Oneapi-Request-Id",
	"X-Litellm-Call-Id",
	"X-Generation-Id",
	"Cf-Ray",
}

// RequestIDHeaders returns the response headers that carry a request ID,
// in canonical form, most authoritative first: Anthropic's Request-Id,
// OpenAI's X-Request-Id, Azure, new-api and one-api, LiteLLM, OpenRouter,
// Cloudflare's Cf-Ray. [Classify] takes RequestID from the first of them
// that is set; the slice is the caller's to keep.
func RequestIDHeaders() []string { return append([]string(nil), requestIDHeaders[:]...) }

// requestIDSuffix is how new-api and one-api append their request ID to
// the messages they write.
const requestIDSuffix = "(request id: "

// requestID finds the request ID of a response: a header, else the body's
// request_id, else the new-api message suffix, else an OpenAI "req_…" ID
// quoted in a message.
func requestID(h http.Header, bi *bodyInfo, msgs ...string) string {
	for _, k := range requestIDHeaders {
		if v := strings.TrimSpace(h.Get(k)); v != "" {
			return v
		}
	}
	for _, e := range [...]*errFields{&bi.top, &bi.err, &bi.choice, &bi.resp} {
		if e.requestID != "" && e.requestID != "null" {
			return e.requestID
		}
	}
	for _, m := range msgs {
		if id, ok := suffixRequestID(m); ok {
			return id
		}
	}
	for _, m := range msgs {
		if id := openAIRequestID(m); id != "" {
			return id
		}
	}
	return ""
}

// suffixRequestID returns the ID in a " (request id: X)" suffix of msg.
func suffixRequestID(msg string) (string, bool) {
	i := strings.LastIndex(msg, requestIDSuffix)
	if i < 0 {
		return "", false
	}
	rest := msg[i+len(requestIDSuffix):]
	j := strings.IndexByte(rest, ')')
	if j <= 0 {
		return "", false
	}
	id := strings.TrimSpace(rest[:j])
	return id, id != ""
}

// stripRequestIDSuffix removes a trailing " (request id: X)" from msg.
func stripRequestIDSuffix(msg string) string {
	i := strings.LastIndex(msg, requestIDSuffix)
	if i < 0 {
		return msg
	}
	if j := strings.IndexByte(msg[i:], ')'); j < 0 || strings.TrimSpace(msg[i+j+1:]) != "" {
		return msg
	}
	return strings.TrimRight(msg[:i], " ")
}

// openAIRequestID returns the first "req_" followed by at least 16
// alphanumerics in msg, as OpenAI quotes it in 5xx messages.
func openAIRequestID(msg string) string {
	for off := 0; ; {
		i := strings.Index(msg[off:], "req_")
		if i < 0 {
			return ""
		}
		i += off
		off = i + 4
		if i > 0 && isAlnum(msg[i-1]) {
			continue
		}
		j := off
		for j < len(msg) && isAlnum(msg[j]) {
			j++
		}
		if j-off >= 16 && (j == len(msg) || !isAlnum(msg[j]) && msg[j] != '_') {
			return msg[i:j]
		}
	}
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
