package llmtransport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
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

// Credentials that do not look like keys: a gateway that echoes them back
// is only caught by knowing the request's own values. Each is at least 8
// bytes (shorter values are not masked by value; see redact.RequestSecrets).
var plainSecrets = []string{
	"0a1b2c3d4e5f60718293a4b5c6d7e8f9", // api-key (Azure: 32 hex digits)
	"S3CRETanthropicPlain01",           // x-api-key
	"S3CRETgoogPlain01",                // x-goog-api-key
	"S3CRETqueryKeyPlain01",            // ?key=
	"S3CRETqueryApiKeyDash01",          // ?api-key=
	"S3CRETaccessToken01",              // ?access_token=
	"S3CRETcustomToken01",              // X-Custom-Token (any header named like a secret)
	"S3CRETcookieSession01",            // Cookie
	"S3CRETbasicPassword01",            // Authorization: Basic, decoded
	"S3CRETbearerPlain01",              // Authorization: Bearer, not sk-…
	"S3CRETuserinfoPw01",               // user:password@host
}

// plainSecretRequest returns a request to base carrying plainSecrets; basic
// picks Basic over Bearer for the Authorization header.
func plainSecretRequest(t *testing.T, base string, basic bool) *http.Request {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("user", plainSecrets[10])
	u.Path = "/openai/deployments/gpt-4o/chat/completions"
	u.RawQuery = "api-version=2024-10-21&key=" + plainSecrets[3] + "&api-key=" + plainSecrets[4] + "&access_token=" + plainSecrets[5]
	req := newChatRequest(t, t.Context(), u.String())
	req.Header.Set("api-key", plainSecrets[0])
	req.Header.Set("x-api-key", plainSecrets[1])
	req.Header.Set("x-goog-api-key", plainSecrets[2])
	req.Header.Set("X-Custom-Token", plainSecrets[6])
	req.Header.Set("Cookie", "theme=dark; session="+plainSecrets[7])
	if basic {
		req.SetBasicAuth("user", plainSecrets[8])
	} else {
		req.Header.Set("Authorization", "Bearer "+plainSecrets[9])
	}
	return req
}

// containsSecret returns the first of secrets that s contains, raw or
// query-escaped.
func containsSecret(s string, secrets []string) string {
	for _, sec := range secrets {
		if strings.Contains(s, sec) || strings.Contains(s, url.QueryEscape(sec)) {
			return sec
		}
	}
	return ""
}

// recorded returns everything tel's spans hold as text: names, attributes,
// statuses, events and their attributes.
func recorded(tel *telemetry) string {
	var b strings.Builder
	for _, s := range tel.sr.Ended() {
		fmt.Fprintf(&b, "%s %v %v\n", s.Name(), s.Attributes(), s.Status())
		for _, e := range s.Events() {
			fmt.Fprintf(&b, "  %s %v\n", e.Name, e.Attributes)
		}
	}
	return b.String()
}

// checkRecordedNoSecret fails t if spans, metrics, retry events or err name
// one of secrets.
func checkRecordedNoSecret(t *testing.T, what string, tel *telemetry, events []RetryEvent, err error) {
	t.Helper()
	if s := containsSecret(recorded(tel), plainSecrets); s != "" {
		t.Errorf("%s: spans record secret %q:\n%s", what, s, recorded(tel))
	}
	if s := containsSecret(fmt.Sprintf("%+v", tel.collect(t)), plainSecrets); s != "" {
		t.Errorf("%s: metrics record secret %q", what, s)
	}
	for _, ev := range events {
		text := ev.Classification.Message + " " + ev.Classification.Code + " " + ev.Classification.RequestID
		if ev.Err != nil {
			text += " " + ev.Err.Error()
		}
		if s := containsSecret(text, plainSecrets); s != "" {
			t.Errorf("%s: retry event %q contains secret %q", what, text, s)
		}
	}
	if err != nil {
		if s := containsSecret(err.Error(), plainSecrets); s != "" {
			t.Errorf("%s: error %q contains secret %q", what, err, s)
		}
	}
}

// TestSecretsEchoedByGateway: a gateway that echoes every credential it got
// (headers, query, the decoded Basic password) in its error message, code
// and request ID. Nothing the transport records or hands to hooks names
// one, whatever its shape; the response itself goes back untouched.
func TestSecretsEchoedByGateway(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		var echo []string
		// Values alone, not "name: value": nothing for a pattern to find.
		for _, k := range []string{"Authorization", "Api-Key", "X-Api-Key", "X-Goog-Api-Key", "X-Custom-Token", "Cookie"} {
			echo = append(echo, r.Header.Get(k))
		}
		if _, pw, ok := r.BasicAuth(); ok {
			echo = append(echo, pw)
		}
		for _, vs := range r.URL.Query() {
			echo = append(echo, vs...)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req-"+r.Header.Get("Api-Key"))
		w.WriteHeader(500)
		fmt.Fprintf(w, `{"error":{"message":%q,"code":%q}}`, "invalid upstream credentials: "+strings.Join(echo, " , "), r.Header.Get("X-Api-Key"))
	}))
	defer srv.Close()
	for _, basic := range []bool{false, true} {
		tel := newTelemetry(t)
		var log eventLog
		tr := New(nil, tel.options(WithOnRetry(log.add), WithRetryBudget(0, 0))...)
		resp, err := tr.RoundTrip(plainSecretRequest(t, srv.URL, basic))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 500 || !strings.Contains(string(body), plainSecrets[0]) {
			t.Fatalf("got %d %q, want the gateway's 500 untouched", resp.StatusCode, body)
		}
		what := fmt.Sprintf("basic=%v", basic)
		if len(log.all()) != DefaultMaxRetries {
			t.Errorf("%s: %d retry events, want %d", what, len(log.all()), DefaultMaxRetries)
		}
		for _, ev := range log.all() {
			if !strings.Contains(ev.Classification.Message, "invalid upstream credentials") {
				t.Errorf("%s: message %q lost its text", what, ev.Classification.Message)
			}
		}
		checkRecordedNoSecret(t, what, tel, log.all(), nil)
	}
}

// TestSecretsNotInMiddlewareErrors: Middleware with http.Client.Do as next,
// as openai-go's option.WithMiddleware runs it: a transport error arrives as
// a *url.Error whose text holds the whole URL, ?key= included. The error
// the caller gets, the retry events and the spans name no secret, and
// errors.Is and errors.As still find what the error wraps.
func TestSecretsNotInMiddlewareErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()
	tel := newTelemetry(t)
	var log eventLog
	tr := New(nil, tel.options(WithOnRetry(log.add), WithRetryBudget(0, 0))...)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	_, err = tr.Middleware(plainSecretRequest(t, refused, false), client.Do)
	if err == nil {
		t.Fatal("got no error from a refused connection")
	}
	if len(log.all()) == 0 {
		t.Error("no retry event to check")
	}
	checkRecordedNoSecret(t, "Middleware", tel, log.all(), err)
	var ue *url.Error
	if !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &ue) {
		t.Errorf("error %v: errors.Is(ECONNREFUSED) %v, errors.As(*url.Error) %v; want both", err, errors.Is(err, syscall.ECONNREFUSED), errors.As(err, &ue))
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q lost its text", err)
	}
}
