package llmtransport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HTTP/2, which the major providers speak: stream resets and GOAWAYs reach
// the transport as errors of net/http's unexported bundled types, or of
// x/net's, and must be classified by what they mean, as their HTTP/1.1
// counterparts are. Real servers on loopback (net/http's over TLS and h2c,
// and a framer-level one for what net/http's server will not do on
// command), and net/http's and x/net's client transports.

// h2Client is an HTTP/2 client setup under test.
type h2Client struct {
	name string
	tls  bool // the server speaks TLS; else h2c
	base func(srv *httptest.Server) http.RoundTripper
}

func h2Clients() []h2Client {
	h2c := func() *http.Transport {
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		return &http.Transport{Protocols: p}
	}
	return []h2Client{
		{"net/http over TLS", true, func(srv *httptest.Server) http.RoundTripper { return srv.Client().Transport }},
		{"net/http h2c", false, func(*httptest.Server) http.RoundTripper { return h2c() }},
		{"x/net h2c", false, func(*httptest.Server) http.RoundTripper {
			// Deprecated for http.Transport.Protocols, but in use: its
			// errors are x/net's own types, not net/http's.
			//lint:ignore SA1019 the deprecated transport is the one under test
			return &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}}
		}},
	}
}

// startH2 starts an HTTP/2 server running h, over TLS or h2c.
func startH2(t *testing.T, useTLS bool, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	if useTLS {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

// failureCounts sums the failures and the excluded outcomes of tr's circuits.
func failureCounts(tr *Transport) (failures, excluded uint32) {
	for _, c := range tr.Circuits() {
		failures += c.Failures
		excluded += c.Excluded
	}
	return failures, excluded
}

func closeIdle(rt http.RoundTripper) {
	if ci, ok := rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// TestH2StreamResetIsRetried: a handler that aborts before its response
// makes the server reset the stream (RST_STREAM INTERNAL_ERROR); over
// HTTP/1.1 the same abort drops the connection, an EOF that is retried.
// Over HTTP/2 it is retried the same way, whichever client transport
// reports it, and counted as a failure of the model like a reset.
func TestH2StreamResetIsRetried(t *testing.T) {
	for _, cl := range h2Clients() {
		t.Run(cl.name, func(t *testing.T) {
			for _, always := range []bool{false, true} {
				var hits atomic.Int64
				srv := startH2(t, cl.tls, func(w http.ResponseWriter, r *http.Request) {
					io.Copy(io.Discard, r.Body)
					if r.ProtoMajor != 2 {
						t.Errorf("the server got HTTP/%d.%d, want HTTP/2", r.ProtoMajor, r.ProtoMinor)
					}
					if hits.Add(1) == 1 || always {
						panic(http.ErrAbortHandler) // RST_STREAM before any response byte
					}
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, `{"ok":true}`)
				})
				base := cl.base(srv)
				defer closeIdle(base)
				// The circuit counts calls; each retried attempt's
				// verdict is in its retry event.
				var failedAttempts int
				tr := New(base, append(fastRetries(), WithOnRetry(func(ev RetryEvent) {
					if ev.Classification.BreakerFailure {
						failedAttempts++
					}
				}))...)
				resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), srv.URL+"/v1/chat/completions"))
				failures, _ := failureCounts(tr)
				if always {
					if err == nil {
						resp.Body.Close()
						t.Fatal("got a response from a server that resets every stream")
					}
					if hits.Load() != 1+DefaultMaxRetries || failedAttempts != DefaultMaxRetries || failures != 1 {
						t.Fatalf("got %v after %d attempts, %d failed retried attempts and %d failed calls, want %d, %d and 1", err, hits.Load(), failedAttempts, failures, 1+DefaultMaxRetries, DefaultMaxRetries)
					}
					continue
				}
				if err != nil {
					t.Fatalf("got %v after %d attempts, want the retry's 200", err, hits.Load())
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || hits.Load() != 2 || failedAttempts != 1 || failures != 0 {
					t.Fatalf("got %d after %d attempts, %d failed attempts, %d failed calls; want 200 after 2, 1 failed attempt, no failed call", resp.StatusCode, hits.Load(), failedAttempts, failures)
				}
			}
		})
	}
}

// rawH2 is a loopback HTTP/2 (h2c) server that works at the frame level,
// to send what net/http's server does not send on command: GOAWAYs with
// chosen last stream IDs and codes, resets, streams cut in the middle.
type rawH2 struct {
	ln      net.Listener
	wg      sync.WaitGroup
	streams atomic.Int64 // request streams received, over all connections
	conns   atomic.Int64
}

// rawH2Conn is one connection of a rawH2 server.
type rawH2Conn struct {
	n  int // which connection, from 0
	fr *http2.Framer
}

// newRawH2 starts a rawH2 server. For each request stream, act gets the
// connection and the stream ID; it returns false to close the connection.
func newRawH2(t *testing.T, act func(c *rawH2Conn, streamID uint32) bool) *rawH2 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawH2{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(s.conns.Add(1) - 1)
			s.wg.Go(func() { serveRawH2(c, &s.streams, &rawH2Conn{n: n}, act) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *rawH2) url() string { return "http://" + s.ln.Addr().String() + "/v1/chat/completions" }

// serveRawH2 speaks HTTP/2 on c: the preface and settings, then act for
// each request's HEADERS; it closes c when done. Frames are read on their
// own goroutine so that the client's writes never wait for the server's
// (which net.Pipe, unbuffered, would otherwise deadlock).
func serveRawH2(c net.Conn, streams *atomic.Int64, rc *rawH2Conn, act func(*rawH2Conn, uint32) bool) {
	type frame struct {
		ping     *[8]byte // a PING to answer
		settings bool     // SETTINGS to acknowledge
		stream   uint32   // a request's HEADERS
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.Close()
	br := bufio.NewReader(c)
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(br, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	rc.fr = http2.NewFramer(c, br)
	frames := make(chan frame, 64)
	wg.Go(func() {
		defer close(frames)
		for {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					frames <- frame{settings: true}
				}
			case *http2.PingFrame:
				if !f.IsAck() {
					data := f.Data
					frames <- frame{ping: &data}
				}
			case *http2.HeadersFrame:
				frames <- frame{stream: f.StreamID}
			}
		}
	})
	rc.fr.WriteSettings()
	for f := range frames {
		switch {
		case f.settings:
			rc.fr.WriteSettingsAck()
		case f.ping != nil:
			rc.fr.WritePing(true, *f.ping)
		default:
			streams.Add(1)
			if !act(rc, f.stream) {
				c.Close()
				for range frames { // until the reader sees the close
				}
				return
			}
		}
	}
}

// headers writes a response's HEADERS frame.
func (c *rawH2Conn) headers(streamID uint32, status int, contentType string, end bool) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	enc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
	enc.WriteField(hpack.HeaderField{Name: "content-type", Value: contentType})
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: streamID, BlockFragment: buf.Bytes(), EndHeaders: true, EndStream: end})
}

// ok answers the stream with a 200 JSON body.
func (c *rawH2Conn) ok(streamID uint32) {
	c.headers(streamID, 200, "application/json", false)
	c.fr.WriteData(streamID, true, []byte(`{"ok":true}`))
}

// TestH2GoAwayAndRefusedAreRetried: GOAWAYs and a refused stream over
// loopback h2c. A GOAWAY that does not cover the stream (the server did not
// process it) and REFUSED_STREAM are always safe to repeat; a GOAWAY that
// covers the stream and then closes the connection is retried like a
// reset. Only the first stream meets the fault: the retry is answered.
// What net/http repeats by itself (a graceful GOAWAY before the stream,
// REFUSED_STREAM) never reaches the transport on its first occurrence, so
// those cases run through a base that does not repeat: x/net's with a
// body it cannot rewind is not one either, hence the direct checks of
// classifyErr in TestH2ErrorsClassified.
func TestH2GoAwayAndRefusedAreRetried(t *testing.T) {
	tests := []struct {
		name     string
		first    func(c *rawH2Conn, id uint32) bool // the first stream
		attempts int                                // seen by the transport
		failures uint32
	}{
		{"GOAWAY covering the stream, then close", func(c *rawH2Conn, id uint32) bool {
			c.fr.WriteGoAway(id, http2.ErrCodeNo, nil)
			return false
		}, 2, 1},
		{"GOAWAY ENHANCE_YOUR_CALM before the stream", func(c *rawH2Conn, id uint32) bool {
			c.fr.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, []byte("REFUSED_STREAM"))
			return false
		}, 2, 1},
		{"RST_STREAM CANCEL before the response", func(c *rawH2Conn, id uint32) bool {
			c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			return true
		}, 2, 1},
		{"connection error: garbage frame", func(c *rawH2Conn, id uint32) bool {
			c.fr.WriteRawFrame(http2.FrameSettings, 0, 1, []byte{1, 2, 3}) // bad SETTINGS length
			return true
		}, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var misbehaved atomic.Bool
			s := newRawH2(t, func(c *rawH2Conn, id uint32) bool {
				if misbehaved.CompareAndSwap(false, true) {
					return tt.first(c, id)
				}
				c.ok(id)
				return true
			})
			for _, cl := range h2Clients()[1:] {
				t.Run(cl.name, func(t *testing.T) {
					before := s.streams.Load()
					base := cl.base(nil)
					defer closeIdle(base)
					misbehaved.Store(false)
					attempts := 0
					var failures uint32 // of the retried attempts; the call succeeds
					tr := New(base, append(fastRetries(), WithOnRetry(func(ev RetryEvent) {
						attempts++
						if ev.Classification.BreakerFailure {
							failures++
						}
					}))...)
					resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), s.url()))
					if err != nil {
						t.Fatalf("got %v after %d streams, want the retry's 200", err, s.streams.Load()-before)
					}
					resp.Body.Close()
					if f, _ := failureCounts(tr); f != 0 {
						t.Fatalf("%d failed calls, want none: the retry rescued it", f)
					}
					if resp.StatusCode != 200 || attempts+1 != tt.attempts || failures != tt.failures {
						t.Fatalf("got %d after %d attempts and %d circuit failures, want 200 after %d, %d failures", resp.StatusCode, attempts+1, failures, tt.attempts, tt.failures)
					}
				})
			}
		})
	}
}

// TestH2UnprocessedIsRetriedNotCounted: a server that refuses every stream
// (REFUSED_STREAM). net/http repeats it itself, 8 times with backoffs of
// 1 s to 32 s (fake time here: net.Pipe connections in a synctest bubble),
// then reports it: the transport repeats the request too, and none of it
// counts against the model, whose server never processed it. (A graceful
// GOAWAY before every stream takes the same path in net/http, but its
// reconnections block on mutexes, which synctest cannot wait out; its error
// is checked in TestH2ErrorsClassified.)
func TestH2UnprocessedIsRetriedNotCounted(t *testing.T) {
	tests := []struct {
		name string
		act  func(c *rawH2Conn, id uint32) bool
	}{
		{"REFUSED_STREAM", func(c *rawH2Conn, id uint32) bool {
			c.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
			return true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var (
					streams atomic.Int64
					wg      sync.WaitGroup
				)
				p := new(http.Protocols)
				p.SetUnencryptedHTTP2(true)
				base := &http.Transport{Protocols: p, DialContext: func(context.Context, string, string) (net.Conn, error) {
					cc, sc := net.Pipe()
					wg.Go(func() { serveRawH2(sc, &streams, &rawH2Conn{}, tt.act) })
					return cc, nil
				}}
				defer wg.Wait()
				defer base.CloseIdleConnections()
				attempts, failedAttempts := 1, 0
				// Each attempt takes net/http 63 s: a window that holds them all.
				tr := New(base, WithBreakerWindow(time.Hour), WithOnRetry(func(ev RetryEvent) {
					attempts++
					if ev.Classification.BreakerFailure {
						failedAttempts++
					}
				}))
				_, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
				failures, excluded := failureCounts(tr)
				if err == nil || attempts != 1+DefaultMaxRetries {
					t.Fatalf("got %v after %d attempts, want the error after %d", err, attempts, 1+DefaultMaxRetries)
				}
				if failedAttempts != 0 || failures != 0 || excluded != 1 {
					t.Fatalf("%d retried attempts counted as failures; the circuit counted %d failed calls and %d excluded, want 0, 0 and 1", failedAttempts, failures, excluded)
				}
				t.Logf("%d attempts, %d streams at the server: %v", attempts, streams.Load(), err)
			})
		})
	}
}

// TestH2GoAwayMidStream: a server that sends GOAWAY in the middle of a
// stream it already started. A graceful one (the stream is covered and
// finishes) leaves the stream intact; one followed by the connection's
// close ends the caller's read with an error after the bytes sent, and is
// not retried since they reached the caller. A reset of a 200 stream
// before its first event is retried: nothing reached the caller.
func TestH2GoAwayMidStream(t *testing.T) {
	const ev1, ev2 = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", "data: [DONE]\n\n"
	tests := []struct {
		name     string
		act      func(c *rawH2Conn, id uint32) bool
		attempts int
		want     string
		readErr  bool
	}{
		{"graceful GOAWAY, stream finishes", func(c *rawH2Conn, id uint32) bool {
			c.headers(id, 200, "text/event-stream", false)
			c.fr.WriteData(id, false, []byte(ev1))
			c.fr.WriteGoAway(id, http2.ErrCodeNo, nil)
			c.fr.WriteData(id, true, []byte(ev2))
			return true
		}, 1, ev1 + ev2, false},
		{"GOAWAY then close after the first event", func(c *rawH2Conn, id uint32) bool {
			c.headers(id, 200, "text/event-stream", false)
			c.fr.WriteData(id, false, []byte(ev1))
			c.fr.WriteGoAway(id, http2.ErrCodeNo, nil)
			return false
		}, 1, ev1, true},
		{"RST_STREAM before the first event", func(c *rawH2Conn, id uint32) bool {
			c.headers(id, 200, "text/event-stream", false)
			c.fr.WriteData(id, false, []byte(": ping\n\n"))
			c.fr.WriteRSTStream(id, http2.ErrCodeInternal)
			return true
		}, 1 + DefaultMaxRetries, ": ping\n\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawH2(t, tt.act)
			for _, cl := range h2Clients()[1:] {
				t.Run(cl.name, func(t *testing.T) {
					base := cl.base(nil)
					defer closeIdle(base)
					before := s.streams.Load()
					resp, err := New(base, fastRetries()...).RoundTrip(newChatRequest(t, t.Context(), s.url()))
					if err != nil {
						t.Fatal(err)
					}
					got, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					if n := s.streams.Load() - before; string(got) != tt.want || (rerr != nil) != tt.readErr || int(n) != tt.attempts {
						t.Fatalf("read %q (error %v) after %d attempts, want %q (error: %v) after %d", got, rerr, n, tt.want, tt.readErr, tt.attempts)
					}
				})
			}
		})
	}
}

// TestH2ErrorsClassified: the HTTP/2 (and HTTP/1.1 keep-alive) errors that
// have no exported type in net/http, as x/net's exported types and the
// messages both print, and text that must not pass for them.
func TestH2ErrorsClassified(t *testing.T) {
	const (
		none = iota
		retryExcluded
		retryFailure
		finalFailure
	)
	graceful := errors.New("http2: Transport received Server's graceful shutdown GOAWAY")
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"x/net REFUSED_STREAM", http2.StreamError{StreamID: 3, Code: http2.ErrCodeRefusedStream}, retryExcluded},
		{"x/net INTERNAL_ERROR", http2.StreamError{StreamID: 3, Code: http2.ErrCodeInternal, Cause: errors.New("received from peer")}, retryFailure},
		{"x/net unknown code", http2.StreamError{StreamID: 3, Code: 0x99}, retryFailure},
		{"x/net HTTP_1_1_REQUIRED", http2.StreamError{StreamID: 3, Code: http2.ErrCodeHTTP11Required}, finalFailure},
		//lint:ignore SA1019 what x/net's transport returns on Go ≤ 1.26
		{"x/net GoAwayError", http2.GoAwayError{LastStreamID: 5, ErrCode: http2.ErrCodeNo, DebugData: "stream error: stream ID 1; REFUSED_STREAM"}, retryFailure},
		{"x/net ConnectionError", http2.ConnectionError(http2.ErrCodeProtocol), retryFailure},
		{"graceful GOAWAY", graceful, retryExcluded},
		{"graceful GOAWAY wrapped", fmt.Errorf("gateway: %w", graceful), retryExcluded},
		{"graceful GOAWAY joined", errors.Join(errors.New("x"), graceful), retryExcluded},
		{"GOAWAY with a code on a new connection", errors.New("http2: Transport received GOAWAY from server ErrCode:INTERNAL_ERROR"), retryFailure},
		{"client conn not usable", errors.New("http2: client conn not usable"), retryExcluded},
		{"HTTP/1.1 keep-alive race", errors.New("http: server closed idle connection"), retryExcluded},
		{"refused stream named in a URL", &url.Error{Op: "Post", URL: "http://gw.test/stream error: stream ID 1; REFUSED_STREAM", Err: errors.New("weird")}, none},
		{"refused stream mid-message", errors.New("proxy said: stream error: stream ID 1; REFUSED_STREAM"), none},
		{"graceful GOAWAY as a prefix", errors.New("http2: Transport received Server's graceful shutdown GOAWAY, or so"), none},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, o := classifyErr(context.Background(), tt.err)
			got := none
			switch {
			case c.Retryable && o == outcomeExcluded:
				got = retryExcluded
			case c.Retryable && o == outcomeFailure:
				got = retryFailure
			case !c.Retryable && o == outcomeFailure && c.Class == ClassUnknown:
				got = finalFailure
			}
			if got != tt.want {
				t.Fatalf("classifyErr(%v) = %+v, %v; want kind %d, got %d", tt.err, c, o, tt.want, got)
			}
		})
	}
}
