package reqmodel

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"unsafe"
)

// modelScanPool keeps modelScanners, which hold an 8 KiB read buffer.
var modelScanPool = sync.Pool{New: func() any { return new(modelScanner) }}

// bodyModel returns the top-level "model" string of req's JSON body.
//
// The body is read through GetBody, which should return a fresh copy of it;
// some return the very reader Body holds, after seeking it back to its
// start (go-retryablehttp over an io.ReadSeeker, hand-written GetBody funcs),
// and reading that would leave nothing to send. So:
//   - when Body can seek, it is put back where it was after the read
//     (err, should that fail);
//   - when GetBody returns Body itself (the same interface value, such as
//     io.NopCloser over the same reader), nothing is read: shared is that
//     reader, for the transport to read once and send from its buffer.
//
// A GetBody that wraps Body's reader in a new wrapper of its own each time,
// over a Body that cannot seek, cannot be told from one that returns a copy.
//
// With p not nil, the scan goes on past the model to the end of the top
// level and puts the numbers pacing needs in *p (see [FindWith]).
func bodyModel(req *http.Request, buffered []byte, p *Params) (model string, shared io.ReadCloser, err error) {
	// The header as Get would find it, without canonicalising a key that
	// is canonical already.
	if ct := req.Header["Content-Type"]; len(ct) > 0 && !jsonish(ct[0]) {
		return "", nil, nil
	}
	if buffered != nil {
		return inBody(buffered, true, p), nil, nil
	}
	if req.Body == nil || req.Body == http.NoBody || req.GetBody == nil {
		return "", nil, nil
	}
	// Bodies of http.NewRequest are io.NopCloser over a bytes or strings
	// reader, which cannot seek: the common case skips this.
	seeker, _ := req.Body.(io.Seeker)
	var off int64
	if seeker != nil {
		if off, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			return "", nil, nil // where it is cannot be known: do not read it
		}
	}
	rc, err := req.GetBody()
	if err != nil || rc == nil {
		return "", nil, nil
	}
	same := sameReader(rc, req.Body)
	if same && seeker == nil {
		return "", rc, nil
	}
	model = readerModel(rc, req.ContentLength, p)
	if !same {
		rc.Close()
	}
	if seeker != nil {
		if _, err := seeker.Seek(off, io.SeekStart); err != nil {
			return model, nil, fmt.Errorf("llmtransport: seeking the request body back after reading its model: %w", err)
		}
	}
	return model, nil, nil
}

// sameReader reports whether a and b are the same interface value. Values
// of a type that cannot be compared are not the same.
func sameReader(a, b io.Reader) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// InBody returns the top-level "model" string of b, the start of a JSON
// body, or "" if it has none that fits the limits; whole reports whether b
// is all of the body (then its tail is looked at before the rest, see
// [Find]).
func InBody(b []byte, whole bool) string { return inBody(b, whole, nil) }

// inBody is InBody that, with p not nil, also reads the numbers of
// [Params] into *p.
func inBody(b []byte, whole bool, p *Params) string {
	if p == nil {
		if m, ok := headModel(b); ok {
			return m
		}
	} else if whole {
		if m, ok := headWith(b); ok {
			*p = Params{}
			return m
		}
	}
	s := getScanner(0)
	defer modelScanPool.Put(s)
	s.num.collect = p != nil
	if whole {
		s.scanWhole(b)
	} else {
		s.feed(b)
	}
	s.num.put(p)
	return s.result()
}

// readerModel returns the top-level "model" string of the body read from
// r, of size bytes (0 or -1: unknown).
func readerModel(r io.Reader, size int64, p *Params) string {
	w := modelWriterPool.Get().(*modelWriter)
	*w = modelWriter{size: size, collect: p != nil}
	if wt, ok := r.(io.WriterTo); ok {
		// bytes.Reader and strings.Reader (and io.NopCloser over them)
		// write their remaining bytes in one call, without a copy.
		wt.WriteTo(w)
	} else {
		w.s = w.scanner()
		w.s.ReadFrom(r)
	}
	if w.s != nil {
		w.model = w.s.result()
		w.s.num.put(p)
		modelScanPool.Put(w.s)
	} else if p != nil {
		*p = Params{} // headWith: none of the numbers is in the body
	}
	m := w.model
	*w = modelWriter{}
	modelWriterPool.Put(w)
	return m
}

// modelWriterPool keeps modelWriters: passed to an io.WriterTo, one would
// otherwise be allocated for every request.
var modelWriterPool = sync.Pool{New: func() any { return new(modelWriter) }}

// getScanner returns a reset scanner from the pool, for a body of size
// bytes (0: unknown).
func getScanner(size int64) *modelScanner {
	s := modelScanPool.Get().(*modelScanner)
	s.reset()
	s.size = size
	return s
}

// modelWriter takes a body from an [io.WriterTo]. It first tries
// [headModel] on the start of the body, and only when that cannot tell
// does it take a scanner from the pool and feed it.
type modelWriter struct {
	size    int64
	collect bool          // read the numbers of Params too
	s       *modelScanner // nil until needed
	model   string
}

// Write implements [io.Writer]. It returns errScanDone once the answer is
// known, which stops the [io.WriterTo] writing to it.
func (w *modelWriter) Write(p []byte) (int, error) {
	if w.s == nil {
		var m string
		ok := false
		if !w.collect {
			m, ok = headModel(p)
		} else if w.size > 0 && int64(len(p)) == w.size {
			// The whole body at once, as the scanner would take it
			// (modelScanner.Write).
			m, ok = headWith(p)
		}
		if ok {
			w.model = m
			return len(p), errScanDone
		}
		w.s = w.scanner()
	}
	return w.s.Write(p)
}

// WriteString implements [io.StringWriter], so that a strings.Reader body
// is scanned in place: io.WriteString would otherwise copy it whole.
func (w *modelWriter) WriteString(str string) (int, error) {
	// The bytes are only read, never written or kept.
	return w.Write(unsafe.Slice(unsafe.StringData(str), len(str)))
}

// scanner returns a scanner from the pool for w's body.
func (w *modelWriter) scanner() *modelScanner {
	s := getScanner(w.size)
	s.num.collect = w.collect
	return s
}
