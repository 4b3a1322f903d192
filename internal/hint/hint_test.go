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
