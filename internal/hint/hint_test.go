package hint

import (
	"testing"
	"time"
)

// TestParseReset: every form a reset or wait value takes, and the junk that
// is no wait.
func TestParseReset(t *testing.T) {
	now := time.Date(2026, 10, 21, 7, 27, 30, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"6m0s", 6 * time.Minute, true},
		{"20ms", 20 * time.Millisecond, true},
		{"1s", time.Second, true},
		{"1m0.363142857s", 60363142857, true},
		{"47.174066935s", 47174066935, true},
		{"1", time.Second, true},
		{"0.25", 250 * time.Millisecond, true},
		{"1792567680000", 30 * time.Second, true}, // Unix ms: 07:28:00
		{"1792567680", 30 * time.Second, true},    // Unix s
		{"2026-10-21T07:28:00Z", 30 * time.Second, true},
		{"99999999999s", MaxSaneWait, true},
		{"1e3", 1000 * time.Second, true},
		{"1e300", MaxSaneWait, true},
		{"1e309", 0, false},
		{"1e-12", 0, false},
		{"+1s", time.Second, true},
		{"+5", 5 * time.Second, true},
		{"99999999999", MaxSaneWait, true}, // Unix seconds in the year 5138
		{"", 0, false},
		{"0", 0, false},
		{"0s", 0, false},
		{"-1", 0, false},
		{"-1s", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"soon", 0, false},
		{"1792567000000", 0, false}, // in the past
		{"2026-10-21T07:27:00Z", 0, false},
		{"1.2.3", 0, false},
	}
	for _, c := range cases {
		got, ok := ParseReset(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseReset(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	if d, ok := ParseMillis("1500"); d != 1500*time.Millisecond || !ok {
		t.Errorf("ParseMillis(1500) = %v, %v", d, ok)
	}
}

// shortDuration reads what it reads as time.ParseDuration does, and
// ParseDuration answers the same with it as without.
func TestShortDuration(t *testing.T) {
	for _, s := range []string{"1s", "6ms", "20ms", "0s", "0ms", "007ms", "999999999s", "999999999ms",
		"1000000000s", "1234567890ms", "s", "ms", "1m", "1m0s", "1.5s", "-1s", "+1s", "1 s", "1sx", "1mss", "1µs", "1ns", "60s"} {
		d, ok := shortDuration(s)
		if !ok {
			continue
		}
		if want, err := time.ParseDuration(s); err != nil || d != want {
			t.Errorf("shortDuration(%q) = %v, time.ParseDuration: %v %v", s, d, want, err)
		}
		if len(s) > 11 {
			t.Errorf("shortDuration(%q) took a value of more than 9 digits", s)
		}
	}
	for _, s := range []string{"1000000000s", "1234567890ms", "1.5s", "1m"} {
		if _, ok := shortDuration(s); ok {
			t.Errorf("shortDuration(%q) is ok", s)
		}
	}
}
