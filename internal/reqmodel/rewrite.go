package reqmodel

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// Where says where a request names its model, as [Find] reads it: the
// place [Rewrite] changes.
type Where uint8

// The places a model is named.
const (
	Nowhere Where = iota
	InPath        // a Gemini, Vertex or Azure path
	InJSON        // the top-level "model" string of a JSON body
	InQuery       // a model= query parameter
)

// Rewrite returns a copy of req that asks for model instead of the one it
// names, and the copy's body when it differs from req's: the model is
// replaced where [Find] reads it (a path, the top-level "model" of body,
// a model= query parameter) and, when req's context names the model
// ([NewContext]), in the copy's context too. body is req's whole body (nil
// for none). Nothing else changes: every other byte of the body, path and
// query is kept as it was, and neither req, its URL nor body is modified.
// The copy shares req's headers; its Body and GetBody are not set (the
// caller makes them from the returned body, or req's). where is Nowhere,
// and the copy nil, when req names no model that can be rewritten (a body
// that is not valid JSON, a "model" that is not a string).
func Rewrite(req *http.Request, body []byte, model string) (out *http.Request, newBody []byte, where Where) {
	u := *req.URL
	switch {
	case pathModel(req.URL.Path) != "":
		if !rewritePath(&u, model) {
			return nil, nil, Nowhere
		}
		where = InPath
	case jsonBody(req):
		nb, ok := RewriteBody(body, model)
		if ok {
			newBody, where = nb, InJSON
			break
		}
		fallthrough
	default:
		q, ok := rewriteQuery(req.URL.RawQuery, model)
		if !ok {
			return nil, nil, Nowhere
		}
		u.RawQuery, where = q, InQuery
	}
	ctx := req.Context()
	if _, ok := ctx.Value(modelKey{}).(string); ok {
		ctx = context.WithValue(ctx, modelKey{}, model)
	}
	out = req.WithContext(ctx)
	out.URL = &u
	out.Body, out.GetBody = nil, nil
	return out, newBody, where
}

// jsonBody reports whether req's body may be JSON, as bodyModel decides.
func jsonBody(req *http.Request) bool {
	ct := req.Header["Content-Type"]
	return len(ct) == 0 || jsonish(ct[0])
}

// rewritePath replaces the model segment of u's path (and of its escaped
// form, when u keeps one) with model.
func rewritePath(u *url.URL, model string) bool {
	if model == "" || strings.Contains(model, "/") {
		return false // a slash would change the path's shape
	}
	p, ok := replaceSegment(u.Path, model)
	if !ok || pathModel(p) != model {
		return false // nor may a colon in a Gemini path
	}
	if u.RawPath != "" {
		rp, ok := replaceSegment(u.RawPath, url.PathEscape(model))
		if !ok {
			return false
		}
		u.RawPath = rp
	}
	u.Path = p
	return true
}

// replaceSegment replaces, in path p, the segment pathModel reads with m.
func replaceSegment(p, m string) (string, bool) {
	seg := pathModel(p)
	if seg == "" {
		return "", false
	}
	// pathModel reads the last /models/ (or /tunedModels/) segment that
	// ends in a colon, else the first Azure deployment.
	if strings.IndexByte(p, ':') >= 0 {
		for _, prefix := range [...]string{"/models/", "/tunedModels/"} {
			if i := strings.LastIndex(p, prefix); i >= 0 {
				start := i + len(prefix)
				if strings.HasPrefix(p[start:], seg+":") {
					return p[:start] + m + p[start+len(seg):], true
				}
			}
		}
	}
	const azure = "/openai/deployments/"
	if i := strings.Index(p, azure); i >= 0 {
		start := i + len(azure)
		if strings.HasPrefix(p[start:], seg) {
			return p[:start] + m + p[start+len(seg):], true
		}
	}
	return "", false
}

// rewriteQuery replaces the value of the model= parameter queryModel reads
// with model, escaped; every other byte of the raw query is kept.
func rewriteQuery(q, model string) (string, bool) {
	if queryModel(q) == "" {
		return "", false
	}
	off := 0
	for rest := q; rest != ""; {
		kv, next, found := strings.Cut(rest, "&")
		if v, ok := strings.CutPrefix(kv, "model="); ok && v != "" && len(v) <= 3*maxModelLen {
			start := off + len("model=")
			return q[:start] + url.QueryEscape(model) + q[start+len(v):], true
		}
		off += len(kv)
		if found {
			off++
		}
		rest = next
	}
	return "", false
}

// RewriteBody returns a copy of the JSON object body whose top-level "model"
// strings (every one, should the key be repeated) are replaced by model;
// every other byte is kept as it was. ok is false, and the copy nil, when
// body is not valid JSON, not an object, or has no top-level "model"
// string. The copy is made once, at its final size.
func RewriteBody(body []byte, model string) (out []byte, ok bool) {
	if !json.Valid(body) {
		return nil, false
	}
	spans := modelSpans(body)
	if len(spans) == 0 {
		return nil, false
	}
	enc, err := json.Marshal(model)
	if err != nil {
		return nil, false
	}
	size := len(body)
	for _, s := range spans {
		size += len(enc) - (s[1] - s[0])
	}
	out = make([]byte, 0, size)
	prev := 0
	for _, s := range spans {
		out = append(out, body[prev:s[0]]...)
		out = append(out, enc...)
		prev = s[1]
	}
	return append(out, body[prev:]...), true
}

// modelSpans returns the spans [start, end) of the top-level "model"
// string values (quotes included) of b, which is valid JSON.
func modelSpans(b []byte) [][2]int {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil
	}
	var spans [][2]int
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] == '}' {
			return spans
		}
		if b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		// A key.
		ks := i
		i = stringAt(b, i)
		key := b[ks:i]
		i = skipSpace(b, i)
		i = skipSpace(b, i+1) // the colon
		vs := i
		i = valueEnd(b, i)
		if b[vs] == '"' && isModelKey(key) {
			spans = append(spans, [2]int{vs, i})
		}
	}
}

// isModelKey reports whether q, a JSON string with its quotes, is "model".
func isModelKey(q []byte) bool {
	if bytes.Equal(q, []byte(`"model"`)) {
		return true
	}
	return bytes.IndexByte(q, '\\') >= 0 && unescapeJSON(q) == "model"
}

// stringAt returns the index just past the JSON string starting at b[i].
func stringAt(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// valueEnd returns the index just past the JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringAt(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringAt(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	default:
		j := i
		for j < len(b) && !scalarEnd[b[j]] {
			j++
		}
		return j
	}
}
