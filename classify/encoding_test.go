package classify

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"strconv"
	"strings"
	"testing"
)

// Error bodies whose Content-Encoding says they are compressed: a client
// that asked for an encoding itself (Accept-Encoding: gzip, as
// httputil.ReverseProxy forwards it) gets the body as the server sent it.

const quotaBody = `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`

// encode returns s compressed with the content coding enc.
func encode(t testing.TB, enc, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	switch enc {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "deflate": // RFC 9110: the zlib format
		w = zlib.NewWriter(&b)
	case "raw deflate": // what some servers send as "deflate"
		w, _ = flate.NewWriter(&b, flate.DefaultCompression)
	default:
		t.Fatalf("unknown encoding %q", enc)
	}
	io.WriteString(w, s)
	w.Close()
	return b.Bytes()
}

// TestClassifyEncodedBody: Classify itself reads a body whose
// Content-Encoding says it is compressed, when it is; a body that says so
// but is not (already decoded by the caller) is read as it is; br and zstd,
// which the standard library cannot decode, fall back to the status.
func TestClassifyEncodedBody(t *testing.T) {
	tests := []struct {
		name, enc string
		body      []byte
		want      Class
	}{
		{"gzip", "gzip", encode(t, "gzip", quotaBody), ClassQuotaExhausted},
		{"x-gzip", "x-gzip", encode(t, "gzip", quotaBody), ClassQuotaExhausted},
		{"deflate (zlib)", "deflate", encode(t, "deflate", quotaBody), ClassQuotaExhausted},
		{"deflate (raw)", "deflate", encode(t, "raw deflate", quotaBody), ClassQuotaExhausted},
		{"upper case", "GZIP", encode(t, "gzip", quotaBody), ClassQuotaExhausted},
		{"already decoded", "gzip", []byte(quotaBody), ClassQuotaExhausted},
		{"cut short", "gzip", cutShort(t), ClassQuotaExhausted},
		{"plain JSON, says deflate", "deflate", []byte(quotaBody), ClassQuotaExhausted},
		{"garbage, says deflate", "deflate", []byte{0xff, 0xff, 0xff, 0x00}, ClassRateLimited},
		{"br", "br", []byte{0x1b, 0x2d, 0, 0}, ClassRateLimited},
	}
	for _, tt := range tests {
		resp := resp(429, "Content-Type", jsonCT, "Content-Encoding", tt.enc)
		cl := Classify(resp, tt.body)
		if cl.Class != tt.want {
			t.Errorf("%s: class %v (code %q), want %v", tt.name, cl.Class, cl.Code, tt.want)
		}
	}
}

// cutShort returns the first half of a gzip body whose code comes first:
// the peek of a body longer than it holds.
func cutShort(t *testing.T) []byte {
	var long strings.Builder
	for i := range 2000 {
		long.WriteString(strconv.Itoa(i * 7919 % 10007))
	}
	b := encode(t, "gzip", `{"error":{"code":"insufficient_quota","message":"`+long.String()+`"}}`)
	return b[:len(b)/2]
}
