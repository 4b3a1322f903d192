package reqmodel

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// headModel returns the model of a body whose first member is "model" with
// a string value without escapes, as most bodies are written: a few
// comparisons instead of the scanner. ok is false when b, the start of a
// body, is not of that shape, and the scanner must decide.
func headModel(b []byte) (model string, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return "", false
	}
	i = skipSpace(b, i+1)
	if !bytes.HasPrefix(b[i:], []byte(`"model"`)) {
		return "", false
	}
	i = skipSpace(b, i+len(`"model"`))
	if i >= len(b) || b[i] != ':' {
		return "", false
	}
	i = skipSpace(b, i+1)
	if i >= len(b) || b[i] != '"' {
		return "", false
	}
	v := b[i+1:]
	j := bytes.IndexByte(v[:min(len(v), maxModelLen+1)], '"')
	if j < 0 || bytes.IndexByte(v[:j], '\\') >= 0 {
		return "", false
	}
	return internModel(v[:j]), true
}

// errScanDone stops a reader writing to a modelScanner that has its answer.
var errScanDone = errors.New("llmtransport: model scan done")

// The states of a modelScanner.
const (
	msStart      uint8 = iota // before the top-level '{'
	msKey                     // expecting a key or the closing '}'
	msKeyStr                  // inside a key
	msColon                   // expecting ':'
	msValue                   // expecting a value
	msModelStr                // inside the top-level "model" string
	msSkipStr                 // inside a string value being skipped
	msSkipNest                // inside an object or array being skipped
	msSkipScalar              // inside a number, true, false or null
	msAfter                   // expecting ',' or the closing '}'
	msDone
)

// modelScanner finds the top-level "model" string of a JSON object fed to it
// in pieces of any size. It keeps only the bytes of the current top-level
// key or of the model string; everything else is skipped, strings with
// bytes.IndexByte. It never fails: on input that is not a JSON object it
// stops and finds nothing.
type modelScanner struct {
	state   uint8
	isModel bool  // the current top-level key is "model"
	odd     bool  // the last string byte seen escapes the next one
	inStr   bool  // msSkipNest: inside a string
	depth   int   // msSkipNest: nesting depth
	seen    int64 // bytes fed so far

	// raw holds the current key or the model string as written, without
	// its quotes; n is its length, long that it did not fit.
	raw  [maxModelRaw]byte
	n    int
	long bool

	size  int64 // the body's length, when known
	model string
	buf   [modelReadBuf]byte

	num numScan // what WithParams needs: see params.go
}

// reset readies s for a new body.
func (s *modelScanner) reset() {
	s.state, s.isModel, s.odd, s.inStr, s.depth, s.seen = msStart, false, false, false, 0, 0
	s.n, s.long, s.model, s.size = 0, false, "", 0
	s.num = numScan{}
}

// Limits of scanWhole.
const (
	// wholeHead is how much of a body is scanned forward before its tail
	// is looked at.
	wholeHead = 256
	// tailBudget is how far back from the end of a body its tail is
	// looked at.
	tailBudget = 4 << 10
)

// scanWhole scans b, a whole body. SDKs write "model" either first or after
// the messages (openai-go does), so rather than skipping through megabytes
// of messages it scans the head forward, then the tail backward, and only
// then the rest forward.
func (s *modelScanner) scanWhole(b []byte) {
	if s.num.collect {
		s.feed(b) // the numbers may be anywhere: the whole top level
		return
	}
	head := min(len(b), wholeHead)
	if s.feed(b[:head]) || head == len(b) {
		return
	}
	if m, ok := tailModel(b, tailBudget); ok {
		s.stop(m)
		return
	}
	s.feed(b[head:])
}

// result returns the model found, "" for none.
func (s *modelScanner) result() string { return s.model }

// Write implements [io.Writer] for [io.WriterTo] bodies. It returns
// errScanDone once the answer is known.
func (s *modelScanner) Write(p []byte) (int, error) {
	if s.seen == 0 && s.size > 0 && int64(len(p)) == s.size {
		// The whole body at once, as bytes.Reader and strings.Reader
		// write it.
		s.scanWhole(p)
		return len(p), errScanDone
	}
	if s.feed(p) {
		return len(p), errScanDone
	}
	return len(p), nil
}

// ReadFrom implements [io.ReaderFrom]: it reads r through the scanner's own
// buffer until the answer is known or r ends.
func (s *modelScanner) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		n, err := r.Read(s.buf[:])
		total += int64(n)
		if n > 0 && s.feed(s.buf[:n]) {
			return total, nil
		}
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return total, err
		}
	}
}

// stop ends the scan with model m and reports true.
func (s *modelScanner) stop(m string) bool {
	s.state = msDone
	if !s.num.modelSet {
		s.model = m
	}
	return true
}

// feed scans p, the next bytes of the body. It reports whether the scan is
// over (the model found, or known to be absent).
func (s *modelScanner) feed(p []byte) bool {
	if s.state == msDone {
		return true
	}
	s.seen += int64(len(p))
	if s.seen > maxModelScan {
		return s.stop("")
	}
	i := 0
	for {
		if spaceAllowed[s.state] {
			i = skipSpace(p, i)
		}
		if i >= len(p) {
			return false
		}
		switch s.state {
		case msStart:
			if p[i] != '{' {
				return s.stop("")
			}
			i++
			s.state = msKey
		case msKey:
			if p[i] != '"' {
				return s.stop("") // '}' or not JSON
			}
			i++
			s.n, s.long, s.odd = 0, false, false
			s.state = msKeyStr
		case msKeyStr:
			var end bool
			if i, end = s.readRaw(p, i); end {
				s.isModel = s.rawIs("model")
				if s.num.collect {
					s.keyParam()
				}
				s.state = msColon
			}
		case msColon:
			if p[i] != ':' {
				return s.stop("")
			}
			i++
			s.state = msValue
		case msValue:
			c := p[i]
			if s.num.collect && s.isModel && (s.num.modelSet || c != '"') {
				// A second "model", or one not a string: skipped.
				s.isModel, s.num.modelSet = false, true
			}
			i++
			switch {
			case s.isModel:
				if c != '"' {
					return s.stop("") // "model" is not a string
				}
				s.n, s.long, s.odd = 0, false, false
				s.state = msModelStr
			case c == '"':
				s.odd = false
				s.state = msSkipStr
			case c == '{' || c == '[':
				s.depth, s.inStr = 1, false
				s.state = msSkipNest
			default:
				s.state = msSkipScalar
				if s.num.key != 0 {
					s.num.digits(p[i-1 : i])
				}
			}
		case msModelStr:
			var end bool
			if i, end = s.readRaw(p, i); end {
				if s.num.collect {
					// Go on to the numbers after it.
					s.model, s.num.modelSet = s.rawModel(), true
					s.state = msAfter
					continue
				}
				return s.stop(s.rawString())
			}
		case msSkipStr:
			var end bool
			if i, end = s.skipString(p, i); end {
				s.state = msAfter
			}
		case msSkipNest:
			i = s.skipNest(p, i)
		case msSkipScalar:
			j := i
			for i < len(p) && !scalarEnd[p[i]] {
				i++
			}
			if s.num.key != 0 {
				s.num.digits(p[j:i])
			}
			if i < len(p) {
				if s.num.key != 0 {
					s.num.end()
				}
				s.state = msAfter
			}
		case msAfter:
			if p[i] != ',' {
				return s.stop("") // '}': no top-level "model"
			}
			i++
			s.state = msKey
		}
	}
}

// spaceAllowed marks the states in which white space is skipped.
var spaceAllowed = [msDone + 1]bool{msStart: true, msKey: true, msColon: true, msValue: true, msAfter: true}

// isSpace reports whether c is JSON white space.
func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// skipSpace returns the index of the first byte of p at or after i that is
// not JSON white space, or len(p).
func skipSpace(p []byte, i int) int {
	for i < len(p) && isSpace(p[i]) {
		i++
	}
	return i
}

// scalarEnd marks the bytes that end a number, true, false or null.
var scalarEnd = [256]bool{',': true, '}': true, ']': true, ' ': true, '\n': true, '\r': true, '\t': true, '"': true, '{': true, '[': true}

// structural marks the bytes msSkipNest stops at.
var structural = [256]bool{'"': true, '{': true, '}': true, '[': true, ']': true}

// stringEnd returns the index of the quote that ends the string whose bytes
// start at p[i], or -1 if p ends first. s.odd carries, across calls, that
// the last byte seen was a backslash escaping the next one.
func (s *modelScanner) stringEnd(p []byte, i int) int {
	if s.odd {
		if i >= len(p) {
			return -1
		}
		s.odd = false
		i++
	}
	// Most strings in a request are short: a plain loop beats the setup of
	// bytes.IndexByte for them.
	for end := min(i+32, len(p)); i < end; i++ {
		switch p[i] {
		case '"':
			return i
		case '\\':
			i++
		}
	}
	if i >= len(p) {
		s.odd = i > len(p) // the last byte was an escaping backslash
		return -1
	}
	for {
		j := bytes.IndexByte(p[i:], '"')
		if j < 0 {
			s.odd = oddRun(p, i, len(p))
			return -1
		}
		q := i + j
		if !oddRun(p, i, q) {
			return q
		}
		i = q + 1 // an escaped quote: the string goes on
	}
}

// oddRun reports whether the run of backslashes that ends at p[end-1],
// going back no further than p[from], is of odd length. p[from] is not
// escaped.
func oddRun(p []byte, from, end int) bool {
	k := end
	for k > from && p[k-1] == '\\' {
		k--
	}
	return (end-k)&1 == 1
}

// skipString skips string bytes from p[i]; it reports whether the string
// ended, and returns the index after its closing quote.
func (s *modelScanner) skipString(p []byte, i int) (int, bool) {
	q := s.stringEnd(p, i)
	if q < 0 {
		return len(p), false
	}
	return q + 1, true
}

// readRaw is skipString that also keeps the bytes in s.raw.
func (s *modelScanner) readRaw(p []byte, i int) (int, bool) {
	q := s.stringEnd(p, i)
	end := q
	if q < 0 {
		end = len(p)
	}
	if seg := p[i:end]; !s.long {
		if s.n+len(seg) > len(s.raw) {
			s.long = true
		} else {
			s.n += copy(s.raw[s.n:], seg)
		}
	}
	if q < 0 {
		return len(p), false
	}
	return q + 1, true
}

// skipNest skips the inside of an object or array from p[i], leaving
// msSkipNest once its closing bracket is passed.
func (s *modelScanner) skipNest(p []byte, i int) int {
	for i < len(p) {
		if s.inStr {
			var end bool
			if i, end = s.skipString(p, i); !end {
				return i
			}
			s.inStr = false
			continue
		}
		for i < len(p) && !structural[p[i]] {
			i++
		}
		if i == len(p) {
			return i
		}
		switch p[i] {
		case '"':
			s.inStr = true
		case '{', '[':
			s.depth++
		default:
			if s.depth--; s.depth == 0 {
				s.state = msAfter
				return i + 1
			}
		}
		i++
	}
	return i
}

// tailModel looks for the top-level "model" of the JSON object b by walking
// its members backward from its end, over at most budget bytes. It reports
// false when it cannot tell: the budget ran out or b is not a JSON object.
// It relies on JSON being readable backward: a quote ends or starts a string
// exactly when an even run of backslashes precedes it.
func tailModel(b []byte, budget int) (string, bool) {
	stop := max(len(b)-budget, 0)
	i := skipSpaceBack(b, len(b)-1, stop)
	if i < stop || b[i] != '}' {
		return "", false
	}
	for i--; ; i-- {
		// b[i] ends a member's value (or is the '{' of an empty object).
		if i = skipSpaceBack(b, i, stop); i < stop {
			return "", false
		}
		var valStart int
		isString := false
		switch b[i] {
		case '{':
			return "", i == 0 || skipSpaceBack(b, i-1, 0) < 0 // no "model"
		case '"':
			valStart, isString = prevQuote(b, i, stop), true
		case '}', ']':
			valStart = skipNestBack(b, i, stop)
		default:
			valStart = i
			for valStart > stop && !scalarEnd[b[valStart-1]] && b[valStart-1] != ':' {
				valStart--
			}
		}
		if valStart < stop {
			return "", false
		}
		valEnd := i
		// The colon and the key before the value.
		if i = skipSpaceBack(b, valStart-1, stop); i < stop || b[i] != ':' {
			return "", false
		}
		if i = skipSpaceBack(b, i-1, stop); i < stop || b[i] != '"' {
			return "", false
		}
		keyEnd := i
		keyStart := prevQuote(b, keyEnd, stop)
		if keyStart < stop {
			return "", false
		}
		if quotedIs(b[keyStart:keyEnd+1], "model") {
			if !isString {
				return "", true
			}
			return unquoteModel(b[valStart : valEnd+1]), true
		}
		if i = skipSpaceBack(b, keyStart-1, stop); i < stop {
			return "", false
		}
		switch b[i] {
		case ',':
		case '{':
			return "", i == 0 || skipSpaceBack(b, i-1, 0) < 0
		default:
			return "", false
		}
	}
}

// skipSpaceBack returns the index of the last byte of b[:i+1] that is not
// white space, or stop-1 if there is none at or after stop.
func skipSpaceBack(b []byte, i, stop int) int {
	for i >= stop && isSpace(b[i]) {
		i--
	}
	return max(i, stop-1)
}

// prevQuote returns the index of the quote that opens the string whose
// closing quote is b[end], or stop-1 if it is not at or after stop.
func prevQuote(b []byte, end, stop int) int {
	for j := end - 1; j >= stop; j-- {
		if b[j] != '"' {
			continue
		}
		k := j
		for k > stop && b[k-1] == '\\' {
			k--
		}
		if k == stop && stop > 0 && b[stop-1] == '\\' {
			return stop - 1 // the run of backslashes goes on before stop
		}
		if (j-k)&1 == 0 {
			return j
		}
	}
	return stop - 1
}

// skipNestBack returns the index of the bracket that opens the object or
// array whose closing bracket is b[end], or stop-1 if it is not at or after
// stop.
func skipNestBack(b []byte, end, stop int) int {
	depth := 0
	for j := end; j >= stop; j-- {
		switch b[j] {
		case '"':
			if j = prevQuote(b, j, stop); j < stop {
				return stop - 1
			}
		case '}', ']':
			depth++
		case '{', '[':
			if depth--; depth == 0 {
				return j
			}
		}
	}
	return stop - 1
}

// quotedIs reports whether the JSON string q (with its quotes) is k.
func quotedIs(q []byte, k string) bool {
	if len(q) < 2 || len(q) > maxModelRaw {
		return false
	}
	if bytes.IndexByte(q, '\\') < 0 {
		return string(q[1:len(q)-1]) == k
	}
	return unquoteModel(q) == k
}

// unquoteModel returns the JSON string q (with its quotes) decoded, or "" if
// it is malformed or longer than maxModelLen.
func unquoteModel(q []byte) string {
	if len(q) < 2 || len(q) > maxModelRaw+2 {
		return ""
	}
	var m string
	if bytes.IndexByte(q, '\\') < 0 {
		m = string(q[1 : len(q)-1])
	} else {
		m = unescapeJSON(q)
	}
	if len(m) > maxModelLen {
		return ""
	}
	return m
}

// rawIs reports whether the key in s.raw, unescaped, is k.
func (s *modelScanner) rawIs(k string) bool {
	if s.long {
		return false
	}
	raw := s.raw[:s.n]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == k
	}
	return s.unescape() == k
}

// rawString returns the string in s.raw, unescaped, or "" if it is too
// long or malformed.
func (s *modelScanner) rawString() string {
	if s.long {
		return ""
	}
	raw := s.raw[:s.n]
	var m string
	if bytes.IndexByte(raw, '\\') < 0 {
		m = string(raw)
	} else {
		m = s.unescape()
	}
	if len(m) > maxModelLen {
		return ""
	}
	return m
}

// unescape decodes the JSON escapes of s.raw.
func (s *modelScanner) unescape() string {
	q := make([]byte, 0, s.n+2)
	q = append(q, '"')
	q = append(q, s.raw[:s.n]...)
	q = append(q, '"')
	return unescapeJSON(q)
}

// unescapeJSON decodes the JSON string q (with its quotes), or returns ""
// if it is malformed. Escapes are rare in keys and model names, so this
// need not be fast.
func unescapeJSON(q []byte) string {
	var m string
	if json.Unmarshal(q, &m) != nil {
		return ""
	}
	return m
}
