package pacing

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/llmtransport/llmtransport/internal/hint"
)

// Dim is a dimension of a rate limit: what a window counts.
type Dim uint8

// The dimensions the providers report.
const (
	// Requests counts requests: OpenAI's and Azure's
	// x-ratelimit-*-requests, Anthropic's anthropic-ratelimit-requests-*.
	Requests Dim = iota
	// Tokens counts input and output tokens together: OpenAI's and Azure's
	// x-ratelimit-*-tokens, Anthropic's anthropic-ratelimit-tokens-*.
	Tokens
	// InputTokens counts input tokens: Anthropic's
	// anthropic-ratelimit-input-tokens-*.
	InputTokens
	// OutputTokens counts output tokens: Anthropic's
	// anthropic-ratelimit-output-tokens-* (estimated by the server from
	// max_tokens when the request starts).
	OutputTokens
	// NumDims is the number of dimensions.
	NumDims
)

var dimNames = [NumDims]string{"requests", "tokens", "input-tokens", "output-tokens"}

// String returns the dimension's name as the headers spell it: "requests",
// "tokens", "input-tokens" or "output-tokens".
func (d Dim) String() string {
	if d < NumDims {
		return dimNames[d]
	}
	return "dim(" + strconv.Itoa(int(d)) + ")"
}

// Limits of what a rate-limit header may say and still be believed.
const (
	// MaxSaneWait bounds wait hints (Retry-After and its kin): a longer
	// one is taken as this long (see [hint.MaxSaneWait]).
	MaxSaneWait = hint.MaxSaneWait
	// MaxReset is the longest window reset the pacer believes. A reset
	// further away (a date in the year 3000, a Unix time read as seconds)
	// makes the window unknown: pacing never waits on a number it cannot
	// trust. A day covers the per-day limits (Groq's RPD/TPD).
	MaxReset = 24 * time.Hour
)

// Window is what a response said about one dimension of its rate limit:
// Limit units per window, Remaining of them left, and the window whole
// again Reset after the response was read. The zero Window is unknown.
type Window struct {
	Limit     int64
	Remaining int64
	Reset     time.Duration
	// slack is how much earlier than Reset the window may be whole again:
	// a second when Reset was taken relative to the response's Date,
	// which has whole seconds (the server's clock then was up to a second
	// past it).
	slack time.Duration
}

// Known reports whether w is usable: 0 ≤ Remaining ≤ Limit, Limit > 0
// and 0 < Reset ≤ MaxReset. Anything else (a header missing, "-1", a
// remaining above the limit, a reset of 0 or in a year) is unknown, and
// unknown never paces.
func (w Window) Known() bool {
	return w.Limit > 0 && w.Remaining >= 0 && w.Remaining <= w.Limit && w.Reset > 0 && w.Reset <= MaxReset
}

// Limits is what one response said about each dimension.
type Limits [NumDims]Window

// Known reports whether any dimension is known.
func (l *Limits) Known() bool {
	for i := range l {
		if l[i].Known() {
			return true
		}
	}
	return false
}

// headerSet names the limit, remaining and reset headers of one dimension,
// in canonical form.
type headerSet struct {
	dim                     Dim
	limit, remaining, reset string
	// altReset is a reset header of another name, used when reset is
	// absent (Azure's x-rate-limit-reset-*, in seconds).
	altReset string
	// rfc3339 marks Anthropic's resets, absolute RFC 3339 times.
	rfc3339 bool
}

// openAIHeaders are OpenAI's (and Groq's, Azure's, LiteLLM's) x-ratelimit-*.
// Resets are Go durations ("1s", "6m0s", "20ms"); Azure sends its own
// x-rate-limit-reset-* in seconds beside them, or instead of them.
var openAIHeaders = [...]headerSet{
	{Requests, "X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests", "X-Rate-Limit-Reset-Requests", false},
	{Tokens, "X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Tokens", "X-Rate-Limit-Reset-Tokens", false},
}

// anthropicHeaders are Anthropic's anthropic-ratelimit-*, whose resets are
// RFC 3339 times.
var anthropicHeaders = [...]headerSet{
	{Requests, "Anthropic-Ratelimit-Requests-Limit", "Anthropic-Ratelimit-Requests-Remaining", "Anthropic-Ratelimit-Requests-Reset", "", true},
	{Tokens, "Anthropic-Ratelimit-Tokens-Limit", "Anthropic-Ratelimit-Tokens-Remaining", "Anthropic-Ratelimit-Tokens-Reset", "", true},
	{InputTokens, "Anthropic-Ratelimit-Input-Tokens-Limit", "Anthropic-Ratelimit-Input-Tokens-Remaining", "Anthropic-Ratelimit-Input-Tokens-Reset", "", true},
	{OutputTokens, "Anthropic-Ratelimit-Output-Tokens-Limit", "Anthropic-Ratelimit-Output-Tokens-Remaining", "Anthropic-Ratelimit-Output-Tokens-Reset", "", true},
}

// ParseHeaders reads the rate-limit headers of a response read at now:
// OpenAI's, Groq's and Azure's x-ratelimit-{limit,remaining,reset}-
// {requests,tokens} (resets as Go durations, or numbers as [hint.ParseReset]
// reads them; Azure's x-rate-limit-reset-{requests,tokens} in seconds when
// the first is absent), and Anthropic's
// anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
// {limit,remaining,reset} (resets as RFC 3339 times, taken relative to the
// response's Date, the server's clock, or to now without one). When both
// families name a dimension, x-ratelimit-* wins. A dimension whose values
// are missing, negative or inconsistent is left unknown ([Window.Known]).
//
// It does not allocate on well-formed headers.
func ParseHeaders(h http.Header, now time.Time) Limits {
	var l Limits
	if len(h) == 0 {
		return l
	}
	var server serverClock // the Date header, read when first needed
	for i := range openAIHeaders {
		hs := &openAIHeaders[i]
		if w, ok := parseWindow(h, hs, now, &server); ok {
			l[hs.dim] = w
		}
	}
	for i := range anthropicHeaders {
		hs := &anthropicHeaders[i]
		if l[hs.dim].Known() {
			continue
		}
		if w, ok := parseWindow(h, hs, now, &server); ok {
			l[hs.dim] = w
		}
	}
	return l
}

// parseWindow reads one dimension's headers; ok only when they are known.
func parseWindow(h http.Header, hs *headerSet, now time.Time, server *serverClock) (Window, bool) {
	lim, ok := hint.ParseCount(first(h, hs.limit))
	if !ok || lim <= 0 {
		return Window{}, false
	}
	rem, ok := hint.ParseCount(first(h, hs.remaining))
	if !ok || rem > lim {
		return Window{}, false
	}
	var d, slack time.Duration
	if hs.rfc3339 {
		s := strings.TrimSpace(first(h, hs.reset))
		if s == "" {
			return Window{}, false
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return Window{}, false
		}
		ref, date := server.get(h, now)
		d = t.Sub(ref)
		if date {
			slack = time.Second
		}
	} else {
		var ok bool
		v := first(h, hs.reset)
		ref := now // unused by relative values, which are most
		if absolute(v) {
			var date bool
			if ref, date = server.get(h, now); date {
				slack = time.Second
			}
		}
		if d, ok = hint.ParseReset(v, ref); !ok && hs.altReset != "" {
			slack = 0
			d, ok = hint.ParseSeconds(first(h, hs.altReset))
		}
		if !ok {
			return Window{}, false
		}
	}
	w := Window{Limit: lim, Remaining: rem, Reset: d, slack: min(slack, d)}
	return w, w.Known()
}

// first returns the first value of the header key (canonical), without
// canonicalising it again.
func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// absolute reports whether the reset value v may be an absolute time,
// which ParseReset takes relative to the server's clock: a date, or ten
// digits or more.
func absolute(v string) bool {
	digits := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == 'T':
			return true
		}
	}
	return digits >= 10
}

// serverClock is the server's clock as a response's Date tells it, read
// once per response.
type serverClock struct {
	t          time.Time
	read, date bool
}

// get returns the response's Date, and true, or now and false when it has
// no valid Date.
func (c *serverClock) get(h http.Header, now time.Time) (time.Time, bool) {
	if !c.read {
		c.read, c.t = true, now
		if d := first(h, "Date"); d != "" {
			if t, err := http.ParseTime(d); err == nil {
				c.t, c.date = t, true
			}
		}
	}
	return c.t, c.date
}
