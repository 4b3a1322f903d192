package llmtransport

import "strings"

// maxMessage bounds the length of Classification.Message.
const maxMessage = 4 << 10

// cleanMessage makes an error message safe to put in spans and logs: API
// keys quoted by gateways ("sk-…", "key=…", "api_key=…") are masked and the
// length is bounded.
func cleanMessage(msg string) string {
	msg = maskAfter(msg, "sk-", 8)
	msg = maskAfter(msg, "key=", 1)
	if len(msg) > maxMessage {
		cut := maxMessage
		for cut > 0 && msg[cut]&0xC0 == 0x80 {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return strings.TrimSpace(msg)
}

// maskAfter replaces the secret token that follows each occurrence of
// marker (when it is at least min characters long) with "***".
func maskAfter(msg, marker string, min int) string {
	if !strings.Contains(msg, marker) {
		return msg
	}
	var b strings.Builder
	for {
		i := strings.Index(msg, marker)
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		j := i + len(marker)
		k := j
		for k < len(msg) && isKeyByte(msg[k]) {
			k++
		}
		b.WriteString(msg[:j])
		if k-j >= min && (marker != "sk-" || i == 0 || !isAlnum(msg[i-1])) {
			b.WriteString("***")
		} else {
			b.WriteString(msg[j:k])
		}
		msg = msg[k:]
	}
}

func isKeyByte(c byte) bool { return isAlnum(c) || c == '-' || c == '_' || c == '*' || c == '.' }
