package llmtransport

import (
	"cmp"
	"net/http"
	"slices"
	"strings"

	"github.com/llmtransport/llmtransport/internal/redact"
)

// The request's own credentials, as the transport masks them.
//
// Everything the transport records or hands out — span statuses and
// attributes, Classification.Message, Code and RequestID as hooks see them,
// RetryEvent.Err, the error returned — has the request's own credential
// values replaced by REDACTED (internal/redact says which headers and
// parameters carry them), and messages also have anything that looks like a
// key masked.
//
// They are collected once per call, at the first string that needs
// masking: a call that succeeds at once never collects them.

// secrets are the credentials of one call's request, collected on first
// use, and those of the requests the call sent before it (a fallback
// route may change the API key: the primary's response, handed back when
// the chain fails, may echo the primary's).
type secrets struct {
	req  *http.Request
	prev []string // the earlier requests' credentials, longest first
	vals []string
	done bool
}

// next returns the secrets of r, a request the call sends after s's: its
// own credentials and s's.
func (s *secrets) next(r *http.Request) secrets {
	return secrets{req: r, prev: s.list()}
}

// list returns the credentials, longest first, collecting them on the
// first call.
func (s *secrets) list() []string {
	if !s.done {
		s.vals, s.done = redact.RequestSecrets(s.req), true
		if len(s.prev) > 0 {
			vals := append(slices.Clone(s.prev), s.vals...)
			slices.SortFunc(vals, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
			s.vals = slices.Compact(vals)
		}
	}
	return s.vals
}

// mask returns str with the request's credentials and anything that looks
// like a key masked.
func (s *secrets) mask(str string) string {
	if str == "" {
		return ""
	}
	return redact.Secrets(redact.Replace(str, s.list()))
}

// maskValues returns str with the request's credentials masked, and
// nothing else: for codes and request IDs, which pattern masking could
// mistake for keys.
func (s *secrets) maskValues(str string) string {
	if str == "" {
		return ""
	}
	return redact.Replace(str, s.list())
}

// maskErr returns err when its text names no credential, else an error
// whose text is masked and which wraps err: errors.Is and errors.As find
// what err wraps (a *url.Error found that way still holds the URL as it
// was: it is the caller's own).
func (s *secrets) maskErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*maskedError); ok {
		return err
	}
	msg := err.Error()
	if m := s.mask(msg); m != msg {
		return &maskedError{msg: m, err: err}
	}
	return err
}

// maskedError is an error whose text had credentials masked.
type maskedError struct {
	msg string
	err error
}

// Error returns the masked text.
func (e *maskedError) Error() string { return e.msg }

// Unwrap returns the error whose text was masked.
func (e *maskedError) Unwrap() error { return e.err }
