package redact

import (
	"strings"
	"unicode/utf8"
)

// MaxMessage bounds the length of a message cleaned by Message.
const MaxMessage = 4 << 10

// Message makes an error message safe to put in spans and logs: API keys
// quoted by gateways ("sk-…", "key=…", bearer tokens…) are masked by
// Secrets, the length is bounded to MaxMessage bytes (cut at a rune
// boundary, "…" appended), and surrounding space is trimmed.
func Message(msg string) string {
	return strings.TrimSpace(Truncate(Secrets(msg), MaxMessage))
}

// Truncate returns s cut to at most n bytes at a rune boundary, with "…"
// appended when it was cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
