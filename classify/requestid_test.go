package classify

import (
	"net/http"
	"slices"
	"testing"
)

// TestRequestIDHeaders checks the exported header table: canonical names,
// in the order Classify takes a request ID from them (the first one set
// wins), and a copy the caller may change without changing Classify.
func TestRequestIDHeaders(t *testing.T) {
	hs := RequestIDHeaders()
	if len(hs) == 0 || !slices.Equal(hs, requestIDHeaders[:]) {
		t.Fatalf("RequestIDHeaders() = %v, want %v", hs, requestIDHeaders)
	}
	for i, h := range hs {
		if h != http.CanonicalHeaderKey(h) {
			t.Errorf("%q is not canonical", h)
		}
		// Every header after h is set too: h, the first, wins.
		kv := []string{}
		for _, later := range hs[i:] {
			kv = append(kv, later, "id-of-"+later)
		}
		if got := Classify(resp(500, kv...), nil).RequestID; got != "id-of-"+h {
			t.Errorf("with %v set: request id %q, want %q", hs[i:], got, "id-of-"+h)
		}
	}
	hs[0] = "X-Changed"
	if RequestIDHeaders()[0] == "X-Changed" || Classify(resp(500, "X-Changed", "x"), nil).RequestID != "" {
		t.Error("changing the returned slice changed the table")
	}
}
