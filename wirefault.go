package llmtransport

import (
	"errors"
	"strings"
)

// Transport errors without an exported type.
//
// Over HTTP/2, net/http reports a stream reset (RST_STREAM), a GOAWAY and a
// broken connection with types of its bundled copy of golang.org/x/net/http2,
// which are unexported (http2StreamError, http2GoAwayError, ...), or with
// unexported sentinel values; HTTP/1.1 has one such value too (the
// keep-alive race, "http: server closed idle connection"). None of them
// wraps a syscall errno or io.EOF, so the checks classifyErr makes for
// HTTP/1.1 miss them all. wireFault reads them without naming their types:
//
//   - A stream error through errors.As into h2StreamError, a struct with the
//     fields of x/net's exported http2.StreamError: net/http's bundled
//     StreamError has an As method that fills any such struct
//     (net/http/h2_error.go), which is how it is meant to be matched from
//     outside net/http.
//   - Every other one (and a stream error of x/net's own Transport, which
//     has no such method) by its message, which net/http and x/net share
//     and have kept for years: only the messages of errors that wrap
//     nothing are read, and only from their start, so that text elsewhere in
//     a chain (a URL, a server's GOAWAY debug data) cannot pass for them.
//
// The tests run the real thing: net/http's and x/net's transports against
// HTTP/2 servers over TLS and h2c (hostile_h2_test.go), so a change of these
// messages in a new Go release fails them.

// wireFault is what a transport error without an exported type says about
// the attempt.
type wireFault uint8

const (
	faultNone wireFault = iota
	// The server did not process the request and said so in good order
	// (REFUSED_STREAM, a graceful GOAWAY sent before the stream, a
	// connection it closed while idle): safe to repeat, and nothing about
	// the model.
	faultUnprocessed
	// The server did not process the request, but its connection is in
	// trouble (a GOAWAY with an error code sent before the stream, a
	// connection that could not be set up): safe to repeat, and a failure of
	// the path to the model, like a refused connection.
	faultRefused
	// The stream or the connection broke before the response (any other
	// stream error, a connection error, a GOAWAY and then the connection
	// closed under the stream): repeated like a reset over HTTP/1.1.
	faultReset
	// Repeating cannot help: the server demands HTTP/1.1 or better TLS.
	faultFinal
)

// HTTP/2 error codes (RFC 9113, section 7) that wireFault tells apart.
const (
	h2RefusedStream      = 0x7
	h2InadequateSecurity = 0xc
	h2HTTP11Required     = 0xd
)

// h2CodeNames are the HTTP/2 error codes by the names their errors print.
var h2CodeNames = map[string]uint32{
	"NO_ERROR": 0x0, "PROTOCOL_ERROR": 0x1, "INTERNAL_ERROR": 0x2, "FLOW_CONTROL_ERROR": 0x3,
	"SETTINGS_TIMEOUT": 0x4, "STREAM_CLOSED": 0x5, "FRAME_SIZE_ERROR": 0x6, "REFUSED_STREAM": h2RefusedStream,
	"CANCEL": 0x8, "COMPRESSION_ERROR": 0x9, "CONNECT_ERROR": 0xa, "ENHANCE_YOUR_CALM": 0xb,
	"INADEQUATE_SECURITY": h2InadequateSecurity, "HTTP_1_1_REQUIRED": h2HTTP11Required,
}

// h2StreamError has the fields of golang.org/x/net/http2.StreamError, for
// errors.As to fill from net/http's bundled stream error (see above).
type h2StreamError struct {
	StreamID uint32
	Code     uint32
	Cause    error
}

func (e h2StreamError) Error() string { return "http2 stream error" }

// The messages of the errors wireFault reads, as net/http and x/net print
// them.
const (
	msgStreamError     = "stream error: stream ID "                                           // StreamError
	msgGoAwayClosed    = "http2: server sent GOAWAY and closed the connection; LastStreamID=" // GoAwayError
	msgGoAwayGraceful  = "http2: Transport received Server's graceful shutdown GOAWAY"        // errClientConnGotGoAway
	msgGoAwayFirst     = "http2: Transport received GOAWAY from server ErrCode:"              // the first stream of a connection
	msgConnUnusable    = "http2: client conn not usable"                                      // errClientConnUnusable
	msgConnNotEstab    = "http2: client conn could not be established"                        // errClientConnNotEstablished
	msgConnectionError = "connection error: "                                                 // ConnectionError
	msgServerIdleClose = "http: server closed idle connection"                                // HTTP/1.1's errServerClosedIdle
	maxWalk            = 32                                                                   // errors of a chain looked at, at most
)

// wireFaultOf classifies err by the HTTP/2 (or HTTP/1.1 keep-alive) fault
// it reports, if any.
func wireFaultOf(err error) wireFault {
	var se h2StreamError
	if errors.As(err, &se) {
		return streamFault(se.Code)
	}
	f, budget := faultNone, maxWalk
	walkLeaves(err, &budget, func(msg string) bool {
		f = leafFault(msg)
		return f == faultNone
	})
	return f
}

// streamFault is what a stream error with code means.
func streamFault(code uint32) wireFault {
	switch code {
	case h2RefusedStream:
		return faultUnprocessed
	case h2InadequateSecurity, h2HTTP11Required:
		return faultFinal
	}
	return faultReset
}

// leafFault reads the message of an error that wraps nothing.
func leafFault(msg string) wireFault {
	switch {
	case strings.HasPrefix(msg, msgStreamError):
		// "stream error: stream ID 3; REFUSED_STREAM[; cause]"
		_, rest, _ := strings.Cut(msg[len(msgStreamError):], "; ")
		name, _, _ := strings.Cut(rest, ";")
		code, ok := h2CodeNames[name]
		if !ok {
			return faultReset
		}
		return streamFault(code)
	case msg == msgGoAwayGraceful, msg == msgConnUnusable, msg == msgServerIdleClose:
		return faultUnprocessed
	case strings.HasPrefix(msg, msgGoAwayFirst), msg == msgConnNotEstab:
		return faultRefused
	case strings.HasPrefix(msg, msgGoAwayClosed), strings.HasPrefix(msg, msgConnectionError):
		return faultReset
	}
	return faultNone
}

// walkLeaves calls f with the message of each error in err's tree that
// wraps nothing, depth first, until f returns false or budget errors were
// looked at. It reports whether to go on.
func walkLeaves(err error, budget *int, f func(string) bool) bool {
	if err == nil {
		return true
	}
	if *budget--; *budget < 0 {
		return false
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return walkLeaves(u.Unwrap(), budget, f)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if !walkLeaves(e, budget, f) {
				return false
			}
		}
		return true
	}
	return f(err.Error())
}
