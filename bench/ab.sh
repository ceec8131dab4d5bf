#!/usr/bin/env bash
# A/B throughput of two Verdict configurations, interleaved: each pair runs A
# then B, so that the shared machine's drift falls on both alike.
#
#   bench/ab.sh 'A' 'B' [pairs] [duration]      (defaults: 5 pairs, 8s)
#
# A and B are each an optional environment and flags for `verdict serve`, in
# the production configuration of bench/run.sh (API key, metrics, decision
# and access logs to files). A binary path as the first word replaces the
# one built from this tree, to compare two builds:
#
#   bench/ab.sh '' 'GOGC=200'
#   bench/ab.sh '' '--decision-memo'
#   bench/ab.sh '/tmp/verdict-old' ''
#
# Prints each run's req/s and the server's CPU time per request (from /proc,
# so Linux only: wrk's share of the cores moves req/s, much less CPU per
# request), then both means.
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1
b=$2
pairs=${3:-5}
duration=${4:-8s}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
. bench/lib.sh

ensure_wrk
go build -o "$work/verdict" ./cmd/verdict
keys_in "$work"

# once CONFIG: starts Verdict with CONFIG, warms the demo tokens, prints wrk's
# req/s and the server's CPU µs per request.
once() {
	start_verdict "$work" verdict 127.0.0.1:18503 127.0.0.1:18504 "$1"
	local pid=$verdict_pid
	local before after
	before=$(cpu_ticks "$pid")
	wrk -t1 -c16 -d"$duration" -s bench/lua/verdict.lua http://127.0.0.1:18503/decide >"$work/wrk.out"
	after=$(cpu_ticks "$pid")
	awk -v ticks=$((after - before)) -v hz="$ticks_per_s" '
		/requests in/ { n = $1 }
		/Requests\/sec/ { rps = $2 }
		END { printf "%s %.1f\n", rps, (n > 0 ? ticks * 1e6 / hz / n : 0) }' "$work/wrk.out"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
}

sum_a=0 sum_b=0 cpu_a=0 cpu_b=0
for i in $(seq "$pairs"); do
	read -r ra ca < <(once "$a")
	read -r rb cb < <(once "$b")
	echo "pair $i: A ${ra} req/s ${ca} µs/req, B ${rb} req/s ${cb} µs/req"
	sum_a=$(awk -v s="$sum_a" -v r="$ra" 'BEGIN { print s + r }')
	sum_b=$(awk -v s="$sum_b" -v r="$rb" 'BEGIN { print s + r }')
	cpu_a=$(awk -v s="$cpu_a" -v r="$ca" 'BEGIN { print s + r }')
	cpu_b=$(awk -v s="$cpu_b" -v r="$cb" 'BEGIN { print s + r }')
done
awk -v a="$sum_a" -v b="$sum_b" -v ca="$cpu_a" -v cb="$cpu_b" -v n="$pairs" 'BEGIN {
	printf "mean: A %.0f req/s, B %.0f req/s, B/A %.3f; CPU per request A %.1f µs, B %.1f µs, B/A %.3f\n", a / n, b / n, b / a, ca / n, cb / n, cb / ca }'
