package llmtransport

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// Error bodies the base transport did not decompress: the request asked
// for an encoding itself (Accept-Encoding: gzip, as httputil.ReverseProxy
// forwards it), so Go's transport hands the body back as it came.

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

// TestEncodedErrorBodyClassified: a 429 insufficient_quota whose body is
// gzip- or deflate-encoded is classified from its body (quota, not
// retried), and the caller gets the body exactly as it came: the encoded
// bytes, Content-Encoding intact.
func TestEncodedErrorBodyClassified(t *testing.T) {
	checkLeaks(t)
	for _, enc := range []string{"gzip", "deflate", "raw deflate"} {
		wire := encode(t, enc, quotaBody)
		var requests atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", strings.Fields(enc)[len(strings.Fields(enc))-1])
			w.WriteHeader(429)
			w.Write(wire)
		}))
		base := &http.Transport{}
		var log eventLog
		tr := New(base, append(fastRetries(), WithOnRetry(log.add))...)
		req := newChatRequest(t, t.Context(), srv.URL)
		req.Header.Set("Accept-Encoding", "gzip, deflate")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 429 || requests.Load() != 1 || len(log.all()) != 0 {
			t.Errorf("%s: got %d after %d requests, %d retries; want the 429 after 1, not retried", enc, resp.StatusCode, requests.Load(), len(log.all()))
		}
		if !bytes.Equal(got, wire) || resp.Header.Get("Content-Encoding") == "" || resp.Uncompressed {
			t.Errorf("%s: body %q (Content-Encoding %q), want the %d encoded bytes as sent", enc, got, resp.Header.Get("Content-Encoding"), len(wire))
		}
		srv.Close()
		base.CloseIdleConnections()
	}
}

// TestEncodedErrorBodyThroughReverseProxy: httputil.ReverseProxy over a
// Transport forwards its client's Accept-Encoding, so the upstream's gzip
// 429 reaches the transport encoded. It is still not retried, and the
// proxy's client (which asked for gzip) decodes the original message.
func TestEncodedErrorBodyThroughReverseProxy(t *testing.T) {
	checkLeaks(t)
	var requests atomic.Int64
	wire := encode(t, "gzip", quotaBody)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Length", strconv.Itoa(len(wire)))
			w.WriteHeader(429)
			w.Write(wire)
			return
		}
		w.WriteHeader(429)
		io.WriteString(w, quotaBody)
	}))
	defer upstream.Close()
	u, _ := url.Parse(upstream.URL)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.Transport = New(base, fastRetries()...)
	front := httptest.NewServer(proxy)
	defer front.Close()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Post(front.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || requests.Load() != 1 {
		t.Errorf("got %d after %d upstream requests, want the 429 after 1", resp.StatusCode, requests.Load())
	}
	if string(got) != quotaBody {
		t.Errorf("client read %q, want the upstream's message", got)
	}
}

// TestHostileGzipBombEncodedErrorBody: TestHostileGzipBombErrorBody with
// the request asking for gzip itself, so that the transport, not the base,
// meets the bomb: a 500 of 1 GiB of zeros in 1 MiB of gzip. What is decoded
// to classify it is bounded (64 KiB out of at most 64 KiB in), and the
// caller gets the compressed bytes as sent.
func TestHostileGzipBombEncodedErrorBody(t *testing.T) {
	checkLeaks(t)
	srv, ct, base, member := gzipBombServer(t)
	tr := New(base, fastRetries()...)
	req := newChatRequest(t, t.Context(), srv.URL)
	req.Header.Set("Accept-Encoding", "gzip")
	var resp *http.Response
	var err error
	alloc := allocated(func() { resp, err = tr.RoundTrip(req) })
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Uncompressed || resp.StatusCode != 500 || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("got %d, uncompressed %v, Content-Encoding %q; want the 500 as sent", resp.StatusCode, resp.Uncompressed, resp.Header.Get("Content-Encoding"))
	}
	t.Logf("allocated %d KiB in RoundTrip", alloc>>10)
	if alloc > 8<<20 {
		t.Fatalf("allocated %d KiB in RoundTrip, want under 8 MiB", alloc>>10)
	}
	w := &patternWriter{pattern: member}
	if _, err := io.CopyN(w, resp.Body, int64(4*len(member))); err != nil {
		t.Fatalf("reading the handed-back body: %v after %d bytes", err, w.n)
	}
	resp.Body.Close()
	tr.CloseIdleConnections()
	ct.waitClosed(t)
}
