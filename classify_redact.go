package llmtransport

import "strings"

// maxMessage bounds the length of Classification.Message.
const maxMessage = 4 << 10

// cleanMessage makes an error message safe to put in spans and logs: API
// keys quoted by gateways ("sk-…", "key=…", bearer tokens…) are masked by
// redactSecrets, the one place that knows what a secret looks like, and
// the length is bounded.
func cleanMessage(msg string) string {
	msg = redactSecrets(msg)
	if len(msg) > maxMessage {
		cut := maxMessage
		for cut > 0 && msg[cut]&0xC0 == 0x80 {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return strings.TrimSpace(msg)
}
