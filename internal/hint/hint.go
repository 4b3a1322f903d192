// Package hint parses the values that servers state waits and counts in:
// Retry-After and its kin, the x-ratelimit-reset-* and remaining headers,
// durations in error bodies. The classifier (wait hints) and the pacer
// (rate-limit windows) read them by the same rules.
package hint

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// MaxSaneWait bounds wait hints: a longer one (Retry-After: 99999999999, a
// reset in the year 3000) is taken as this long, which is above any cap a
// caller sets and below what a time.Duration holds. Values ≤ 0, -1
// placeholders, NaN and infinities are junk and ignored. Real hints reach a
// day (Azure's "retry after 86400 seconds").
const MaxSaneWait = 31 * 24 * time.Hour

// ParseCount parses a count of a rate-limit header: a non-negative decimal
// integer, optionally surrounded by spaces. "-1", "", "1e3", "12.5" and
// numbers of more than 18 digits are not counts.
func ParseCount(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// ParseReset parses the value of an x-ratelimit-reset-* header as the time
// until the window is whole again: an integer above 10¹¹ is a Unix time in
// milliseconds and one above 10⁹ a Unix time in seconds (both taken
// relative to now, which should be the server's clock, the response's
// Date), another integer a number of seconds; an RFC 3339 time is taken
// relative to now too; anything else is read by [ParseDuration] ("6m0s",
// "20ms", "1s", "7.66s", "0.5"). ok is false for values ≤ 0, "-1"
// placeholders and junk; a wait past [MaxSaneWait] is taken as
// MaxSaneWait.
func ParseReset(s string, now time.Time) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	if n, ok := parseInt(s); ok {
		switch {
		case n > 1e11:
			return SaneWait(time.UnixMilli(n).Sub(now))
		case n > 1e9:
			return SaneWait(time.Unix(n, 0).Sub(now))
		}
		return SecondsWait(float64(n))
	}
	if len(s) >= len("2006-01-02T15:04:05Z") && s[4] == '-' && s[10] == 'T' {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return 0, false
		}
		return SaneWait(t.Sub(now))
	}
	return ParseDuration(s)
}

// parseInt parses an optionally signed decimal integer of at most 18
// digits, without allocating on failure as strconv does.
func parseInt(s string) (int64, bool) {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	n, ok := ParseCount(s)
	if !ok || s != strings.TrimSpace(s) {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// ParseDuration parses a Go duration ("6m0s", "12ms", "+1.5s"), a protobuf
// duration ("47.174066935s", also past what a Go duration holds) or a bare
// number of seconds ("2", "0.75", "1e3"), as a usable wait: ok is false for
// values ≤ 0, NaN, infinities and junk, and a wait past [MaxSaneWait] is
// taken as MaxSaneWait.
func ParseDuration(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	if d, ok := shortDuration(s); ok {
		return SaneWait(d)
	}
	if isFloat(s) {
		return ParseSeconds(s) // what time.ParseDuration refuses, without its error
	}
	if d, err := time.ParseDuration(s); err == nil {
		return SaneWait(d)
	}
	// A protobuf duration too large for time.ParseDuration ("99999999999s").
	if t, ok := strings.CutSuffix(s, "s"); ok && isFloat(t) {
		return ParseSeconds(t)
	}
	return 0, false
}

// shortDuration parses the commonest resets, a whole number of seconds or
// milliseconds of at most 9 digits ("1s", "6ms", "20ms"), as
// time.ParseDuration would, in a few steps; ok is false for any other form.
func shortDuration(s string) (time.Duration, bool) {
	var n int64
	i := 0
	for ; i < len(s) && i < 10 && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int64(s[i]-'0')
	}
	if i == 0 || i > 9 {
		return 0, false
	}
	switch s[i:] {
	case "s":
		return time.Duration(n) * time.Second, true
	case "ms":
		return time.Duration(n) * time.Millisecond, true
	}
	return 0, false
}

// ParseSeconds parses a (possibly fractional) number of seconds as a usable
// wait (see [ParseDuration]).
func ParseSeconds(s string) (time.Duration, bool) { return parseScaled(s, 1) }

// ParseMillis parses a (possibly fractional) number of milliseconds as a
// usable wait (see [ParseDuration]).
func ParseMillis(s string) (time.Duration, bool) { return parseScaled(s, 1000) }

func parseScaled(s string, per float64) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if !isFloat(s) {
		return 0, false // NaN and Inf are junk anyway; this spares strconv's error
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false // syntax, or out of range ("1e309", "1e-400")
	}
	return SecondsWait(f / per)
}

// isFloat reports whether s is made only of the bytes of a decimal
// floating-point number (digits, '.', 'e', 'E', '+', '-'), with a digit.
func isFloat(s string) bool {
	digit := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digit = true
		case c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-':
		default:
			return false
		}
	}
	return digit
}

// SecondsWait converts a number of seconds to a usable wait.
func SecondsWait(f float64) (time.Duration, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return 0, false
	}
	if f > MaxSaneWait.Seconds() {
		return MaxSaneWait, true
	}
	return SaneWait(time.Duration(f * float64(time.Second)))
}

// SaneWait reports whether d is a usable wait (above 0), capped at
// MaxSaneWait.
func SaneWait(d time.Duration) (time.Duration, bool) {
	if d <= 0 {
		return 0, false
	}
	return min(d, MaxSaneWait), true
}
