package pacing

import (
	"net/http"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport/internal/hint"
)

// hdr builds a header from key, value pairs (keys in any case).
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

const testDate = "Wed, 21 Oct 2026 07:27:30 GMT"

func TestParseHeaders(t *testing.T) {
	now := time.Date(2026, 10, 21, 7, 27, 31, 0, time.UTC) // a second after the Date
	unknown := Window{}
	cases := []struct {
		name string
		h    http.Header
		want Limits
	}{
		{"openai", hdr(
			"x-ratelimit-limit-requests", "60", "x-ratelimit-remaining-requests", "59", "x-ratelimit-reset-requests", "1s",
			"x-ratelimit-limit-tokens", "150000", "x-ratelimit-remaining-tokens", "149984", "x-ratelimit-reset-tokens", "6m0s",
		), Limits{Requests: {60, 59, time.Second, 0}, Tokens: {150000, 149984, 6 * time.Minute, 0}}},
		{"openai short resets", hdr(
			"x-ratelimit-limit-requests", "10000", "x-ratelimit-remaining-requests", "9999", "x-ratelimit-reset-requests", "20ms",
			"x-ratelimit-limit-tokens", "30000", "x-ratelimit-remaining-tokens", "29000", "x-ratelimit-reset-tokens", "7.66s",
		), Limits{Requests: {10000, 9999, 20 * time.Millisecond, 0}, Tokens: {30000, 29000, 7660 * time.Millisecond, 0}}},
		{"bare seconds and spaces", hdr(
			"x-ratelimit-limit-requests", " 20 ", "x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", " 0.5 ",
		), Limits{Requests: {20, 0, 500 * time.Millisecond, 0}}},
		{"azure reset in seconds under its own name", hdr(
			"x-ratelimit-limit-tokens", "1000", "x-ratelimit-remaining-tokens", "0", "x-rate-limit-reset-tokens", "55",
			"x-ratelimit-limit-requests", "20", "x-ratelimit-remaining-requests", "3", "x-rate-limit-reset-requests", "1",
		), Limits{Requests: {20, 3, time.Second, 0}, Tokens: {1000, 0, 55 * time.Second, 0}}},
		{"azure responses placeholders", hdr(
			"x-ratelimit-limit-tokens", "-1", "x-ratelimit-remaining-tokens", "-1", "x-ratelimit-reset-tokens", "0",
		), Limits{}},
		{"azure without a reset", hdr(
			"x-ratelimit-limit-requests", "20", "x-ratelimit-remaining-requests", "0",
		), Limits{}},
		{"remaining above the limit", hdr(
			"x-ratelimit-limit-requests", "20", "x-ratelimit-remaining-requests", "21", "x-ratelimit-reset-requests", "1s",
		), Limits{}},
		{"zero limit", hdr(
			"x-ratelimit-limit-requests", "0", "x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "1s",
		), Limits{}},
		{"reset 0 and negative", hdr(
			"x-ratelimit-limit-requests", "20", "x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "0s",
			"x-ratelimit-limit-tokens", "20", "x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "-1s",
		), Limits{}},
		{"absurd reset", hdr(
			"x-ratelimit-limit-requests", "20", "x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "99999999999s",
			"x-ratelimit-limit-tokens", "20", "x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "3000-01-01T00:00:00Z",
		), Limits{}},
		{"junk counts", hdr(
			"x-ratelimit-limit-requests", "1e3", "x-ratelimit-remaining-requests", "5", "x-ratelimit-reset-requests", "1s",
			"x-ratelimit-limit-tokens", "100", "x-ratelimit-remaining-tokens", "12.5", "x-ratelimit-reset-tokens", "1s",
		), Limits{}},
		{"anthropic, relative to Date", hdr(
			"Date", testDate,
			"anthropic-ratelimit-requests-limit", "50", "anthropic-ratelimit-requests-remaining", "49", "anthropic-ratelimit-requests-reset", "2026-10-21T07:27:31Z",
			"anthropic-ratelimit-tokens-limit", "90000", "anthropic-ratelimit-tokens-remaining", "80000", "anthropic-ratelimit-tokens-reset", "2026-10-21T07:28:00Z",
			"anthropic-ratelimit-input-tokens-limit", "40000", "anthropic-ratelimit-input-tokens-remaining", "0", "anthropic-ratelimit-input-tokens-reset", "2026-10-21T07:27:42Z",
			"anthropic-ratelimit-output-tokens-limit", "8000", "anthropic-ratelimit-output-tokens-remaining", "7000", "anthropic-ratelimit-output-tokens-reset", "2026-10-21T07:27:31.5Z",
		), Limits{
			Requests:     {50, 49, time.Second, time.Second},
			Tokens:       {90000, 80000, 30 * time.Second, time.Second},
			InputTokens:  {40000, 0, 12 * time.Second, time.Second},
			OutputTokens: {8000, 7000, 1500 * time.Millisecond, time.Second},
		}},
		{"anthropic without Date: relative to now", hdr(
			"anthropic-ratelimit-requests-limit", "50", "anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", "2026-10-21T07:27:41Z",
		), Limits{Requests: {50, 0, 10 * time.Second, 0}}},
		{"anthropic reset in the past", hdr(
			"Date", testDate,
			"anthropic-ratelimit-requests-limit", "50", "anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", "2026-10-21T07:27:00Z",
		), Limits{}},
		{"anthropic reset not RFC 3339", hdr(
			"anthropic-ratelimit-requests-limit", "50", "anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", "10s",
		), Limits{}},
		{"x-ratelimit wins over anthropic", hdr(
			"x-ratelimit-limit-requests", "60", "x-ratelimit-remaining-requests", "1", "x-ratelimit-reset-requests", "2s",
			"anthropic-ratelimit-requests-limit", "50", "anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", "2026-10-21T07:27:41Z",
		), Limits{Requests: {60, 1, 2 * time.Second, 0}}},
		{"anthropic fills in for an unknown x-ratelimit", hdr(
			"x-ratelimit-limit-requests", "-1", "x-ratelimit-remaining-requests", "-1", "x-ratelimit-reset-requests", "0",
			"anthropic-ratelimit-requests-limit", "50", "anthropic-ratelimit-requests-remaining", "0", "anthropic-ratelimit-requests-reset", "2026-10-21T07:27:41Z",
		), Limits{Requests: {50, 0, 10 * time.Second, 0}}},
		{"none", hdr("Content-Type", "application/json"), Limits{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ParseHeaders(c.h, now)
			for d := range NumDims {
				g, w := got[d], c.want[d]
				if !w.Known() {
					w = unknown
				}
				if g != w {
					t.Errorf("%v: got %+v, want %+v", d, g, w)
				}
				if g != unknown && !g.Known() {
					t.Errorf("%v: %+v returned but not known", d, g)
				}
			}
		})
	}
}

// TestParseHeadersAllocs checks that well-formed headers are read without
// allocating: ParseHeaders runs on every response.
func TestParseHeadersAllocs(t *testing.T) {
	now := time.Date(2026, 10, 21, 7, 27, 31, 0, time.UTC)
	for name, h := range map[string]http.Header{
		"openai": hdr("Date", testDate,
			"x-ratelimit-limit-requests", "60", "x-ratelimit-remaining-requests", "59", "x-ratelimit-reset-requests", "1s",
			"x-ratelimit-limit-tokens", "150000", "x-ratelimit-remaining-tokens", "149984", "x-ratelimit-reset-tokens", "6m0s"),
		"anthropic": hdr("Date", testDate,
			"anthropic-ratelimit-requests-limit", "50", "anthropic-ratelimit-requests-remaining", "49", "anthropic-ratelimit-requests-reset", "2026-10-21T07:27:31Z",
			"anthropic-ratelimit-input-tokens-limit", "40000", "anthropic-ratelimit-input-tokens-remaining", "0", "anthropic-ratelimit-input-tokens-reset", "2026-10-21T07:27:42Z"),
		"junk": hdr("x-ratelimit-limit-requests", "-1", "x-ratelimit-remaining-requests", "x", "x-ratelimit-reset-requests", "soon"),
	} {
		var l Limits
		if n := testing.AllocsPerRun(100, func() { l = ParseHeaders(h, now) }); n != 0 {
			t.Errorf("%s: %v allocations per ParseHeaders, want 0", name, n)
		}
		_ = l
	}
}

func FuzzParseHeaders(f *testing.F) {
	f.Add(uint8(0), "60", "0", "1s", "")
	f.Add(uint8(0), "-1", "-1", "0", "")
	f.Add(uint8(1), "1000", "0", "55", "")
	f.Add(uint8(2), "50", "0", "2026-10-21T07:27:41Z", testDate)
	f.Add(uint8(3), "50", "49", "3000-01-01T00:00:00Z", "garbage")
	f.Add(uint8(0), "20", "21", "99999999999s", "")
	f.Add(uint8(0), "9223372036854775807", "1", "1792567680000", "")
	now := time.Date(2026, 10, 21, 7, 27, 31, 0, time.UTC)
	f.Fuzz(func(t *testing.T, family uint8, lim, rem, reset, date string) {
		var h http.Header
		switch family % 4 {
		case 0:
			h = hdr("x-ratelimit-limit-requests", lim, "x-ratelimit-remaining-requests", rem, "x-ratelimit-reset-requests", reset,
				"x-ratelimit-limit-tokens", rem, "x-ratelimit-remaining-tokens", lim, "x-ratelimit-reset-tokens", reset)
		case 1:
			h = hdr("x-ratelimit-limit-tokens", lim, "x-ratelimit-remaining-tokens", rem, "x-rate-limit-reset-tokens", reset)
		default:
			h = hdr("anthropic-ratelimit-input-tokens-limit", lim, "anthropic-ratelimit-input-tokens-remaining", rem,
				"anthropic-ratelimit-input-tokens-reset", reset, "anthropic-ratelimit-requests-limit", lim,
				"anthropic-ratelimit-requests-remaining", rem, "anthropic-ratelimit-requests-reset", reset)
		}
		if date != "" {
			h.Set("Date", date)
		}
		l := ParseHeaders(h, now)
		for d, w := range l {
			if w != (Window{}) && !w.Known() {
				t.Fatalf("%v: %+v returned but not known", Dim(d), w)
			}
		}
		if d, ok := hint.ParseReset(reset, now); ok != (d > 0) || d > MaxSaneWait {
			t.Fatalf("ParseReset(%q) = %v, %v", reset, d, ok)
		}

		// Unknown never yields a wait; known never waits past its reset.
		p := New[int](0)
		c := Cost{Requests: 1, Tokens: 1, InputTokens: 1, OutputTokens: 1}
		_, tk := p.Admit(0, c, now)
		tk.Observe(200, h, now)
		for range 3 {
			w, tk := p.Admit(0, c, now)
			if !l.Known() && w != 0 {
				t.Fatalf("unknown headers %v: wait %v", h, w)
			}
			var longest time.Duration
			for _, x := range l {
				longest = max(longest, x.Reset)
			}
			if w > longest {
				t.Fatalf("headers %v: wait %v past the longest reset %v", h, w, longest)
			}
			tk.Release()
		}
	})
}
