// Package classify tells what a response of an OpenAI-compatible LLM API
// (or of a gateway in front of one: new-api, one-api, LiteLLM, OpenRouter,
// Azure…) means for its caller: whether to wait and retry, count it
// against the model, or give up. [Classify] reads the status, the headers
// and the error in the body, whatever its shape (OpenAI, Anthropic,
// Google, flat and legacy shapes, event streams, HTML, plain text,
// truncated JSON, JSON quoted in a message), and returns a
// [Classification]: its [Class], the business error Code, the wait the
// server asked for, the request ID and the message.
//
// It uses the standard library only and does no I/O: give it a response
// and the first [MaxPeek] bytes of its body, read by your own client or
// from a log. The transport of package
// github.com/llmtransport/llmtransport classifies every attempt with it.
package classify

import (
	"net/http"
	"strings"
	"time"

	"github.com/llmtransport/llmtransport/internal/redact"
	"github.com/llmtransport/llmtransport/internal/wire"
)

// Class is what a response (or a transport error) means for a caller of an
// LLM API: whether to wait and retry, fail over, or give up. The zero value
// is [ClassSuccess].
type Class uint8

// The classes. Their meanings follow the gateways' and providers' own error
// documentation; the README's classification table lists them with the
// signals that select each.
const (
	ClassSuccess           Class = iota // 2xx without an in-band error
	ClassRateLimited                    // per-key or per-org throttle (RPM/TPM); retry after the wait
	ClassQuotaExhausted                 // credits, balance, spend caps, per-day quotas; never retried
	ClassOverloaded                     // provider capacity (529, "overloaded", "high demand")
	ClassUpstreamTransient              // 5xx, bad gateway, broken upstream connection
	ClassTimeout                        // 408, 504, 522, 524, deadline exceeded upstream
	ClassAuth                           // invalid or expired key
	ClassPermission                     // model, region or IP not allowed
	ClassInvalidRequest                 // the request itself is wrong (incl. "Request too large")
	ClassContextLength                  // prompt + max_tokens exceed the context window
	ClassContentFiltered                // moderation or safety block
	ClassModelNotFound                  // model unknown or not served here
	ClassNotFound                       // a 404 not about the model
	ClassGatewayInternal                // gateway database, billing or config errors
	ClassUnknown                        // could not be classified
	numClasses
)

var classNames = [numClasses]string{
	ClassSuccess:           "success",
	ClassRateLimited:       "rate_limited",
	ClassQuotaExhausted:    "quota_exhausted",
	ClassOverloaded:        "overloaded",
	ClassUpstreamTransient: "upstream_transient",
	ClassTimeout:           "timeout",
	ClassAuth:              "auth",
	ClassPermission:        "permission",
	ClassInvalidRequest:    "invalid_request",
	ClassContextLength:     "context_length",
	ClassContentFiltered:   "content_filtered",
	ClassModelNotFound:     "model_not_found",
	ClassNotFound:          "not_found",
	ClassGatewayInternal:   "gateway_internal",
	ClassUnknown:           "unknown",
}

// String returns the class's snake_case name, such as "rate_limited".
func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return "unknown"
}

// MarshalText implements [encoding.TextMarshaler] with [Class.String].
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// Retryable reports whether responses of class c are worth retrying when
// the server says nothing else (x-should-retry).
func (c Class) Retryable() bool {
	switch c {
	case ClassRateLimited, ClassOverloaded, ClassUpstreamTransient, ClassTimeout:
		return true
	}
	return false
}

// BreakerFailure reports whether responses of class c count as failures of
// the model's circuit. Classes caused by the caller (auth, invalid_request,
// quotas…) and rate limits do not.
func (c Class) BreakerFailure() bool {
	switch c {
	case ClassOverloaded, ClassUpstreamTransient, ClassTimeout, ClassModelNotFound, ClassUnknown:
		return true
	}
	return false
}

// Classification is what [Classify] learned from one response.
type Classification struct {
	// Class is what the response means.
	Class Class
	// Retryable is the server's verdict: whether the response is worth
	// retrying, whatever the wait. It is true when the class is retryable
	// ([Class.Retryable], or a gateway code that is, such as new-api's
	// database errors) or the server said x-should-retry: true, and false
	// when it said x-should-retry: false. It does not look at RetryAfter:
	// a client that will not wait that long (a transport's cap) decides
	// that for itself.
	Retryable bool
	// BreakerFailure reports whether the response counts as a failure of
	// the model's circuit.
	BreakerFailure bool
	// RetryAfter is the wait the server asked for, 0 when it asked for none.
	// It is reported on every class, retried or not (a per-day quota's
	// retryDelay, a Retry-After on a 401, a hint of a day): callers may use
	// it, and decide whether to wait. A hint never makes a response
	// Retryable, nor keeps it from being.
	RetryAfter time.Duration
	// RetryAfterSource names where RetryAfter came from: a header name in
	// lower case ("retry-after-ms", "retry-after", "x-ratelimit-reset-tokens",
	// "anthropic-ratelimit-requests-reset"…), "body:retryDelay" (Gemini
	// RetryInfo), "body:x-ratelimit-reset" (OpenRouter metadata.headers),
	// "body:retry_after" or "message". Empty when RetryAfter is 0.
	RetryAfterSource string
	// Status is the HTTP status code of the response (0 for transport errors).
	Status int
	// Code is the most specific business error code or reason in the body
	// ("insufficient_quota", "channel:no_available_key", "API_KEY_INVALID",
	// "RESOURCE_EXHAUSTED", "content_filter"…); see [Classify] for which
	// wins when there are several. It is never a generic type
	// ("invalid_request_error", "upstream_error", "new_api_error"), an HTTP
	// status written as a code, or a printed null ("<nil>", "null",
	// "None"): "" when the body has no code.
	Code string
	// Type is the error type as written ("invalid_request_error",
	// "overloaded_error", "new_api_error"…), "" when there is none.
	Type string
	// Message is the human-readable error message, if any, with API keys
	// it quotes masked and at most 4 KiB long.
	Message string
	// RequestID is the request ID the server or gateway assigned, from the
	// headers ([RequestIDHeaders]) or the body.
	RequestID string
}

// MaxPeek is how many bytes of a body [Classify] looks at: the first 64
// KiB. A caller that reads a body to classify it need read no more.
const MaxPeek = 64 << 10

// The buffers the transport peeks into, and Classify decodes into, hold
// MaxPeek bytes: a compile-time check that the two constants agree.
const _ = uint(MaxPeek-wire.MaxPeek) + uint(wire.MaxPeek-MaxPeek)

// Classify classifies resp, whose body (possibly truncated, possibly nil) the
// caller has already read into body. It does no I/O, never reads resp.Body,
// looks at no more than the first 64 KiB of body, and is safe for concurrent
// use. The strings it returns never share memory with body. A body whose
// Content-Encoding is gzip or deflate, and whose bytes are so encoded, is
// decoded first (at most 64 KiB of it); br and zstd are not, and such a body
// is classified without it.
//
// The procedure, in short (the rest of this comment and the corpus in
// testdata/ are its full statement): the body is read tolerantly (OpenAI, Anthropic, Google, flat and legacy shapes, event
// streams, HTML, plain text, truncated JSON, JSON embedded in messages);
// errors inside 2xx responses count; quota signals beat the status;
// business codes beat message text; message text beats the status.
//
// Codes before statuses. An admin can remap any status (a 429 sent as a
// 500), and new-api sends validation errors as 500 and an oversize body as
// 400; so a quota, rate-limit, overload, context-length, content-filter,
// timeout or gateway code (or type) in the body decides the class whatever
// the status, and so does a numeric 402, 429 or 529 in the body's error
// code. Quota signals come first, then "Request too large" (a request
// error, though its code is rate_limit_exceeded), then the other codes,
// then the message text, then the status. "<nil>", "null", "None" and ""
// are no code. For example:
//
//	500 {"error":{"code":"rate_limit_exceeded","message":"… try again in 7s"}}  → rate_limited, retried after 7s
//	500 {"message":"Overloaded","type":"overloaded_error","code":null}          → overloaded
//	500 {"error":{"code":429,"type":"upstream_error","message":"…"}}            → rate_limited
//	400 {"error":{"code":"read_request_body_failed","type":"new_api_error"}}    → invalid_request
//
// The most specific reason wins. Of several codes in a body, Code is, in
// this order: Anthropic's details.error_code; error.code, unless it is an
// HTTP status number; the type, unless it is a generic one
// ("invalid_request_error", "upstream_error", "new_api_error"… stay in Type
// only); Google's ErrorInfo reason, then its status; OpenRouter's
// metadata.error_type. A provider's code quoted one level down (OpenRouter
// metadata.raw, JSON in a message) beats a gateway's wrapper code (a status
// number, "bad_response_status_code"). A 2xx withheld by a filter has its
// finish reason as Code. No code in the body means an empty Code:
//
//	400 {"error":{"status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}  → auth, Code "API_KEY_INVALID"
//	429 {"error":{"code":429,"metadata":{"raw":"{\"error\":{\"code\":\"insufficient_quota\"}}"}}} → quota_exhausted, Code "insufficient_quota"
//	400 {"type":"error","error":{"type":"invalid_request_error"}}             → invalid_request, Code "", Type "invalid_request_error"
//	529 {"type":"error","error":{"type":"overloaded_error"}}                  → overloaded, Code "overloaded_error"
//	200 {"choices":[{"finish_reason":"content_filter"}]}                      → content_filtered, Code "content_filter"
//
// Wait hints are reported on every class (RetryAfter), retried or not: a
// per-day quota's retryDelay, a Retry-After on a quota or auth error, a
// hint of a day. A hint never makes a response Retryable, nor keeps it
// from being: Retryable is the server's verdict, and how long a wait is
// worth it is the caller's to decide (llmtransport's Transport retries a
// Retryable response only when its hint is within its cap,
// WithMaxRetryWait).
//
// Streams. Every event of the event stream in body is read, with the
// allocation-free scanner. The first event with data is always judged: an
// error there is the verdict. The events after it count once the stream is
// known to have ended within body — at data: [DONE], an Anthropic
// message_stop, a Responses response.completed or response.incomplete, an
// Anthropic or Responses error event (nothing follows one), or when body
// holds all of resp.ContentLength. Then the first error event anywhere is
// the verdict; a content_filter, refusal or SAFETY finish reason in any
// event makes it content_filtered; and a stream without any finish reason
// (new-api ends a stream cut by a reset or a stall with [DONE] like any
// other) is upstream_transient, or timeout after nothing but keep-alives,
// when it is of a format that ends with one (chat completion chunks,
// Anthropic, Gemini, Responses; not, say, Assistants). An end marker counts
// only from an event that is complete (closed, or its JSON whole). A
// prefix that stops before the end (a client's peek of a stream's start,
// such as the transport's) is judged by its first event alone: what follows may be anything,
// and its missing finish reason may simply not have come yet.
func Classify(resp *http.Response, body []byte) Classification {
	var c Classification
	if resp == nil {
		c.Class = ClassUnknown
		c.BreakerFailure = true
		return c
	}
	// A body that is all of the response (its Content-Length) tells a
	// stream that ended from a prefix of one.
	whole := len(body) <= MaxPeek && resp.ContentLength >= 0 && int64(len(body)) == resp.ContentLength
	if len(body) > MaxPeek {
		body = body[:MaxPeek]
	}
	c.Status = resp.StatusCode
	h := resp.Header
	body, buf := wire.Decode(h, body)
	if buf != nil {
		defer wire.Pool.Put(buf)
	}
	var cl classifier
	bi := &cl.bi
	bi.whole, bi.success = whole, resp.StatusCode >= 200 && resp.StatusCode < 300
	bi.parse(h.Get("Content-Type"), body)
	v := cl.decide(resp)
	c.Class = v.class
	switch {
	case c.Class == ClassSuccess:
	case v.own:
		c.Code, c.Message = v.code, v.msg
		c.RetryAfter, c.RetryAfterSource = waitHint(h, bi, "")
	default:
		e := bi.container()
		desc := ""
		if e == &bi.top {
			desc = bi.description
		}
		c.Code = businessCode(e, desc)
		if bi.hasNested && wrapperCode(c.Code) {
			// A provider's code quoted by a gateway beats the gateway's
			// generic wrapper.
			if n := businessCode(&bi.nested, ""); n != "" {
				c.Code = n
			}
		}
		c.Type = e.typ
		if c.Type == "" {
			c.Type = bi.nested.typ
		}
		c.Message = e.message
		if c.Message == "" {
			c.Message = bi.fallbackMessage()
		}
		if c.Message == "" {
			c.Message = bi.nested.message
		}
		c.Message = redact.Message(stripRequestIDSuffix(c.Message))
		c.RetryAfter, c.RetryAfterSource = waitHint(h, bi, cl.text)
	}
	c.RequestID = requestID(h, bi, cl.msgs[:cl.nm]...)
	c.finish(h, v)
	return c
}

// finish derives Retryable and BreakerFailure from the class, the
// verdict's overrides and the server's x-should-retry header.
func (c *Classification) finish(h http.Header, v verdict) {
	if c.Class == ClassSuccess {
		c.Retryable, c.BreakerFailure = false, false
		return
	}
	c.BreakerFailure = c.Class.BreakerFailure()
	if v.breaker != 0 {
		c.BreakerFailure = v.breaker > 0
	}
	c.Retryable = c.Class.Retryable()
	if v.retry != 0 {
		c.Retryable = v.retry > 0
	}
	switch strings.ToLower(strings.TrimSpace(h.Get("X-Should-Retry"))) {
	case "true":
		c.Retryable = true
	case "false":
		c.Retryable = false
	}
}

// statusClass is the last step of the procedure: the class from the status
// alone.
func statusClass(status int) Class {
	switch {
	case status >= 200 && status < 300:
		return ClassSuccess
	case status == 429:
		return ClassRateLimited
	case status == 408 || status == 504 || status == 522 || status == 524:
		return ClassTimeout
	case status >= 500 && status <= 599:
		return ClassUpstreamTransient
	case status == 403:
		return ClassPermission
	case status == 404:
		return ClassNotFound
	case status >= 400 && status <= 499:
		return ClassInvalidRequest
	}
	return ClassUnknown
}
