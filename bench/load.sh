#!/usr/bin/env bash
# Load test of a cached POST /decide against `verdict serve --demo`, with
# GET /healthz (a Gin handler that does nothing) as the baseline measured in
# the same run. Needs wrk (Debian: apt-get install wrk).
#
#   bench/load.sh [duration] [connections]     (defaults: 10s 16)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-16}
addr=127.0.0.1:18181

command -v wrk >/dev/null || { echo "bench/load.sh needs wrk: apt-get install wrk" >&2; exit 1; }
bin=$(mktemp -d)/verdict
go build -o "$bin" ./cmd/verdict
"$bin" serve --demo --addr "$addr" --log-level warn 2>"$bin.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT

for _ in $(seq 100); do
	curl -fs "http://$addr/readyz" >/dev/null && break
	sleep 0.1
done
# Warm the cache: every measured request is a cache hit.
curl -fs "http://$addr/decide" -H 'Content-Type: application/json' \
	-d '{"token":"demo-vpn","action":{"type":"checkout","amount":900,"currency":"USD"}}' >/dev/null

echo "=== baseline: GET /healthz ($duration, $conns connections)"
wrk -t1 -c"$conns" -d"$duration" --latency "http://$addr/healthz"
echo
echo "=== cached POST /decide ($duration, $conns connections)"
wrk -t1 -c"$conns" -d"$duration" --latency -s bench/decide.lua "http://$addr/decide"
