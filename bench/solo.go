package main

import (
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// solo runs one contender alone on the first selected workload for about d,
// to profile from outside (perf, -cpuprofile) and to time the contender's
// own code in place: a clock around the contender and one around the base
// transport under it, whose difference is what the contender adds to each
// request between the caller and the network, with caches as cold as a
// real round trip leaves them. (Timing costs ~0.2 µs: run pass-through to
// see it.)
func solo(d time.Duration) error {
	up, err := startUpstream()
	if err != nil {
		return err
	}
	defer up.stop()
	tp := newProvider()
	c := clients[len(clients)-1]
	var outer, inner clock
	rt := &timed{next: c.wrap(&timed{next: newBase(), clock: &inner}, tp), clock: &outer}
	url := up.url + "/ok"
	w := workloads[0]
	if _, err := measure(rt, url, w, 1000); err != nil {
		return err
	}
	n := calibrate(rt, url, w, d)
	outer, inner = clock{}, clock{}
	s, err := measure(rt, url, w, n)
	if err != nil {
		return err
	}
	own := time.Duration((outer.ns.Load() - inner.ns.Load()) / outer.n.Load())
	fmt.Fprintf(os.Stderr, "%s on %s: %d requests; per request: client CPU %v, wall %v, %.1f allocations; in place, the contender's own time %v\n",
		c.name, w.name, n, s.cpu, s.wall, s.allocs, own)
	return nil
}

// clock sums the time spent in a RoundTripper.
type clock struct{ ns, n atomic.Int64 }

type timed struct {
	next  http.RoundTripper
	clock *clock
}

func (t *timed) RoundTrip(r *http.Request) (*http.Response, error) {
	t0 := time.Now()
	resp, err := t.next.RoundTrip(r)
	t.clock.ns.Add(int64(time.Since(t0)))
	t.clock.n.Add(1)
	return resp, err
}
