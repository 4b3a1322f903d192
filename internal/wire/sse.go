package wire

import "bytes"

// Event-stream framing, as the event stream format defines it: lines end
// at a CRLF, a LF or a CR alone; a line is a field name, a colon and a
// value, or a comment. The transport's peek and stream watch and the
// classifier's walk of a whole stream all cut lines and fields here.

// LineEnd returns the index of the first CR or LF in b, or -1.
func LineEnd(b []byte) int {
	for i, c := range b {
		if c == '\n' || c == '\r' {
			return i
		}
	}
	return -1
}

// Line returns the line of a whole event stream b that starts at pos,
// without its end (CRLF, LF or CR), and where the next line starts. The
// last line may have no end.
func Line(b []byte, pos int) (line []byte, next int) {
	i := LineEnd(b[pos:])
	if i < 0 {
		return b[pos:], len(b)
	}
	end := pos + i
	next = end + 1
	if b[end] == '\r' && next < len(b) && b[next] == '\n' {
		next++
	}
	return b[pos:end], next
}

// Field splits a line that is not blank into its field name and value, as
// the event stream format does: a comment (a line starting with a colon)
// has no name; a line without a colon is a name with an empty value; one
// space after the colon is not part of the value.
func Field(line []byte) (name, value []byte) {
	if len(line) > 0 && line[0] == ':' {
		return nil, nil
	}
	name, value, _ = bytes.Cut(line, []byte{':'})
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	return name, value
}
