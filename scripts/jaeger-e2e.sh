#!/usr/bin/env bash
# End-to-end tracing test against a real Jaeger (v2, all-in-one, in-memory).
#
# Builds Jaeger once (it cannot be `go install`ed: its go.mod has replace
# directives) in a scratch module outside the repository and caches the
# binary under ${LLMTRANSPORT_CACHE:-$HOME/.cache/llmtransport}; the first
# build takes ~15 min on 2 cores. Starts it on 127.0.0.1 only, runs the
# Go test TestJaegerEndToEnd (build tag "jaeger"), and stops Jaeger by its
# PID whatever happens. The test lives in the integration/ module, which
# holds what the library does not import (the OTLP exporter among them).
set -euo pipefail

JAEGER_VERSION=v1.76.0
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${LLMTRANSPORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmtransport}
bin=$cache/jaeger-$JAEGER_VERSION
host=127.0.0.1

work=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		echo "jaeger (pid $pid) stopped"
	fi
	rm -rf "$work"
}
trap cleanup EXIT

if [ ! -x "$bin" ]; then
	echo "== building jaeger $JAEGER_VERSION into $bin (once; ~15 min on 2 cores)"
	mkdir -p "$cache"
	(
		cd "$work"
		export GOWORK=off GOFLAGS=-mod=mod
		go mod init scratch >/dev/null 2>&1
		go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION"
		go build -o "$bin.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
	)
	mv "$bin.tmp" "$bin"
fi

# Refuse to run against someone else's Jaeger or collector.
for port in 4317 4318 13133 16685 16686; do
	if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
		echo "port $port is already in use; stop whatever listens there first" >&2
		exit 1
	fi
done

echo "== starting jaeger on $host"
JAEGER_LISTEN_HOST=$host "$bin" \
	--set=extensions.jaeger_query.http.endpoint=$host:16686 \
	--set=extensions.jaeger_query.grpc.endpoint=$host:16685 \
	>"$work/jaeger.log" 2>&1 &
pid=$!

ready=
for _ in $(seq 1 120); do
	if ! kill -0 "$pid" 2>/dev/null; then
		break
	fi
	if curl -fsS "http://$host:13133/status" 2>/dev/null | grep -q '"healthy":true' &&
		curl -fsS -o /dev/null "http://$host:16686/api/v3/services" 2>/dev/null; then
		ready=1
		break
	fi
	sleep 0.5
done
if [ -z "$ready" ]; then
	echo "jaeger did not become ready; its log:" >&2
	tail -n 50 "$work/jaeger.log" >&2
	exit 1
fi
echo "jaeger ready (pid $pid)"

# Every socket Jaeger listens on must be on loopback.
exposed=$(ss -Hlntup 2>/dev/null | grep "pid=$pid," | awk '{print $5}' | grep -v "^$host:" || true)
if [ -n "$exposed" ]; then
	echo "jaeger listens beyond $host: $exposed" >&2
	exit 1
fi
echo "jaeger listens on $(ss -Hlntup 2>/dev/null | grep -c "pid=$pid,") sockets, all on $host"

cd "$repo/integration"
status=0
JAEGER_OTLP_ENDPOINT=http://$host:4318/v1/traces \
	JAEGER_QUERY_URL=http://$host:16686 \
	go test -tags jaeger -run '^TestJaegerEndToEnd$' -count=1 -v . || status=$?
if [ "$status" -ne 0 ]; then
	echo "== jaeger log (tail)" >&2
	tail -n 30 "$work/jaeger.log" >&2
fi
exit "$status"
