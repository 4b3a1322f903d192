package reqmodel

import (
	"bytes"
	"io"
	"net/http"
)

// Params are the top-level numbers of a JSON request body that say how much
// the request may cost against a rate limit: what the root's pacing
// estimates a request's tokens from (see pacing.Estimate).
type Params struct {
	// MaxOutput is the largest of the top-level max_tokens,
	// max_completion_tokens and max_output_tokens, 0 when the body has
	// none (or none that is a non-negative number).
	MaxOutput int64
	// N is the top-level n, 0 when absent (or not a non-negative number).
	// It multiplies MaxOutput only: when the body surely has no key
	// MaxOutput is read from, the scan is skipped (see headWith) and N is
	// left 0 too.
	N int64
}

// maxParam is the largest number kept: larger ones are taken as this. No
// rate limit is that large, so a request that asks for more is never paced.
const maxParam = 1 << 40

// FindWith is [Find] that also reads the numbers of [Params] from the
// top level of the JSON body into *p, in the same scan: instead of stopping
// at "model" (or looking for it at the body's ends first) the scan goes on
// through the whole top level, skipping nested values as it does, so it
// costs a forward pass over the body. With p nil it is Find, and costs
// nothing more.
//
// The model named by the context or the path still wins over the body's;
// the body is then scanned for the numbers only, unless it cannot be read
// without taking it from req.Body (Find's shared case), when *p is left
// zero.
func FindWith(req *http.Request, body []byte, p *Params) (model string, shared io.ReadCloser, err error) {
	if p == nil {
		return Find(req, body)
	}
	m, ok := req.Context().Value(modelKey{}).(string)
	if !ok {
		m = pathModel(req.URL.Path)
		ok = m != ""
	}
	bm, shared, err := bodyModel(req, body, p)
	if ok {
		// shared is req.Body itself, not read: it is sent as it is.
		return m, nil, err
	}
	if bm != "" || shared != nil || err != nil {
		return bm, shared, err
	}
	return queryModel(req.URL.RawQuery), nil, nil
}

// InBodyWith is [InBody] that also reads the numbers of [Params] into *p
// (p not nil) in the same scan; b is all the body when whole is true,
// else its start, whose numbers alone are read.
func InBodyWith(b []byte, whole bool, p *Params) string { return inBody(b, whole, p) }

// headWith answers the scan of [FindWith] for b, all of a body, without
// running it, when it can: the body's first member is "model" with a
// string value without escapes ([headModel]), which the scan would take
// too (it keeps the first top-level "model"), and no key MaxOutput is read
// from can be in the body ([paramFree]), so that it is 0 and so is what n
// multiplies: the answer is the zero Params (N unread). ok is false
// otherwise, and the scanner must read the whole top level. A body over
// maxModelScan is left to the scanner, which finds no model in it.
func headWith(b []byte) (model string, ok bool) {
	if len(b) > maxModelScan {
		return "", false
	}
	if model, ok = headModel(b); !ok || !paramFree(b) {
		return "", false
	}
	return model, true
}

// paramFree reports whether b surely has no key that MaxOutput is read
// from: no '_', which max_tokens, max_completion_tokens and
// max_output_tokens all have, written as it is or as the escape \u005f
// (or \u005F: the only other way JSON can write it). Both searches are
// vectorised byte searches for bytes that prose seldom has ('_', then the
// '0' of "005"), so that on most bodies without the keys they cost a pass
// of a few nanoseconds per hundred bytes. A "005f" anywhere (not only in an
// escape) sends the body to the scanner, which decides.
func paramFree(b []byte) bool {
	if bytes.IndexByte(b, '_') >= 0 {
		return false
	}
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte("005"))
		if j < 0 {
			return true
		}
		i += j + len("005")
		if i < len(b) && b[i]|0x20 == 'f' {
			return false
		}
	}
}

// The top-level keys whose numbers are read.
const (
	keyNone uint8 = iota
	keyMaxOutput
	keyN
)

// numScan is the state of a modelScanner that reads the numbers of Params
// too. Its zero value reads none.
type numScan struct {
	collect  bool  // read the numbers: the scan goes on past "model"
	modelSet bool  // the model is found: later "model" keys are skipped
	key      uint8 // the key of the current top-level value
	bad      bool  // the current number is not a non-negative integer
	frac     bool  // past its decimal point (the fraction is dropped)
	digits0  bool  // it has a digit
	v        int64 // its value so far
	params   Params
}

// keyParam sets s.num.key from the top-level key just read into s.raw.
func (s *modelScanner) keyParam() {
	n := &s.num
	n.key, n.bad, n.frac, n.digits0, n.v = keyNone, false, false, false, 0
	switch {
	case s.long || s.n < 1 || s.n > len("max_completion_tokens"):
	case s.rawIs("max_tokens"), s.rawIs("max_completion_tokens"), s.rawIs("max_output_tokens"):
		n.key = keyMaxOutput
	case s.rawIs("n"):
		n.key = keyN
	}
}

// digits reads the next bytes of the current number.
func (n *numScan) digits(b []byte) {
	for _, c := range b {
		switch {
		case n.bad:
			return
		case c >= '0' && c <= '9':
			n.digits0 = true
			if !n.frac {
				n.v = min(n.v*10+int64(c-'0'), maxParam)
			}
		case c == '.' && !n.frac && n.digits0:
			n.frac = true
		default: // a sign, an exponent, true, false, null
			n.bad = true
		}
	}
}

// end ends the current number, keeping it when it is one.
func (n *numScan) end() {
	if !n.bad && n.digits0 {
		switch n.key {
		case keyMaxOutput:
			n.params.MaxOutput = max(n.params.MaxOutput, n.v)
		case keyN:
			n.params.N = n.v
		}
	}
	n.key = keyNone
}

// put copies the numbers read into *p, if p is not nil.
func (n *numScan) put(p *Params) {
	if p != nil {
		*p = n.params
	}
}

// rawModel is rawString, interned as headModel's names are when it has no
// escapes, so that the scan that reads the numbers does not allocate the
// name either.
func (s *modelScanner) rawModel() string {
	if raw := s.raw[:s.n]; !s.long && s.n <= maxModelLen && bytes.IndexByte(raw, '\\') < 0 {
		return internModel(raw)
	}
	return s.rawString()
}
