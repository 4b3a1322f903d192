package llmtransport

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrCircuitOpen is returned (wrapped in a [*CircuitOpenError]) when a
// request is refused without being sent because the circuit of its model is
// open. Through an [net/http.Client] it arrives wrapped in a [*net/url.Error];
// errors.Is finds it either way.
var ErrCircuitOpen = errors.New("llmtransport: circuit open")

// ErrNilResponse is returned when the base transport returns neither a
// response nor an error, which breaks the [net/http.RoundTripper] contract.
var ErrNilResponse = errors.New("llmtransport: base transport returned a nil response and a nil error")

// CircuitOpenError is the error of a request refused by an open circuit.
// errors.Is(err, ErrCircuitOpen) reports true for it.
type CircuitOpenError struct {
	// Host and Model name the circuit. Model is "" for a per-host circuit.
	Host  string
	Model string
	// RetryIn is how long until the circuit lets the next probe through.
	RetryIn time.Duration
}

func (e *CircuitOpenError) Error() string {
	if e.Model == "" {
		return fmt.Sprintf("llmtransport: circuit open for host %s (next probe in %v)", e.Host, e.RetryIn.Round(time.Millisecond))
	}
	return fmt.Sprintf("llmtransport: circuit open for model %s on %s (next probe in %v)", e.Model, e.Host, e.RetryIn.Round(time.Millisecond))
}

// Is reports whether target is [ErrCircuitOpen].
func (e *CircuitOpenError) Is(target error) bool { return target == ErrCircuitOpen }

// PanicError is returned when the base transport panics. The panic does not
// propagate: the caller gets this error instead, and the circuit counts a
// failure.
type PanicError struct {
	// Value is the value the base transport panicked with.
	Value any

	msg string // Value as text, without the request's credentials
}

// newPanicError returns the error of a panic with value v in the base
// transport's RoundTrip of req. Should v include the request (its URL or
// headers), the message leaves out the credentials req carries; Value keeps
// v as it was.
func newPanicError(v any, req *http.Request) *PanicError {
	msg := fmt.Sprint(v)
	for _, s := range requestSecrets(req) {
		msg = strings.ReplaceAll(msg, s, redacted)
	}
	return &PanicError{Value: v, msg: redactSecrets(msg)}
}

func (e *PanicError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("llmtransport: base transport panicked: %v", e.Value)
	}
	return "llmtransport: base transport panicked: " + e.msg
}

// requestSecrets returns the credentials req carries, as they may appear in
// text: the values of its authentication headers (whole, and without their
// scheme), of its key query parameters (raw and escaped) and its URL's
// password. Values shorter than 4 bytes are left out, so that redacting them
// cannot garble the rest of a message.
func requestSecrets(req *http.Request) []string {
	var out []string
	add := func(s string) {
		if len(s) >= 4 {
			out = append(out, s)
		}
	}
	for _, h := range [...]string{"Authorization", "Proxy-Authorization", "Api-Key", "X-Api-Key", "X-Goog-Api-Key"} {
		for _, v := range req.Header.Values(h) {
			add(v)
			if _, cred, ok := strings.Cut(v, " "); ok {
				add(strings.TrimSpace(cred))
			}
		}
	}
	if u := req.URL; u != nil {
		if p, ok := u.User.Password(); ok {
			add(p)
			add(url.PathEscape(p))
		}
		for k, vs := range u.Query() {
			if sensitiveParam(k) {
				for _, v := range vs {
					add(v)
					add(url.QueryEscape(v))
				}
			}
		}
	}
	return out
}
