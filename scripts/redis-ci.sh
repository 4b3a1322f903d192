#!/usr/bin/env bash
# Installs redis-server (Debian package) for redisstate's integration tests
# when it is missing. Prints nothing else: apt-get's output goes to a log
# shown only when the install fails. The tests start their own server.
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
sudo=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; fi
if ! { $sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; } >"$log" 2>&1; then
	cat "$log" >&2
	echo "redis-ci.sh: could not install redis-server" >&2
	exit 1
fi
if ! command -v redis-server >/dev/null 2>&1; then
	echo "redis-ci.sh: redis-server still not in PATH after the install" >&2
	exit 1
fi
