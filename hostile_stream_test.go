package llmtransport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestHostileStreamWithoutFirstEvent: a 200 event stream that sends only
// keep-alive comments and then stalls. The peek waits for a first event, so
// the call is bounded by the request's deadline: the caller gets the
// response (its comments, then the deadline error) when the deadline
// passes, not later.
func TestHostileStreamWithoutFirstEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{respond: func(_ int, req *http.Request) (*http.Response, error) {
			r := response(200, "", "Content-Type", "text/event-stream")
			r.ContentLength = -1
			r.Body = io.NopCloser(io.MultiReader(strings.NewReader(": ping\n\n: ping\n\ndata: {\"cho"), ctxReader{req.Context()}))
			return r, nil
		}}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		start := time.Now()
		resp, err := New(f, WithoutCircuitBreaker()).RoundTrip(newChatRequest(t, ctx, "http://gw.test/v1/chat/completions"))
		if elapsed := time.Since(start); elapsed != 30*time.Second {
			t.Fatalf("the call ended after %v, want at the 30s deadline", elapsed)
		}
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want the deadline", err)
			}
			return
		}
		got, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !errors.Is(rerr, context.DeadlineExceeded) || string(got) != ": ping\n\n: ping\n\ndata: {\"cho" {
			t.Fatalf("read %q (%v), want the comments then the deadline", got, rerr)
		}
	})
}

// ctxReader blocks until ctx is done, then fails with its error.
type ctxReader struct{ ctx context.Context }

func (r ctxReader) Read([]byte) (int, error) {
	<-r.ctx.Done()
	return 0, r.ctx.Err()
}

// countWriter counts what is written to it and keeps the last two bytes.
type countWriter struct {
	n    int64
	tail [2]byte
}

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	for _, b := range p[max(0, len(p)-2):] {
		w.tail[0], w.tail[1] = w.tail[1], b
	}
	return len(p), nil
}

// TestHostileHugeFirstEvent: a 200 event stream whose first event is one
// 100 MB data line. The peek gives up looking for its end at 64 KiB, the
// stream goes to the caller as it is, and memory stays bounded.
func TestHostileHugeFirstEvent(t *testing.T) {
	checkLeaks(t)
	const size = 100 << 20
	line := bytes.Repeat([]byte("x"), 32<<10)
	srv, ct, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: ")
		for sent := 0; sent < size; sent += len(line) {
			if _, err := w.Write(line); err != nil {
				return
			}
		}
		io.WriteString(w, "\n\n")
	})
	tr := New(base, fastRetries()...)
	var resp *http.Response
	var err error
	alloc := allocated(func() {
		resp, err = tr.RoundTrip(newChatRequest(t, t.Context(), srv.URL))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	w := &countWriter{}
	if _, err := io.Copy(w, resp.Body); err != nil {
		t.Fatal(err)
	}
	if want := int64(len("data: ") + size + 2); w.n != want || w.tail != [2]byte{'\n', '\n'} {
		t.Fatalf("caller read %d bytes ending %q, want %d ending \"\\n\\n\"", w.n, w.tail[:], want)
	}
	if alloc > 4<<20 {
		t.Fatalf("allocated %d KiB in RoundTrip, want under 4 MiB", alloc>>10)
	}
	resp.Body.Close()
	tr.CloseIdleConnections()
	ct.waitClosed(t)
}

// TestHostileOddStatus: status codes outside the ones LLM APIs use, and a
// close-delimited HTTP/1.0 error body. The caller gets the response as the
// server sent it; attempts stay within the policy.
func TestHostileOddStatus(t *testing.T) {
	tests := []struct {
		name   string
		reply  string
		status int
		body   string
	}{
		{"status 999", "HTTP/1.1 999 Whatever\r\nContent-Length: 2\r\n\r\n{}", 999, "{}"},
		{"status 600", "HTTP/1.1 600 \r\nContent-Length: 2\r\n\r\n{}", 600, "{}"},
		{"no reason phrase", "HTTP/1.1 503\r\nContent-Length: 4\r\n\r\nbusy", 503, "busy"},
		{"HTTP/1.0 close-delimited 500", "HTTP/1.0 500 Internal Server Error\r\nContent-Type: text/html\r\n\r\n<html>oops</html>", 500, "<html>oops</html>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			s := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
				if s.readRequest(br) {
					io.WriteString(c, tt.reply)
				}
			})
			base := &http.Transport{}
			defer base.CloseIdleConnections()
			resp, err := New(base, fastRetries()...).RoundTrip(newChatRequest(t, t.Context(), s.url()))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != tt.status || string(got) != tt.body {
				t.Fatalf("got %d %q (%v), want %d %q", resp.StatusCode, got, err, tt.status, tt.body)
			}
			if n := s.requestCount(); n < 1 || n > 1+DefaultMaxRetries {
				t.Fatalf("server got %d attempts, want 1 to %d", n, 1+DefaultMaxRetries)
			}
		})
	}
}

// TestHostileLongFirstLine: a healthy stream whose first event is one data
// line longer than the peek (plain text, or JSON such as an inline image)
// goes back after one attempt, byte for byte: a first event the peek could
// not see the end of is not judged by its cut-off start.
func TestHostileLongFirstLine(t *testing.T) {
	for _, first := range []string{
		"data: " + strings.Repeat("word ", maxPeek/4) + "\n\n",
		"data: {\"candidates\":[{\"content\":{\"parts\":[{\"inlineData\":{\"data\":\"" + strings.Repeat("A", maxPeek*2) + "\"}}]}}]}\n\n",
	} {
		checkLeaks(t)
		var requests atomic.Int32
		srv, _, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			requests.Add(1)
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, first+"data: [DONE]\n\n")
		})
		resp, err := New(base, fastRetries()...).RoundTrip(newChatRequest(t, t.Context(), srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != first+"data: [DONE]\n\n" {
			t.Fatalf("read %d bytes (%v), want the %d the server sent", len(got), err, len(first)+14)
		}
		if n := requests.Load(); n != 1 || resp.Header.Get("X-Should-Retry") != "" {
			t.Fatalf("%.20q…: server got %d requests, X-Should-Retry %q; want 1 and none", first, n, resp.Header.Get("X-Should-Retry"))
		}
	}
}

// rwcBody is the body of a 101 Switching Protocols: it can be written to.
type rwcBody struct {
	io.Reader
	read bool
}

func (b *rwcBody) Read(p []byte) (int, error)  { b.read = true; return b.Reader.Read(p) }
func (b *rwcBody) Write(p []byte) (int, error) { return len(p), nil }
func (b *rwcBody) Close() error                { return nil }

// TestHostileInformationalStatus: a 1xx response (a 101 that switched
// protocols, whatever its Content-Type says) goes back with its body
// unread and still writable, after one attempt.
func TestHostileInformationalStatus(t *testing.T) {
	for _, ct := range []string{"text/event-stream", "application/json"} {
		synctest.Test(t, func(t *testing.T) {
			body := &rwcBody{Reader: strings.NewReader("{\"error\":{}}\n\ndata: x\n\n")}
			f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) {
				r := response(101, "", "Content-Type", ct, "Upgrade", "websocket")
				r.Body, r.ContentLength = body, -1
				return r, nil
			}}
			resp, err := New(f).RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/realtime"))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := resp.Body.(io.ReadWriteCloser); !ok || body.read || f.attempts() != 1 {
				t.Fatalf("%s: body %T (read %v) after %d attempts, want the writable body unread after 1", ct, resp.Body, body.read, f.attempts())
			}
		})
	}
}
