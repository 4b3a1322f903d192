// Package reqmodel finds the model an LLM API request asks for, without
// decoding its body and without reading the request's own Body: from the
// context, a Gemini, Vertex or Azure path, the top-level "model" of a JSON
// body, or a model= query parameter. The transport keys its circuits,
// cooldowns and span names with it.
package reqmodel

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// modelKey is the context key of the model named by NewContext.
type modelKey struct{}

// NewContext returns a copy of ctx that names the model of the requests
// sent with it: [Find] returns it without looking at the request. An empty
// model is a model too: Find returns "" for those requests.
func NewContext(ctx context.Context, model string) context.Context {
	return context.WithValue(ctx, modelKey{}, model)
}

// Limits of model extraction.
const (
	// maxModelLen is the longest model name taken from a body, path or
	// query; a longer one is ignored.
	maxModelLen = 256
	// maxModelRaw is the longest a top-level "model" string (or a key) may
	// be as written, escapes included.
	maxModelRaw = 6 * maxModelLen
	// maxModelScan is how many body bytes are looked at, at most, to find
	// the top-level "model".
	maxModelScan = 16 << 20
	// modelReadBuf is the size of the pooled buffer a body that cannot
	// hand over its bytes is read through.
	modelReadBuf = 8 << 10
)

// Find returns the model that req asks for: the one named by
// [NewContext]; else the model in a Gemini or Vertex path
// (…/models/{model}:verb, …/tunedModels/{model}:verb) or an Azure deployment
// path (/openai/deployments/{name}/…), which name what the server routes on;
// else the top-level "model" string of a JSON body (body when the transport
// buffered it, else read through GetBody; req.Body is never read); else a
// model= query parameter (the Realtime API); else "".
//
// The body is scanned, not decoded: nested objects, arrays and strings are
// skipped, and the scan stops at the top-level "model". With the whole body
// at hand (buffered, or handed over by GetBody's reader without a copy, as
// the bytes and strings readers of [net/http.NewRequest] do) it looks at the
// first 256 bytes, then walks the last 4 KiB backward, so that a "model"
// written first or after the messages is found without reading the rest.
// Otherwise it reads through a pooled 8 KiB buffer. It looks at 16 MiB at
// most.
//
// The transport must also know when the body could not be read without
// taking it from req.Body: shared, when not nil, is what GetBody returned,
// which is req.Body itself (see bodyModel), not read at all. The caller then
// reads the body from it once, sends those bytes, and looks for the model in
// them with [InBody]. err reports a seekable Body that could not be put back
// where it was.
func Find(req *http.Request, body []byte) (model string, shared io.ReadCloser, err error) {
	if m, ok := req.Context().Value(modelKey{}).(string); ok {
		return m, nil, nil
	}
	if m := pathModel(req.URL.Path); m != "" {
		return m, nil, nil
	}
	m, shared, err := bodyModel(req, body, nil)
	if m != "" || shared != nil || err != nil {
		return m, shared, err
	}
	return queryModel(req.URL.RawQuery), nil, nil
}

// pathModel returns the model named by a Gemini, Vertex or Azure path.
func pathModel(p string) string {
	// Gemini and Vertex paths end in a ":verb"; most paths have no colon,
	// so most requests skip the searches.
	for _, prefix := range [...]string{"/models/", "/tunedModels/"} {
		if strings.IndexByte(p, ':') < 0 {
			break
		}
		if i := strings.LastIndex(p, prefix); i >= 0 {
			seg := p[i+len(prefix):]
			if j := strings.IndexByte(seg, ':'); j > 0 && j <= maxModelLen && strings.IndexByte(seg[:j], '/') < 0 {
				return seg[:j]
			}
		}
	}
	const azure = "/openai/deployments/"
	if i := strings.Index(p, azure); i >= 0 {
		seg := p[i+len(azure):]
		if j := strings.IndexByte(seg, '/'); j >= 0 {
			seg = seg[:j]
		}
		if len(seg) <= maxModelLen {
			return seg
		}
	}
	return ""
}

// queryModel returns the value of the model parameter of a raw query.
func queryModel(q string) string {
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		v, ok := strings.CutPrefix(kv, "model=")
		if !ok || v == "" || len(v) > 3*maxModelLen {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				return ""
			}
			v = u
		}
		if len(v) > maxModelLen {
			return ""
		}
		return v
	}
	return ""
}

// jsonish reports whether a body of content type ct may be JSON.
func jsonish(ct string) bool {
	return ct == "" || strings.Contains(ct, "json") || strings.HasPrefix(ct, "text/plain")
}
