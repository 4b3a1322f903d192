package reqmodel

import (
	"sync"
	"sync/atomic"
)

// maxInterned is how many model names are kept for reuse; an application
// talks to a handful of models, and names beyond the table are allocated
// each time as before.
const maxInterned = 64

// interned holds the model names read from request bodies so far, so that
// reading the same name again does not allocate. The table is immutable
// behind the pointer and replaced, under internMu, when a name is added.
var (
	interned atomic.Pointer[[]string]
	internMu sync.Mutex
)

// internModel returns b as a string, the same string for the same bytes
// while there is room in the table.
func internModel(b []byte) string {
	t := interned.Load()
	if t != nil {
		for _, s := range *t {
			if s == string(b) { // compared in place, not converted
				return s
			}
		}
		if len(*t) >= maxInterned {
			// Full: names beyond the table never take the lock.
			return string(b)
		}
	}
	return addInterned(string(b))
}

// addInterned adds s to the table, under internMu, unless it is full or s
// is there already; it returns the string to use.
func addInterned(s string) string {
	internMu.Lock()
	defer internMu.Unlock()
	var old []string
	if t := interned.Load(); t != nil {
		old = *t
	}
	if len(old) >= maxInterned {
		return s
	}
	for _, o := range old {
		if o == s {
			return o
		}
	}
	t := make([]string, len(old), len(old)+1)
	copy(t, old)
	t = append(t, s)
	interned.Store(&t)
	return s
}
