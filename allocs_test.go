package llmtransport

import (
	"math"
	"net/http"
	"testing"
)

// TestNoAllocationAdded: shared state with no live hold, and pacing, add
// no allocation to a success (what BenchmarkLayersOverhead reports, held
// as a test): the same allocations per call as the plain transport.
func TestNoAllocationAdded(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	allocs := func(rt http.RoundTripper) float64 {
		overheadRoundTrip(rt) // the first calls make the circuit, the keys
		return testing.AllocsPerRun(200, func() { overheadRoundTrip(rt) })
	}
	for _, tt := range []struct {
		name        string
		plain, with http.RoundTripper
	}{
		{"shared state, no live hold", New(cannedRT{}), New(cannedRT{}, WithSharedState(nopState{}))},
		{"pacing, no headers", New(cannedRT{}), New(cannedRT{}, WithPacing())},
		{"pacing, OpenAI's headers", New(cannedLimitRT{}), New(cannedLimitRT{}, WithPacing())},
	} {
		plain, got := allocs(tt.plain), allocs(tt.with)
		if math.Abs(got-plain) >= 0.5 {
			t.Errorf("%s: %.1f allocations per call, want the plain transport's %.1f", tt.name, got, plain)
		}
	}
}
