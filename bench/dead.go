package main

import (
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/llmtransport/llmtransport/internal/workload"
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
	workload.DeadCalls(rt, url, deadCalls, burst)
	return up.deadCount()
}
