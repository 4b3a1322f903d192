package wire

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Error bodies with a Content-Encoding.
//
// Go's transport decompresses gzip itself only when it asked for it; a
// request that names its own Accept-Encoding (httputil.ReverseProxy forwards
// its client's) gets the body as the server encoded it. Decode reads
// such a body for classification, bounded on both sides: the input is the
// peek (at most MaxPeek bytes of the encoded body), the output at most
// MaxPeek bytes, so a compression bomb costs at most one pooled buffer. The
// response itself goes back to the caller as it came, still encoded.
//
// gzip (and x-gzip) and deflate (zlib, as RFC 9110 defines it, or the raw
// deflate some servers send) are decoded. br and zstd are not: the standard
// library has no decoder for them, so such a body is classified from its
// status and headers alone.

// Encoded reports whether h names a content coding other than identity: a
// body the base left as the server encoded it.
func Encoded(h http.Header) bool {
	enc, layered := coding(h)
	return enc != "" || layered
}

// coding returns the content coding h names (lower case, "" for none or
// identity), and whether it names more than one.
func coding(h http.Header) (enc string, layered bool) {
	for _, v := range h["Content-Encoding"] {
		for _, c := range strings.Split(v, ",") {
			c = strings.ToLower(strings.TrimSpace(c))
			if c == "" || c == "identity" {
				continue
			}
			if enc != "" {
				return enc, true
			}
			enc = c
		}
	}
	return enc, false
}

var (
	gzipReaders  sync.Pool // *gzip.Reader
	flateReaders sync.Pool // io.ReadCloser that is a flate.Resetter
)

// Decode returns body decoded from the single content coding h names, at
// most MaxPeek bytes of it, in a buffer from Pool that the caller
// must put back (buf, nil when body is returned as it is). body comes back
// unchanged when there is no coding, one it cannot decode, several, or when
// the bytes do not start as the coding's do (a body already decoded). A
// stream cut short (a peek of a longer body) gives what it decoded.
func Decode(h http.Header, body []byte) (out []byte, buf *[]byte) {
	if len(body) < 2 {
		return body, nil
	}
	enc, layered := coding(h)
	if enc == "" || layered {
		return body, nil // none, or layered codings: not worth it
	}
	var r io.Reader
	strict := false // a decoding error means the body was not encoded
	switch enc {
	case "gzip", "x-gzip":
		if body[0] != 0x1f || body[1] != 0x8b {
			return body, nil
		}
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		if zr == nil {
			zr = new(gzip.Reader)
		}
		if zr.Reset(bytes.NewReader(body)) != nil {
			gzipReaders.Put(zr)
			return body, nil
		}
		defer gzipReaders.Put(zr)
		r = zr
	case "deflate":
		data := body
		if cmf, flg := body[0], body[1]; cmf&0x0f == 8 && cmf>>4 <= 7 && (uint(cmf)<<8|uint(flg))%31 == 0 {
			if flg&0x20 != 0 {
				return body, nil // a preset dictionary: cannot decode
			}
			data = body[2:] // the zlib header; its checksum at the end is not checked
		} else {
			// Raw deflate has no header to recognise it by: a body that
			// starts as JSON, HTML or text is taken as already decoded.
			if i := bytes.IndexFunc(body, func(r rune) bool { return r != ' ' && r != '\t' && r != '\r' && r != '\n' }); i >= 0 && strings.IndexByte(`{["<`, body[i]) >= 0 {
				return body, nil
			}
			strict = true
		}
		fr, _ := flateReaders.Get().(io.ReadCloser)
		if fr == nil {
			fr = flate.NewReader(bytes.NewReader(data))
		} else if fr.(flate.Resetter).Reset(bytes.NewReader(data), nil) != nil {
			return body, nil
		}
		defer flateReaders.Put(fr)
		r = fr
	default:
		return body, nil
	}
	buf = Pool.Get().(*[]byte)
	b := (*buf)[:MaxPeek]
	n, err := io.ReadFull(r, b)
	switch err {
	case nil, io.EOF, io.ErrUnexpectedEOF:
	default:
		if strict || n == 0 {
			Pool.Put(buf)
			return body, nil
		}
	}
	return b[:n], buf
}
