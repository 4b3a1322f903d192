package llmtransport

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// chunkSource is a response body that hands out its data in random-sized
// reads (including empty ones, and data together with the final EOF or
// error), as a network connection may. It counts what it handed out.
type chunkSource struct {
	data   []byte
	rng    *rand.Rand
	end    error // returned once data is used up: io.EOF or a failure
	given  int
	ends   []int // given after each non-empty read
	closed bool
}

func (s *chunkSource) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, s.end
	}
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	switch s.rng.IntN(8) {
	case 0:
		n = 0 // an empty read, which io.Reader allows
	case 1, 2, 3:
		n = 1 + s.rng.IntN(8)
	case 4, 5:
		n = 1 + s.rng.IntN(512)
	default:
		n = 1 + s.rng.IntN(len(p))
	}
	n = min(n, len(p), len(s.data))
	copy(p, s.data[:n])
	s.data = s.data[n:]
	s.given += n
	if n > 0 {
		s.ends = append(s.ends, s.given)
	}
	if len(s.data) == 0 && s.rng.IntN(2) == 0 {
		return n, s.end // the last bytes come with the end
	}
	return n, nil
}

func (s *chunkSource) Close() error {
	s.closed = true
	return nil
}

// firstEventEnd is an independent statement of what firstEventComplete
// decides, after the event stream format: it returns the length of the
// shortest prefix of b that holds the end of the first event that carries
// data (a data field that is not blank), or -1. A BOM at the start is
// dropped; a line ends at a CRLF, a LF or a CR, and is complete as soon as
// the first byte of its end is there.
func firstEventEnd(b []byte) int {
	start := 0
	if bytes.HasPrefix(b, []byte("\xef\xbb\xbf")) {
		start = 3
	}
	data, life := false, false
	for {
		i := bytes.IndexAny(b[start:], "\r\n")
		if i < 0 {
			return -1
		}
		line := string(b[start : start+i])
		end := start + i + 1
		start = end
		if b[end-1] == '\r' && end < len(b) && b[end] == '\n' {
			start++
		}
		if line == "" {
			if data && !life {
				return end
			}
			data, life = false, false
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case name == "data" && strings.TrimSpace(value) != "":
			data = true
			life = life || lifecycleData.MatchString(value[:min(len(value), headLen)])
		case name == "event":
			life = life || lifecycleNames[value]
		}
	}
}

// The events that carry no output, which the first event is not: by name,
// or by the type their data starts with.
var (
	lifecycleNames = map[string]bool{"response.created": true, "response.in_progress": true, "response.output_item.added": true,
		"response.content_part.added": true, "message_start": true, "ping": true, "content_block_start": true}
	lifecycleData = regexp.MustCompile(`^[ \t\r\n]*\{[ \t\r\n]*"type"[ \t\r\n]*:[ \t\r\n]*"(response\.created|response\.in_progress|response\.output_item\.added|response\.content_part\.added|message_start|ping|content_block_start)"`)
)

var errSourceFailed = errors.New("source failed")

// FuzzPeekSSE checks the peek of a body, whatever its bytes and however
// they are chunked: it never panics, reads at most maxPeek bytes, stops as
// soon as an event stream's first event is complete (and not before), and
// restore re-delivers exactly the bytes the source produced, followed by
// the source's own end (EOF or its error).
func FuzzPeekSSE(f *testing.F) {
	seeds := []string{
		"",
		"data: {}\n\n",
		"data: {}\r\n\r\n",
		": ping\n\n: ping\n\ndata: {\"choices\":[]}\n\ndata: [DONE]\n\n",
		"event: error\ndata: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
		"data: {\"error\":{\"message\":\"The server had an error\"}}\n\n",
		"\n\n\r\n:\n\ndata",
		"data: partial",
		"data: a\r\ndata: b\r\n\r",
		"data: a\rdata: b\r\r",
		"id: 1\nretry: 10\n\n",
		"retry: 3000\n\nid: 1\n\n: c\n\nevent: x\n\ndata: late\n\n",
		"data:\n\ndata: \t \n\ndata\n\ndata: x\n\n",
		"\xef\xbb\xbfdata: bom\n\n",
		"\xef\xbb\xbf: c\r\rdata: bom\r\r",
		"\xef\xbbdata: not a bom\n\ndata: x\n\n",
		"data: a\r\ndata: b\r\n\r\n",
		"data: a\r\r\n\ndata: b\n\n",
		": c\r\ndata: a\r",
		"{\"error\":{\"message\":\"in a 200\"}}",
		"{\"error\":{\"message\":\"not a stream\"}}",
		":" + strings.Repeat("x", maxPeek) + "\n\ndata: late\n\n",
		strings.Repeat(": keep-alive\n\n", maxPeek/14+10),
		strings.Repeat("a", maxPeek-2) + "\n\n",
		strings.Repeat("a", maxPeek-1) + "\n\n",
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint64(i), true, false)
		f.Add([]byte(s), uint64(i)*7919, i%2 == 0, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, stream, fail bool) {
		if got, want := firstEventComplete(data), firstEventEnd(data) >= 0; got != want {
			t.Fatalf("firstEventComplete(%q) = %v, want %v", data, got, want)
		}
		end := io.EOF
		if fail {
			end = errSourceFailed
		}
		src := &chunkSource{data: data, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), end: end}
		mode := peekBody
		if stream {
			mode = peekStream
		}
		var p peek
		p.read(src, mode)
		defer p.release()

		if src.given > maxPeek || p.n != src.given {
			t.Fatalf("peek holds %d bytes, source gave %d; want equal and at most %d", p.n, src.given, maxPeek)
		}
		got := p.bytes()
		if !bytes.Equal(got, data[:p.n]) {
			t.Fatalf("peek holds %q, want the source's first %d bytes", got, p.n)
		}
		// Where the peek must stop: at the end of the read that completed
		// an event stream's first event, else at the end of the data or
		// at maxPeek.
		want := min(len(data), maxPeek)
		if e := firstEventEnd(data); stream && e >= 0 && e <= maxPeek {
			for _, n := range src.ends {
				if n >= e {
					want = n
					break
				}
			}
		}
		if p.n != want {
			t.Fatalf("peek stopped after %d bytes, want %d (stream %v, reads end at %v)", p.n, want, stream, src.ends)
		}
		switch {
		case p.whole:
			if p.n != len(data) || fail {
				t.Fatalf("whole after %d of %d bytes (fail %v)", p.n, len(data), fail)
			}
		case p.err != nil:
			if !errors.Is(p.err, errSourceFailed) || p.n != len(data) {
				t.Fatalf("peek error %v after %d of %d bytes", p.err, p.n, len(data))
			}
		}

		resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: src}
		p.restore(resp)
		if p.buf != nil {
			t.Fatal("restore kept the pooled buffer")
		}
		all, err := io.ReadAll(resp.Body)
		if !bytes.Equal(all, data) {
			t.Fatalf("restored body is %q, want the source's %q", all, data)
		}
		if fail != (err != nil) || (fail && !errors.Is(err, errSourceFailed)) {
			t.Fatalf("restored body ended with %v, want the source's end (fail %v)", err, fail)
		}
		resp.Body.Close()
		if !src.closed {
			t.Fatal("closing the restored body did not close the source")
		}
	})
}

// dribble is a body that hands out one byte per read, as a server that
// writes one byte per packet makes a connection do.
type dribble struct{ s string }

func (d *dribble) Read(p []byte) (int, error) {
	if len(d.s) == 0 {
		return 0, io.EOF
	}
	p[0] = d.s[0]
	d.s = d.s[1:]
	return 1, nil
}

// BenchmarkPeekDribbledStream peeks an event stream of keep-alive comments
// that arrives one byte per read and never completes an event: the worst
// case for the search of the first event's end, which must stay linear in
// the bytes read (one op is one whole 64 KiB peek).
func BenchmarkPeekDribbledStream(b *testing.B) {
	data := strings.Repeat(":\n", maxPeek/2)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var p peek
		p.read(&dribble{data}, peekStream)
		p.release()
	}
}

// firstEventComplete reports whether b holds a whole SSE event that is not
// only comments, scanning it in one go.
func firstEventComplete(b []byte) bool {
	var sc eventScan
	return sc.complete(b)
}

// FuzzSSEFraming checks that the framing of an event stream does not depend
// on its line ends: the same lines, ended by LF, or by a random mix of LF,
// CR and CRLF (and behind a BOM or not), have their first event (that
// carries data) end after the same line, both in the reference and in the
// peek's scan however the bytes are split between reads, and Classify
// finds the same class in it.
func FuzzSSEFraming(f *testing.F) {
	for i, s := range []string{
		"data: {}\n\n",
		"retry: 3000\n\nid: 1\n\ndata: {\"choices\":[]}\n\n",
		": ping\n\nevent: error\ndata: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
		"data: a\ndata: b\n\n",
		"data\n\ndata:\n\ndata: x\n\n",
		": PING\n\n{\"error\":{\"message\":\"raw\",\"code\":\"do_request_failed\"}}",
		"event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
		"data: Number of choices must be greater than 0.\n\n",
	} {
		f.Add([]byte(s), uint64(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		lines := strings.Split(strings.ReplaceAll(string(data), "\r", ""), "\n")
		var lf, mixed strings.Builder
		if rng.IntN(4) == 0 {
			mixed.WriteString("\ufeff")
		}
		for i, l := range lines {
			lf.WriteString(l)
			mixed.WriteString(l)
			if i == len(lines)-1 {
				break
			}
			lf.WriteString("\n")
			end := []string{"\n", "\r", "\r\n"}[rng.IntN(3)]
			if end == "\n" && l == "" && strings.HasSuffix(mixed.String(), "\r") {
				end = "\r" // a CR, a blank line and a LF would be one CRLF
			}
			mixed.WriteString(end)
		}
		a, b := []byte(lf.String()), []byte(mixed.String())
		ea, eb := firstEventEnd(a), firstEventEnd(b)
		if (ea < 0) != (eb < 0) {
			t.Fatalf("first event ends at %d of %q but at %d of %q", ea, a, eb, b)
		}
		if ea >= 0 {
			na, nb := linesIn(a[:ea]), linesIn(b[:eb])
			if na != nb {
				t.Fatalf("first event ends after line %d of %q but after line %d of %q", na, a, nb, b)
			}
			a, b = a[:ea], b[:eb]
		}
		// The scan, fed in random pieces, completes exactly when the
		// reference says.
		var sc eventScan
		for n := 0; n < len(b); {
			n += 1 + rng.IntN(min(len(b)-n, 16))
			if got, want := sc.complete(b[:n]), eb >= 0 && n >= eb; got != want {
				t.Fatalf("scan of %q after %d bytes: complete %v, want %v", b, n, got, want)
			}
			if eb >= 0 && n >= eb {
				break
			}
		}
		if len(a) > maxPeek || len(b) > maxPeek {
			return
		}
		resp := response(200, "", "Content-Type", "text/event-stream")
		ca, cb := Classify(resp, a), Classify(resp, b)
		// A body that is JSON, not events, keeps its line ends inside
		// its strings: they differ between a and b, and nothing else may.
		if ca.Class != cb.Class || lineEnds.Replace(ca.Code) != lineEnds.Replace(cb.Code) || lineEnds.Replace(ca.Type) != lineEnds.Replace(cb.Type) {
			t.Fatalf("Classify finds %v/%q/%q in %q but %v/%q/%q in %q", ca.Class, ca.Code, ca.Type, a, cb.Class, cb.Code, cb.Type, b)
		}
	})
}

// linesIn counts the line ends in b: CRLF, LF, or CR alone.
func linesIn(b []byte) int {
	n := 0
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '\n':
			n++
		case b[i] == '\r':
			n++
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
		}
	}
	return n
}

// lineEnds makes every SSE line end an LF.
var lineEnds = strings.NewReplacer("\r\n", "\n", "\r", "\n")
