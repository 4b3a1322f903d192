#!/bin/sh
# Runs the side-by-side comparison; prints the markdown table on stdout and
# progress on stderr. Pass -quick for a shorter, noisier run.
#   ./bench/run.sh            (from the repository root, or from bench/)
set -e
cd "$(dirname "$0")"
exec go run . "$@"
