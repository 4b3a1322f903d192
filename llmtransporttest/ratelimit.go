package llmtransporttest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// RateLimit is a window limit that [WithRateLimit] makes the server
// enforce, per model, the way OpenAI does.
type RateLimit struct {
	// Requests is how many requests a window admits; 0 means no request
	// limit.
	Requests int
	// Tokens is how many tokens a window admits; 0 means no token limit.
	// A request costs what OpenAI counts: a character estimate of the
	// prompt plus what it may generate, here ⌈body bytes / 4⌉ +
	// n × max_tokens (or max_completion_tokens, or max_output_tokens; 0
	// when the body names none; n defaults to 1).
	Tokens int
	// Window is the length of a window; 0 means one minute. Windows are
	// fixed: the first starts when the server does, and each gives back
	// the whole limit when it starts.
	Window time.Duration
}

// RateLimitedFault is the [Fault.Name] under which [Server.FaultCount]
// counts the requests refused by the limit of [WithRateLimit].
const RateLimitedFault = "rate_limited:window"

// WithRateLimit makes the server enforce l on each model's requests, before
// any script: a request that the window has no room for (a request, or its
// tokens) is answered 429 rate_limit_exceeded, with "Please try again in
// <time to the next window>." in its message, and does not count against
// the window. Every other answer, success or scripted fault, counts, and
// every answer that has headers carries OpenAI's
// x-ratelimit-limit-requests, x-ratelimit-remaining-requests and
// x-ratelimit-reset-requests (and the -tokens ones), as they stood when
// the request arrived and was counted; resets are Go durations rounded up
// to the millisecond ("20ms", "1.5s", "1m0s"). The 429 carries them too,
// with the exhausted dimension's remaining count. A zero limit (both
// counts 0) is no limit, the default.
func WithRateLimit(l RateLimit) Option {
	return func(c *config) {
		if l.Requests <= 0 && l.Tokens <= 0 {
			c.limit = nil
			return
		}
		if l.Window <= 0 {
			l.Window = time.Minute
		}
		c.limit = &l
	}
}

// window is the state of one model's current window.
type window struct {
	n      int64 // the index of the window
	reqs   int   // requests counted in it
	tokens int   // tokens counted in it
}

// tokenCost is what the server charges a request against its token limit.
func tokenCost(bodyLen int, req *chatRequest) int {
	out := 0
	for _, v := range [...]json.RawMessage{req.MaxTokens, req.MaxCompletionTokens, req.MaxOutputTokens} {
		if n := count(v); n > 0 {
			out = n
			break
		}
	}
	n := max(count(req.N), 1)
	return (bodyLen+3)/4 + n*out
}

// count reads a JSON number as a count: 0 for anything else, or past 2³⁰.
func count(v json.RawMessage) int {
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || !(f > 0) || f > 1<<30 {
		return 0
	}
	return int(f)
}

// admit counts a request of model at now against the rate limit, and
// returns the headers to send and whether it fits. s.mu is held.
func (s *Server) admit(model string, cost int, now time.Time) (h http.Header, ok bool) {
	l := s.cfg.limit
	elapsed := now.Sub(s.start)
	idx := int64(elapsed / l.Window)
	end := s.start.Add(time.Duration(idx+1) * l.Window)
	w := s.windows[model]
	if w == nil {
		w = &window{}
		s.windows[model] = w
	}
	if w.n != idx {
		*w = window{n: idx}
	}
	ok = (l.Requests <= 0 || w.reqs+1 <= l.Requests) && (l.Tokens <= 0 || w.tokens+cost <= l.Tokens)
	if ok {
		w.reqs++
		w.tokens += cost
	}
	reset := resetString(end.Sub(now))
	h = http.Header{}
	if l.Requests > 0 {
		h.Set("X-Ratelimit-Limit-Requests", strconv.Itoa(l.Requests))
		h.Set("X-Ratelimit-Remaining-Requests", strconv.Itoa(max(l.Requests-w.reqs, 0)))
		h.Set("X-Ratelimit-Reset-Requests", reset)
	}
	if l.Tokens > 0 {
		h.Set("X-Ratelimit-Limit-Tokens", strconv.Itoa(l.Tokens))
		h.Set("X-Ratelimit-Remaining-Tokens", strconv.Itoa(max(l.Tokens-w.tokens, 0)))
		h.Set("X-Ratelimit-Reset-Tokens", reset)
	}
	return h, ok
}

// resetString formats d as OpenAI's reset headers do: a Go duration,
// rounded up to the millisecond.
func resetString(d time.Duration) string {
	return (d + time.Millisecond - 1).Truncate(time.Millisecond).String()
}

// windowLimited answers 429 for a request the window had no room for; h
// holds the rate-limit headers.
func windowLimited(h http.Header) Fault {
	wait := h.Get("X-Ratelimit-Reset-Requests")
	if wait == "" {
		wait = h.Get("X-Ratelimit-Reset-Tokens")
	}
	return Fault{name: RateLimitedFault, serve: func(w http.ResponseWriter, x *exchange) {
		msg := "Rate limit reached for " + x.model + " in organization org-fake. Please try again in " + wait + "."
		writeJSON(w, http.StatusTooManyRequests, openAIEnvelope(msg, "requests", "rate_limit_exceeded"))
	}}
}
