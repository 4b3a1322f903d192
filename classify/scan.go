package classify

import (
	"unicode/utf16"
	"unicode/utf8"

	"github.com/llmtransport/llmtransport/internal/wire"
)

// jsonMaxDepth is the deepest nesting jsonScanner follows; a deeper document
// ends the scan (error bodies are shallow).
const jsonMaxDepth = 24

// jsonKind is the kind of a value reported by jsonScanner.
type jsonKind uint8

const (
	jsonString  jsonKind = iota + 1 // raw is the text between the quotes, escapes not decoded
	jsonNumber                      // raw is the number as written
	jsonLiteral                     // true, false, null, or a bareword such as Python's None
	jsonObject                      // the start of an object
	jsonArray                       // the start of an array
	jsonPartial                     // a string cut off by the end of the input
)

// jsonSeg is one step of the path to a value: an object key (raw bytes,
// escapes not decoded) or, when key is nil, an array index.
type jsonSeg struct {
	key []byte
	idx int
}

// is reports whether s is the object key k.
func (s jsonSeg) is(k string) bool { return s.key != nil && string(s.key) == k }

// first reports whether s is the first element of an array.
func (s jsonSeg) first() bool { return s.key == nil && s.idx == 0 }

// jsonScanner is a small, tolerant, pull-style JSON tokenizer for error
// bodies. It reports every value with its path and never allocates. It
// stops quietly at the end of the first top-level value, at the end of the
// input (so truncated JSON yields everything before the cut, including a
// cut-off string), or at the first byte it does not understand. It also
// accepts single-quoted strings and barewords, as found in Python reprs
// that gateways embed in messages.
type jsonScanner struct {
	b     []byte
	i     int
	state uint8
	push  byte // container to open before the next token ('{' or '['), or 0
	depth int
	kinds [jsonMaxDepth]byte
	segs  [jsonMaxDepth]jsonSeg
	stop  bool
}

const (
	stValue uint8 = iota
	stValueOrEnd
	stKeyOrEnd
	stColon
	stAfter
)

func newJSONScanner(b []byte) jsonScanner { return jsonScanner{b: b} }

// path returns the path of the value last returned by next. It is valid
// until the next call to next.
func (s *jsonScanner) path() []jsonSeg { return s.segs[:s.depth] }

// next returns the next value in document order, or ok == false at the end.
func (s *jsonScanner) next() (kind jsonKind, raw []byte, ok bool) {
	if s.push != 0 {
		if s.depth == jsonMaxDepth {
			s.stop = true
			return 0, nil, false
		}
		s.kinds[s.depth] = s.push
		s.segs[s.depth] = jsonSeg{}
		s.depth++
		s.push = 0
	}
	for !s.stop {
		s.i = wire.SkipSpace(s.b, s.i)
		if s.i >= len(s.b) {
			break
		}
		c := s.b[s.i]
		switch s.state {
		case stValueOrEnd:
			if c == ']' {
				s.i++
				s.pop()
				continue
			}
			s.state = stValue
			continue
		case stValue:
			switch c {
			case '{':
				s.i++
				s.push, s.state = '{', stKeyOrEnd
				return jsonObject, nil, true
			case '[':
				s.i++
				s.push, s.state = '[', stValueOrEnd
				return jsonArray, nil, true
			case '"', '\'':
				raw, complete := s.str(c)
				s.state = stAfter
				if !complete {
					s.stop = true
					return jsonPartial, raw, true
				}
				return jsonString, raw, true
			}
			lit := s.literal()
			if len(lit) == 0 {
				s.stop = true
				break
			}
			s.state = stAfter
			if lit[0] == '-' || (lit[0] >= '0' && lit[0] <= '9') {
				return jsonNumber, lit, true
			}
			return jsonLiteral, lit, true
		case stKeyOrEnd:
			if c == '}' {
				s.i++
				s.pop()
				continue
			}
			if c != '"' && c != '\'' {
				s.stop = true
				break
			}
			key, complete := s.str(c)
			if !complete {
				s.stop = true
				break
			}
			s.segs[s.depth-1] = jsonSeg{key: key}
			s.state = stColon
		case stColon:
			if c != ':' {
				s.stop = true
				break
			}
			s.i++
			s.state = stValue
		case stAfter:
			if s.depth == 0 {
				s.stop = true // only the first top-level value
				break
			}
			top := s.kinds[s.depth-1]
			switch {
			case c == ',' && top == '{':
				s.i++
				s.state = stKeyOrEnd
			case c == ',' && top == '[':
				s.i++
				s.segs[s.depth-1].idx++
				s.state = stValue
			case c == '}' && top == '{', c == ']' && top == '[':
				s.i++
				s.pop()
			default:
				s.stop = true
			}
		}
	}
	s.stop = true
	return 0, nil, false
}

// done reports, once next has returned ok == false, whether the input held
// a whole top-level value: the scan ended after closing it, not at a cut or
// at a byte it did not understand inside it.
func (s *jsonScanner) done() bool { return s.depth == 0 && s.state == stAfter && s.push == 0 }

func (s *jsonScanner) pop() {
	s.depth--
	s.state = stAfter
}

// str scans a string quoted by q starting at s.i. It returns the raw text
// between the quotes and whether the closing quote was found; a string cut
// off by the end of the input returns everything up to the end.
func (s *jsonScanner) str(q byte) (raw []byte, complete bool) {
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			j++
		case q:
			s.i = j + 1
			return s.b[start:j], true
		}
	}
	s.i = len(s.b)
	if start > len(s.b) {
		start = len(s.b)
	}
	return s.b[start:], false
}

// literal scans a number or a bareword.
func (s *jsonScanner) literal() []byte {
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '+' || c == '.' || c == '_') {
			break
		}
		s.i++
	}
	return s.b[start:s.i]
}

// jsonText decodes the raw text of a string value into a new string (never
// sharing memory with raw). Invalid escapes are kept as written; invalid
// UTF-8 is replaced.
func jsonText(raw []byte) string {
	esc := false
	for _, c := range raw {
		if c == '\\' {
			esc = true
			break
		}
	}
	if !esc {
		if utf8.Valid(raw) {
			return string(raw)
		}
		return string(toValidUTF8(raw))
	}
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			out = append(out, c)
			continue
		}
		i++
		switch raw[i] {
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'u':
			r, n := hex4(raw[i+1:])
			if n == 0 {
				out = append(out, '\\', 'u')
				continue
			}
			i += n
			if utf16.IsSurrogate(r) {
				if i+2 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
					if r2, n2 := hex4(raw[i+3:]); n2 > 0 {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							r = d
							i += 2 + n2
						}
					}
				}
			}
			out = utf8.AppendRune(out, r)
		default: // \" \\ \/ \' and anything else: the character itself
			out = append(out, raw[i])
		}
	}
	if !utf8.Valid(out) {
		out = toValidUTF8(out)
	}
	return string(out)
}

// hex4 decodes four hex digits at the start of b.
func hex4(b []byte) (rune, int) {
	if len(b) < 4 {
		return 0, 0
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, 0
		}
	}
	return r, 4
}

// toValidUTF8 replaces invalid UTF-8 in b with U+FFFD, in a new slice.
func toValidUTF8(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	return out
}
