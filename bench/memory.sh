#!/usr/bin/env bash
# Peak resident memory of `verdict serve --demo --cache-max-bytes 64MiB`
# while a stream of distinct tokens (each a cache miss with its own payload)
# runs through it. Needs wrk (Debian: apt-get install wrk).
#
#   bench/memory.sh [duration] [cache-max-bytes]   (defaults: 60s 64MiB)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-60s}
max=${2:-64MiB}
addr=127.0.0.1:18182

command -v wrk >/dev/null || { echo "bench/memory.sh needs wrk: apt-get install wrk" >&2; exit 1; }
bin=$(mktemp -d)/verdict
go build -o "$bin" ./cmd/verdict
"$bin" serve --demo --addr "$addr" --log-level warn --cache-max-bytes "$max" 2>"$bin.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	curl -fs "http://$addr/readyz" >/dev/null && break
	sleep 0.1
done
grep -E 'VmHWM|VmRSS' /proc/$pid/status | sed 's/^/at start: /'

(
	while kill -0 $pid 2>/dev/null; do
		grep VmRSS /proc/$pid/status
		sleep 5
	done
) &
sampler=$!
wrk -t1 -c8 -d"$duration" -s bench/memory.lua "http://$addr/decide"
kill $sampler 2>/dev/null || true
grep -E 'VmHWM|VmRSS' /proc/$pid/status | sed 's/^/at the end: /'
