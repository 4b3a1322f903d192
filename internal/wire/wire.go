// Package wire holds the pieces of reading a response body that the
// transport (package llmtransport) and package classify share, so that
// each is said once: the bounded peek buffer, content decoding of an error
// body, the event stream's line and field framing, and the byte-level
// helpers both parsers use. It is plumbing, not an API: nothing here is
// meant for users of either package.
package wire

import (
	"strings"
	"sync"
)

// MaxPeek is how many bytes of a body the classifier looks at, and how many
// the transport reads before classifying: classify.MaxPeek, which checks
// at compile time that the two agree.
const MaxPeek = 64 << 10

// Pool holds MaxPeek-byte buffers (*[]byte): the transport's peeks and
// Decode's output.
var Pool = &sync.Pool{New: func() any { b := make([]byte, MaxPeek); return &b }}

// BOM is the UTF-8 byte order mark.
const BOM = "\ufeff"

// HasPrefixFold reports whether s starts with prefix, ignoring ASCII case.
func HasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// SkipSpace returns the index of the first byte of b at or after i that is
// not JSON whitespace, or len(b).
func SkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
