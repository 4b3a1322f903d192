package llmtransport

import (
	"errors"
	"fmt"
	"net/http"
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

// Error names the circuit and the time to its next probe.
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
	sec := secrets{req: req}
	return &PanicError{Value: v, msg: sec.mask(fmt.Sprint(v))}
}

// Error says that the base transport panicked, and with what (the
// request's credentials left out).
func (e *PanicError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("llmtransport: base transport panicked: %v", e.Value)
	}
	return "llmtransport: base transport panicked: " + e.msg
}
