package main

import (
	"bytes"
	"io"
	"net/http"
	"sync"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// deadCalls is the number of calls of a dead-upstream run.
const deadCalls = 200

// deadRun sends deadCalls calls to an upstream that answers every request
// 503, through a fresh instance of c (fresh breakers and budget) on a fresh
// base transport, all at once (burst) or one after the other (paced), and
// returns how many requests reached the upstream.
func deadRun(up *upstream, c client, tp *sdktrace.TracerProvider, burst bool) (int, error) {
	if _, err := up.deadCount(); err != nil { // reset
		return 0, err
	}
	base := newBase()
	defer base.CloseIdleConnections()
	rt := c.wrap(base, tp)
	url := up.url + "/dead"
	one := func() {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(chat1K))
		if err != nil {
			panic(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return // retries exhausted, or an open circuit
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if burst {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range deadCalls {
			wg.Go(func() {
				<-start
				one()
			})
		}
		close(start)
		wg.Wait()
	} else {
		for range deadCalls {
			one()
		}
	}
	return up.deadCount()
}
