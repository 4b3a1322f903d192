package llmtransport

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http2"

	"github.com/llmtransport/llmtransport/internal/redact"
)

// checkErrSane fails t unless c, the classification of a transport error,
// is well formed: a known class, no status, no wait, a bounded message in
// valid UTF-8.
func checkErrSane(t *testing.T, c Classification) {
	t.Helper()
	if c.Class > ClassUnknown {
		t.Fatalf("class %d out of range", c.Class)
	}
	if c.Status != 0 || c.RetryAfter != 0 || c.RetryAfterSource != "" {
		t.Fatalf("a transport error with a status or a wait: %+v", c)
	}
	if c.Class == ClassSuccess {
		t.Fatalf("a transport error classified a success: %+v", c)
	}
	if len(c.Message) > redact.MaxMessage+len("…") {
		t.Fatalf("message of %d bytes", len(c.Message))
	}
	if !utf8.ValidString(c.Message) {
		t.Fatalf("invalid UTF-8 %q", c.Message)
	}
}

// FuzzClassifyErr builds chains of transport errors (syscall errnos, EOFs,
// HTTP/2 stream errors and GOAWAYs as x/net's types and as net/http's
// messages, TLS errors, random text) wrapped in net.OpError, url.Error
// (whose URL carries a ?key=), fmt.Errorf and errors.Join, and checks that
// classifyErr never panics and keeps its invariants: the caller's
// cancellation or deadline is never retried nor a circuit failure, the
// outcome and BreakerFailure agree, the message is sane and never shows
// the URL's key.
func FuzzClassifyErr(f *testing.F) {
	f.Add([]byte{0, 1, 2}, "weird", uint8(0), "abcdEFGH1234")
	f.Add([]byte{3, 7}, "", uint8(0), "abcdEFGH1234")
	f.Add([]byte{3, 2, 1}, "x", uint8(1), "abcdEFGH1234")
	f.Add([]byte{4, 0, 1}, "REFUSED_STREAM", uint8(2), "k3y-k3y-k3y")
	f.Add([]byte{5, 1, 3}, "", uint8(0), "zzzzzzzzzz")
	f.Add([]byte{5, 0, 4}, " trailing", uint8(0), "zzzzzzzzzz")
	f.Add([]byte{1, 2, 2}, "\xff\xfe", uint8(0), "sk-abcdefghijkl")
	f.Add([]byte{7, 1, 1, 1, 1}, "", uint8(1), "abcdEFGH1234")
	f.Add([]byte{7}, "", uint8(0), "abcdEFGH1234")
	f.Add([]byte{2, 1}, "", uint8(0), "abcdEFGH1234")
	messages := []string{msgStreamError + "1; REFUSED_STREAM", msgGoAwayClosed + "1, ErrCode=NO_ERROR, debug=\"\"",
		msgGoAwayGraceful, msgGoAwayFirst + "INTERNAL_ERROR", msgConnUnusable, msgConnNotEstab,
		msgConnectionError + "PROTOCOL_ERROR", msgServerIdleClose}
	errnos := []syscall.Errno{syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.EPIPE, syscall.ETIMEDOUT, syscall.ECONNABORTED, syscall.EHOSTUNREACH}
	f.Fuzz(func(t *testing.T, shape []byte, text string, ctxState uint8, secret string) {
		if len(shape) == 0 || len(shape) > 16 {
			return
		}
		// build makes the chain, its url.Errors' URL carrying key.
		build := func(key string) error {
			var err error
			switch b := shape[0]; b % 9 {
			case 0:
				err = errors.New(text)
			case 1:
				err = errnos[int(b/9)%len(errnos)]
			case 2:
				err = []error{io.EOF, io.ErrUnexpectedEOF}[b/9%2]
			case 3:
				err = http2.StreamError{StreamID: uint32(b), Code: http2.ErrCode(b / 9), Cause: errors.New(text)}
			case 4:
				//lint:ignore SA1019 what x/net's transport returns on Go ≤ 1.26
				err = http2.GoAwayError{LastStreamID: uint32(b), ErrCode: http2.ErrCode(b / 9), DebugData: text}
			case 5:
				err = errors.New(messages[int(b/9)%len(messages)] + text)
			case 6:
				err = []error{context.Canceled, context.DeadlineExceeded}[b/9%2]
			case 7:
				err = x509.UnknownAuthorityError{}
			case 8:
				err = http2.ConnectionError(b / 9)
			}
			for _, w := range shape[1:] {
				switch w % 5 {
				case 0:
					err = &net.OpError{Op: "read", Net: "tcp", Err: err}
				case 1:
					err = &url.Error{Op: "Post", URL: "https://gw.test/v1/chat/completions?key=" + key + "&model=m", Err: err}
				case 2:
					err = fmt.Errorf("%s: %w", text, err)
				case 3:
					err = errors.Join(errors.New(text), err)
				case 4:
					err = os.NewSyscallError("write", err)
				}
			}
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		switch ctxState % 3 {
		case 1:
			cancel()
		case 2:
			ctx, cancel = context.WithDeadline(ctx, time.Now().Add(-time.Second))
			defer cancel()
		}
		err := build(secret)
		c, o := classifyErr(ctx, err)
		checkErrSane(t, c)
		if ctx.Err() != nil && (o != outcomeExcluded || c.Retryable || c.BreakerFailure) {
			t.Fatalf("the caller's context ended, yet %+v, outcome %v", c, o)
		}
		if o == outcomeSuccess || (o == outcomeFailure) != c.BreakerFailure {
			t.Fatalf("outcome %v with BreakerFailure %v", o, c.BreakerFailure)
		}
		// The key, when the URL is the only place it appears.
		keyLike := len(secret) >= 8 && strings.Trim(secret, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == ""
		if keyLike && strings.Contains(err.Error(), "?key="+secret) && !strings.Contains(build("x").Error(), secret) &&
			strings.Contains(c.Message, secret) {
			t.Fatalf("message %q shows the URL's key %q", c.Message, secret)
		}
	})
}
