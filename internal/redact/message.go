package redact

import "strings"

// MaxMessage bounds the length of a message cleaned by Message.
const MaxMessage = 4 << 10

// Message makes an error message safe to put in spans and logs: API keys
// quoted by gateways ("sk-…", "key=…", bearer tokens…) are masked by
// Secrets, the length is bounded to MaxMessage bytes (cut at a rune
// boundary, "…" appended), and surrounding space is trimmed.
func Message(msg string) string {
	msg = Secrets(msg)
	if len(msg) > MaxMessage {
		cut := MaxMessage
		for cut > 0 && msg[cut]&0xC0 == 0x80 {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return strings.TrimSpace(msg)
}
