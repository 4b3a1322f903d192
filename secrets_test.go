package llmtransport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// The secrets a request carries in the secret tests, one per place a key
// travels in LLM APIs.
var testSecrets = []string{
	"sk-proj-S3CRETbearer0123456789", // Authorization: Bearer
	"S3CRETazureApiKey0123",          // api-key (Azure)
	"sk-ant-S3CRETanthropic0123",     // x-api-key (Anthropic)
	"AIzaS3CRETgoogleKey0123",        // x-goog-api-key (Gemini)
	"AIzaS3CRETqueryKey0123",         // ?key= (Gemini)
	"S3CRETapiKeyParam0123",          // ?api_key=
	"S3CRETuserinfoPassword",         // user:password@host
}

// secretRequest returns a request to rawURL (a base like http://host:port)
// carrying every secret of testSecrets.
func secretRequest(t *testing.T, rawURL string) *http.Request {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("user", testSecrets[6])
	u.Path = "/v1beta/models/gemini-2.0-flash:generateContent"
	u.RawQuery = url.Values{"key": {testSecrets[4]}, "api_key": {testSecrets[5]}}.Encode()
	req := newChatRequest(t, t.Context(), u.String())
	req.Header.Set("Authorization", "Bearer "+testSecrets[0])
	req.Header.Set("api-key", testSecrets[1])
	req.Header.Set("x-api-key", testSecrets[2])
	req.Header.Set("x-goog-api-key", testSecrets[3])
	return req
}

// checkNoSecret fails t if err's message, or the message of any error it
// wraps, contains one of testSecrets. Errors from http.Client arrive in a
// *url.Error whose message holds the URL with its query: that wrapper is
// net/http's, so only the error inside it is checked.
func checkNoSecret(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want one to check", what)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		msg := e.Error()
		for _, s := range testSecrets {
			if strings.Contains(msg, s) || strings.Contains(msg, url.QueryEscape(s)) {
				t.Errorf("%s: error %T %q contains secret %q", what, e, msg, s)
			}
		}
		switch x := e.(type) {
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		case interface{ Unwrap() []error }:
			for _, w := range x.Unwrap() {
				walk(w)
			}
		}
	}
	walk(err)
}

// checkEventsNoSecret fails t if a retry event's error or message, as
// WithOnRetry hands them to the caller's logging, contains a secret.
func checkEventsNoSecret(t *testing.T, what string, events []RetryEvent) {
	t.Helper()
	for _, ev := range events {
		s := ev.Classification.Message
		if ev.Err != nil {
			s += " " + ev.Err.Error()
		}
		for _, sec := range testSecrets {
			if strings.Contains(s, sec) {
				t.Errorf("%s: retry event %q contains secret %q", what, s, sec)
			}
		}
	}
}

// eventLog collects retry events.
type eventLog struct {
	mu     sync.Mutex
	events []RetryEvent
}

func (l *eventLog) add(ev RetryEvent) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

func (l *eventLog) all() []RetryEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]RetryEvent(nil), l.events...)
}

// TestSecretsNotInTransportErrors: calls that fail in the network (refused,
// reset, header timeout, first-byte timeout), directly and through an
// http.Client, return errors that name none of the request's keys.
func TestSecretsNotInTransportErrors(t *testing.T) {
	checkLeaks(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + closed.Addr().String()
	closed.Close()
	resetSrv := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
		if s.readRequest(br) {
			reset(c)
		}
	})
	stallSrv := newRawServer(t, func(s *rawServer, c net.Conn, br *bufio.Reader) {
		if s.readRequest(br) {
			io.Copy(io.Discard, c)
		}
	})
	base := &http.Transport{ResponseHeaderTimeout: 20 * time.Millisecond}
	defer base.CloseIdleConnections()
	tests := []struct {
		name string
		url  string
		opts []Option
	}{
		{"connection refused", refused, nil},
		{"reset before headers", "http://" + resetSrv.ln.Addr().String(), nil},
		{"header timeout", "http://" + stallSrv.ln.Addr().String(), nil},
		{"first-byte timeout", "http://" + stallSrv.ln.Addr().String(), []Option{WithFirstByteTimeout(10 * time.Millisecond)}},
	}
	for _, tt := range tests {
		var log eventLog
		tr := New(base, append(append(fastRetries(), WithOnRetry(log.add)), tt.opts...)...)
		_, err := tr.RoundTrip(secretRequest(t, tt.url))
		checkNoSecret(t, tt.name+" (RoundTrip)", err)
		_, err = (&http.Client{Transport: tr}).Do(secretRequest(t, tt.url))
		checkNoSecret(t, tt.name+" (http.Client)", err)
		checkEventsNoSecret(t, tt.name, log.all())
		if len(log.all()) == 0 {
			t.Errorf("%s: no retry event to check", tt.name)
		}
	}
}

// TestSecretsNotInPanicError: a base transport that panics with a value
// that includes the request (its URL, its headers) yields a *PanicError
// whose message has the request's keys removed. The value itself is kept.
func TestSecretsNotInPanicError(t *testing.T) {
	panics := map[string]func(*http.Request) any{
		"request":       func(r *http.Request) any { return fmt.Sprintf("bad request %+v", r) },
		"headers":       func(r *http.Request) any { return fmt.Errorf("bad headers %v", r.Header) },
		"url":           func(r *http.Request) any { return r.URL.String() },
		"url and token": func(r *http.Request) any { return []string{r.URL.Redacted(), r.Header.Get("Authorization")} },
	}
	for name, value := range panics {
		var got any
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			got = value(r)
			panic(got)
		})
		_, err := New(base).RoundTrip(secretRequest(t, "http://gw.test"))
		var pe *PanicError
		if !errors.As(err, &pe) {
			t.Fatalf("%s: got %v, want a *PanicError", name, err)
		}
		checkNoSecret(t, "panic with "+name, err)
		if fmt.Sprint(pe.Value) != fmt.Sprint(got) {
			t.Errorf("%s: PanicError.Value = %v, want the panic's value", name, pe.Value)
		}
		if !strings.Contains(err.Error(), "panicked") {
			t.Errorf("%s: error %q does not say the base panicked", name, err)
		}
	}
}

// TestSecretsNotInOwnErrors: the errors the transport makes itself (open
// circuit, body replay and read failures, a nil response) name no key.
func TestSecretsNotInOwnErrors(t *testing.T) {
	t.Run("open circuit", func(t *testing.T) {
		// Fail until the circuit opens. While the breaker is a stub it
		// never does; the error the transport would build is checked too.
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp := response(503, `{"error":{"message":"overloaded"}}`)
			resp.Request = r
			return resp, nil
		})
		tr := New(base, WithMaxRetries(0))
		var coe *CircuitOpenError
		for range 100 {
			resp, err := tr.RoundTrip(secretRequest(t, "http://gw.test"))
			if errors.As(err, &coe) {
				checkNoSecret(t, "circuit open", err)
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		req := secretRequest(t, "http://gw.test")
		built := &CircuitOpenError{Host: req.URL.Host, Model: "gemini-2.0-flash", RetryIn: time.Second}
		checkNoSecret(t, "circuit open (built)", built)
	})
	t.Run("GetBody fails", func(t *testing.T) {
		base := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, io.ErrUnexpectedEOF })
		req := secretRequest(t, "http://gw.test")
		req.GetBody = func() (io.ReadCloser, error) { return nil, errors.New("cannot rewind") }
		_, err := New(base, fastRetries()...).RoundTrip(req)
		checkNoSecret(t, "GetBody fails", err)
	})
	t.Run("body read fails", func(t *testing.T) {
		base := roundTripFunc(func(*http.Request) (*http.Response, error) { return response(200, `{}`), nil })
		req := secretRequest(t, "http://gw.test")
		req.Body = io.NopCloser(iotestErrReader(errors.New("disk gone")))
		req.GetBody = nil
		_, err := New(base).RoundTrip(req)
		checkNoSecret(t, "body read fails", err)
	})
	t.Run("nil response", func(t *testing.T) {
		_, err := New(nilRT{}).RoundTrip(secretRequest(t, "http://gw.test"))
		checkNoSecret(t, "nil response", err)
	})
}
