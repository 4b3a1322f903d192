package reqmodel

import (
	"fmt"
	"testing"
	"time"
	"unsafe"
)

// TestInternModel: the same bytes give the same string without allocating;
// the table is bounded, and a name beyond a full table never waits for its
// lock.
func TestInternModel(t *testing.T) {
	a := internModel([]byte("intern-test-model"))
	b := internModel([]byte("intern-test-model"))
	if a != "intern-test-model" || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatalf("got %q and %q, want the same string twice", a, b)
	}
	if n := testing.AllocsPerRun(100, func() { internModel([]byte("intern-test-model")) }); n != 0 {
		t.Errorf("an interned name allocates %v times, want 0", n)
	}
	// The table is bounded: names beyond it are still returned right.
	for i := range 2 * maxInterned {
		name := fmt.Sprintf("intern-test-%d", i)
		if got := internModel([]byte(name)); got != name {
			t.Fatalf("got %q, want %q", got, name)
		}
	}
	if n := len(*interned.Load()); n > maxInterned {
		t.Errorf("the table holds %d names, want at most %d", n, maxInterned)
	}
	// With the table full, a name beyond it must not take the lock: a
	// process that talks to many models would serialise on it.
	internMu.Lock()
	done := make(chan string, 1)
	go func() { done <- internModel([]byte("intern-test-beyond")) }()
	select {
	case got := <-done:
		if got != "intern-test-beyond" {
			t.Errorf("got %q", got)
		}
	case <-time.After(10 * time.Second): // a bound on a hang, not a timing
		t.Error("a name beyond the full table waited for the table's lock")
	}
	internMu.Unlock()
}
