package llmtransport

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http2"
)

// checkSane fails t unless c is a well-formed classification.
func checkSane(t *testing.T, c Classification) {
	t.Helper()
	if c.Class >= numClasses {
		t.Fatalf("class %d out of range", c.Class)
	}
	if c.RetryAfter < 0 || c.RetryAfter > maxSaneWait {
		t.Fatalf("retry after %v out of range", c.RetryAfter)
	}
	if (c.RetryAfter == 0) != (c.RetryAfterSource == "") {
		t.Fatalf("retry after %v with source %q", c.RetryAfter, c.RetryAfterSource)
	}
	if c.Retryable && !c.retry {
		t.Fatal("Retryable without retry")
	}
	if c.Retryable && c.RetryAfter > DefaultMaxRetryWait {
		t.Fatalf("Retryable with a wait of %v", c.RetryAfter)
	}
	if c.Class == ClassSuccess && (c.Retryable || c.BreakerFailure || c.RetryAfter != 0) {
		t.Fatalf("success with retry/breaker/wait: %+v", c)
	}
	if len(c.Message) > maxMessage+len("…") {
		t.Fatalf("message of %d bytes", len(c.Message))
	}
	for _, s := range [...]string{c.Message, c.Code, c.Type} {
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8 %q", s)
		}
	}
}

// FuzzClassify checks that Classify never panics and always returns a
// sane classification, whatever the status, headers and body.
func FuzzClassify(f *testing.F) {
	for _, cc := range loadCorpus(f) {
		h := cc.response().Header
		f.Add(cc.Status, h.Get("Content-Type"), h.Get("Retry-After"), []byte(cc.Body))
	}
	for _, b := range []string{
		"", "\ufeff", "{", "[", `{"error":`, `{"error":{"message":"\u`, `{"error":{"message":"\ud83d\u`,
		"data:", "data: {\"error\"", "event: error\n", ": PING\n\n{\"error\":{\"code\":\"x\"",
		strings.Repeat("[", 100), strings.Repeat(`{"a":`, 100), `{'error': {'code': None}}`,
		"<html><title>", `{"error":{"message":"try again in 1e400s"}}`,
	} {
		f.Add(429, "text/event-stream", "1", []byte(b))
		f.Add(200, "application/json", "", []byte(b))
	}
	f.Fuzz(func(t *testing.T, status int, contentType, retryAfter string, body []byte) {
		h := http.Header{}
		h.Set("Content-Type", contentType)
		h.Set("Retry-After", retryAfter)
		h.Set("X-Ratelimit-Remaining-Tokens", "0")
		h.Set("X-Ratelimit-Reset-Tokens", retryAfter)
		c := Classify(&http.Response{StatusCode: status, Header: h}, body)
		checkSane(t, c)
		if c.Status != status {
			t.Fatalf("status %d, want %d", c.Status, status)
		}
	})
}

// FuzzWaitHint checks that no header value or message yields a negative,
// absurd or panicking wait.
func FuzzWaitHint(f *testing.F) {
	for _, s := range []string{
		"17", "0.75", "-1", "0", "NaN", "Inf", "-Inf", "1e309", "99999999999", "6m0s", "12ms", "7.66s",
		"Wed, 21 Oct 2026 07:28:00 GMT", "Mon, 01 Jan 1900 00:00:00 GMT", "Wed, 01 Jan 3000 00:00:00 GMT",
		"2026-10-21T07:28:00Z", "1792567680000", "Please try again in 644ms.", "Please retry in 47.17s.",
		"retry after 86400 seconds", "Try again in 2 seconds", "in 1m0.36s", "resets at 2026-05-15T15:00:00Z",
		"try again in 9223372036854775807ns", "try again in 1e30 seconds", "try again in .", "retry in ~",
	} {
		f.Add(s)
	}
	now := time.Date(2026, 10, 21, 7, 27, 30, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		check := func(what string, d time.Duration, ok bool) {
			if ok != (d > 0) || d < 0 || d > maxSaneWait {
				t.Fatalf("%s(%q) = %v, %v", what, v, d, ok)
			}
		}
		d, ok := parseRetryAfter(v, now)
		check("parseRetryAfter", d, ok)
		d, ok = parseMillis(v)
		check("parseMillis", d, ok)
		d, ok = parseDuration(v)
		check("parseDuration", d, ok)
		d, ok = parseResetValue(v, now)
		check("parseResetValue", d, ok)
		d, ok = messageWait(strings.ToLower(v), now)
		check("messageWait", d, ok)
		d, ok = durationPhrase(strings.ToLower(v))
		check("durationPhrase", d, ok)

		h := http.Header{}
		for _, k := range [...]string{"Retry-After-Ms", "Retry-After", "X-Rate-Limit-Reset-Tokens",
			"Anthropic-Ratelimit-Tokens-Reset", "X-Ratelimit-Reset-Requests"} {
			h.Set(k, v)
		}
		h.Set("Anthropic-Ratelimit-Tokens-Remaining", "0")
		h.Set("X-Ratelimit-Remaining-Requests", "0")
		c := Classify(&http.Response{StatusCode: 429, Header: h}, []byte(`{"error":{"message":"`+v+`"}}`))
		checkSane(t, c)
	})
}

// TestClassifyAllocationBounded checks that adversarial 64 KiB bodies cost
// a bounded amount of memory: a small multiple of the input.
func TestClassifyAllocationBounded(t *testing.T) {
	n := maxPeek
	bodies := map[string][]byte{
		"escaped message":  []byte(`{"error":{"message":"` + strings.Repeat(`\u00e9`, n/6) + `"}}`),
		"many data lines":  []byte(strings.Repeat("data: x\n", n/8)),
		"deep nesting":     []byte(strings.Repeat(`{"error":`, n/9)),
		"many keys":        []byte(`{` + strings.Repeat(`"message":"aaaaaaaa",`, n/21) + `}`),
		"nested JSON text": []byte(`{"error":{"message":"` + strings.Repeat(`{\"error\":{\"message\":\"x\"}}`, n/30) + `"}}`),
		"html":             []byte("<html>" + strings.Repeat("<title", n/6)),
		"wait phrases":     []byte(`{"error":{"message":"` + strings.Repeat("try again in 1", n/14) + `"}}`),
	}
	for name, b := range bodies {
		t.Run(name, func(t *testing.T) {
			r := resp(500, "Content-Type", "text/event-stream")
			const runs = 5
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for range runs {
				checkSane(t, Classify(r, b))
			}
			runtime.ReadMemStats(&after)
			perRun := (after.TotalAlloc - before.TotalAlloc) / runs
			if limit := uint64(16 * maxPeek); perRun > limit {
				t.Errorf("%d bytes allocated per call, want at most %d", perRun, limit)
			}
		})
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
		checkSane(t, c)
		if ctx.Err() != nil && (o != outcomeExcluded || c.retry || c.Retryable || c.BreakerFailure) {
			t.Fatalf("the caller's context ended, yet %+v, outcome %v", c, o)
		}
		if o == outcomeSuccess || (o == outcomeFailure) != c.BreakerFailure {
			t.Fatalf("outcome %v with BreakerFailure %v", o, c.BreakerFailure)
		}
		if c.Retryable && !c.retry {
			t.Fatal("Retryable without retry")
		}
		// The key, when the URL is the only place it appears.
		keyLike := len(secret) >= 8 && strings.Trim(secret, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == ""
		if keyLike && strings.Contains(err.Error(), "?key="+secret) && !strings.Contains(build("x").Error(), secret) &&
			strings.Contains(c.Message, secret) {
			t.Fatalf("message %q shows the URL's key %q", c.Message, secret)
		}
	})
}
