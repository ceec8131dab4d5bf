#!/usr/bin/env bash
# The server's own tail: Verdict's p99 at half its saturation rate, with the
# machine's share of the tail taken out as far as two cores allow. The
# server runs alone on the last core (GOMAXPROCS=1, as in a container with a
# one-CPU limit), the load generators (wrk, then the harness's pacer) on
# core 0, so neither waits for the other's time slice; bench/run.sh, with
# everything sharing both cores, measures the Gin no-op server's own p99 at
# 2-3 ms at those rates, this layout at about 1 ms.
#
#   bench/tail.sh [config] [rounds] [duration]     (defaults: '', 4, 6s)
#
# config is one Verdict configuration as bench/ab.sh takes it (environment,
# `verdict serve` flags, a binary path), on top of bench/run.sh's production
# configuration (API keys, metrics, decision and access logs to files):
#
#   bench/tail.sh '--gc-heap-floor 128MiB'
#
# FILL=N in the environment first fills Verdict's cache with N distinct
# tokens (bench/lua/fill.lua), as a busy replica's cache is: what every
# garbage collection then marks. The paced mix stays the demo tokens'.
#
#   FILL=15000 bench/tail.sh
#
# COMPARE=CONFIG starts a second Verdict with that configuration (same
# syntax) on the same core and paces it in every round right after the
# first, at the same rate: two configurations measured in the same minutes,
# round by round, which on a machine whose capacity drifts says more than
# two runs of this script one after the other.
#
#   COMPARE='--gc-heap-floor 256MiB' bench/tail.sh
#
# RATE=N paces every server at N req/s instead of half Verdict's measured
# saturation: to compare configurations whose saturation runs differ (a
# large --gc-heap-floor pays page faults while a fresh heap first grows).
#
# Steps: saturate the no-op server and Verdict with wrk for [duration] each
# (req/s; Verdict after a first, discarded run that warms it up); start the
# busy server (harness busy: the no-op plus, in a loop
# that allocates nothing, the CPU per request Verdict spends beyond it, so
# that at one rate both are equally busy); then, [rounds] times, pace the
# no-op, busy and Verdict servers in turn at half Verdict's saturation, open
# loop, for [duration] each. Prints each round's p50 / p99 / p99.9 of the
# three, the garbage collections Verdict ran during its paced run (from its
# metrics) and Verdict's excess (its p99 minus the busy server's in the same
# round), then the medians. The busy server's p99 is what queueing at
# Verdict's utilization and the machine's own stalls give; Verdict's above
# it is Verdict's own (its collections). The machine's capacity drifts over
# minutes, so the excess, a difference of two runs seconds apart, moves less
# between runs than either p99. Installs wrk when it is
# missing; needs taskset (util-linux) and at least two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-}
rounds=${2:-4}
duration=${3:-6s}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
. bench/lib.sh

if [ -n "${RATE:-}" ] && ! [ "$RATE" -gt 0 ] 2>/dev/null; then
	echo "FAILED: RATE=$RATE: want a positive number of requests per second" >&2
	exit 1
fi
cores=$(nproc)
[ "$cores" -ge 2 ] || { echo "FAILED: bench/tail.sh needs two cores, this machine has $cores" >&2; exit 1; }
command -v taskset >/dev/null || { echo "FAILED: bench/tail.sh needs taskset (Debian: util-linux)" >&2; exit 1; }
server_core=$((cores - 1))
ensure_wrk
echo "building" >&2
go build -o "$work/verdict" ./cmd/verdict
go build -o "$work/harness" ./bench/harness
keys_in "$work"

port_free 127.0.0.1:18601
GOMAXPROCS=1 taskset -c "$server_core" "$work/harness" noop 127.0.0.1:18601 >/dev/null 2>&1 &
wait_up http://127.0.0.1:18601/

start_verdict "$work" verdict 127.0.0.1:18603 127.0.0.1:18604 "GOMAXPROCS=1 $config" taskset -c "$server_core"
if [ -n "${COMPARE:-}" ]; then
	start_verdict "$work" verdict-b 127.0.0.1:18605 127.0.0.1:18606 "GOMAXPROCS=1 $COMPARE" taskset -c "$server_core"
fi
if [ "${FILL:-0}" -gt 0 ]; then
	echo "filling Verdict's cache with $FILL tokens" >&2
	fill_cache http://127.0.0.1:18603/decide http://127.0.0.1:18604 "$FILL" taskset -c 0
	[ -z "${COMPARE:-}" ] || fill_cache http://127.0.0.1:18605/decide http://127.0.0.1:18606 "$FILL" taskset -c 0
fi

# gcs ADMIN_URL: how many collections that Verdict has run
# (go_gc_duration_seconds_count).
gcs() {
	curl -fs -H "Authorization: Bearer $ADMIN_KEY" "$1/metrics" |
		awk '$1 == "go_gc_duration_seconds_count" { print $2 }'
}
# pace URL RATE: the pacer on core 0, one P: "p50 p99 p99.9 failures lag".
pace() { GOMAXPROCS=1 taskset -c 0 "$work/harness" pace "$1" "$2" "$duration"; }

# saturate URL: wrk's req/s at URL (16 connections, wrk on core 0).
saturate() {
	taskset -c 0 wrk -t1 -c16 -d"$duration" -s bench/lua/verdict.lua "$1" | awk '/Requests\/sec/ { printf "%d", $2 }'
}
echo "saturating the no-op server and Verdict ($duration each, 16 connections, wrk on core 0)" >&2
# saturate_warm URL: saturate after a first, discarded run that warms a
# Verdict up: a fresh process pays a page fault for each page its heap first
# grows into (up to --gc-heap-floor), which would lower its saturation, and
# with it the pacing rate and the busy server's work.
saturate_warm() {
	saturate "$1" >/dev/null
	saturate "$1"
}
noop_sat=$(saturate http://127.0.0.1:18601/decide)
sat=$(saturate_warm http://127.0.0.1:18603/decide)
if [ -n "${COMPARE:-}" ]; then
	sat_b=$(saturate_warm http://127.0.0.1:18605/decide)
	echo "one core: the second Verdict ($COMPARE) saturates at $sat_b req/s" >&2
fi
[ "${noop_sat:-0}" -gt 0 ] && [ "${sat:-0}" -gt 0 ] || { echo "FAILED: wrk measured no rate" >&2; exit 1; }
rate=${RATE:-$((sat / 2))}
# The busy server: the no-op plus Verdict's extra CPU per request, so that it
# saturates where Verdict does and runs at Verdict's utilization when paced
# at the same rate, without Verdict's heap: its p99 is what queueing and the
# machine give at that utilization.
extra=$(awk -v v="$sat" -v n="$noop_sat" 'BEGIN { w = 1e6 / v - 1e6 / n; printf "%dus", (w > 0 ? w : 0) }')
port_free 127.0.0.1:18602
GOMAXPROCS=1 taskset -c "$server_core" "$work/harness" busy 127.0.0.1:18602 "$extra" >/dev/null 2>&1 &
wait_up http://127.0.0.1:18602/
busy_sat=$(saturate http://127.0.0.1:18602/decide)
echo "one core: the no-op server saturates at $noop_sat req/s, Verdict at $sat, the busy server ($extra of work per request) at $busy_sat; pacing each at $rate req/s" >&2

# pace_verdict URL ADMIN_URL: paces that Verdict; prints "p50 p99 p99.9
# failures collections".
pace_verdict() {
	local before after v50 v99 v999 verr
	before=$(gcs "$2")
	read -r v50 v99 v999 verr _ < <(pace "$1" "$rate") || { echo "FAILED: pacing Verdict at $1" >&2; exit 1; }
	after=$(gcs "$2")
	echo "$v50 $v99 $v999 $verr $((after - before))"
}
# excess P99 BASE: how far one p99 ("1.23ms") is above another, signed.
excess() { awk -v v="${1%ms}" -v b="${2%ms}" 'BEGIN { printf "%+.2fms", v - b }'; }

printf "%-6s %28s %28s %28s %5s %8s" round "no-op p50 / p99 / p99.9" "busy p50 / p99 / p99.9" "Verdict p50 / p99 / p99.9" GCs excess
[ -z "${COMPARE:-}" ] || printf " %28s %5s %8s" "second p50 / p99 / p99.9" GCs excess
echo
for round in $(seq "$rounds"); do
	read -r n50 n99 n999 nerr _ < <(pace http://127.0.0.1:18601/decide "$rate") ||
		{ echo "FAILED: pacing the no-op server" >&2; exit 1; }
	read -r b50 b99 b999 berr _ < <(pace http://127.0.0.1:18602/decide "$rate") ||
		{ echo "FAILED: pacing the busy server" >&2; exit 1; }
	read -r v50 v99 v999 verr vgcs < <(pace_verdict http://127.0.0.1:18603/decide http://127.0.0.1:18604)
	s50=- s99=- s999=- serr=0 sgcs=- sx=-
	[ -z "${COMPARE:-}" ] || read -r s50 s99 s999 serr sgcs < <(pace_verdict http://127.0.0.1:18605/decide http://127.0.0.1:18606)
	[ "$nerr" = 0 ] && [ "$berr" = 0 ] && [ "$verr" = 0 ] && [ "$serr" = 0 ] ||
		{ echo "FAILED: $nerr no-op, $berr busy and $verr + $serr Verdict requests failed" >&2; exit 1; }
	vx=$(excess "$v99" "$b99")
	[ -z "${COMPARE:-}" ] || sx=$(excess "$s99" "$b99")
	printf "%-6s %28s %28s %28s %5s %8s" "$round" "$n50 / $n99 / $n999" "$b50 / $b99 / $b999" "$v50 / $v99 / $v999" "$vgcs" "$vx"
	[ -z "${COMPARE:-}" ] || printf " %28s %5s %8s" "$s50 / $s99 / $s999" "$sgcs" "$sx"
	echo
	echo "$n99 $b99 $v99 $vx $s99 $sx" >>"$work/p99"
done
# median COLUMN: the median of the rounds' p99s in the column (1 no-op, 2
# busy, 3 Verdict, 4 its excess, 5 the second Verdict, 6 its excess).
median() { tr -d 'ms' <"$work/p99" | awk -v c="$1" '{ print $c }' | sort -g | awk '{ v[NR] = $1 } END { printf "%.2fms", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
echo "median p99 at $rate req/s (${RATE:+RATE; }half of Verdict's one-core saturation: $((sat / 2))): no-op $(median 1), busy $(median 2), Verdict $(median 3); Verdict's excess over the busy server $(median 4)"
[ -z "${COMPARE:-}" ] || echo "the second Verdict ($COMPARE): median p99 $(median 5), excess over the busy server $(median 6)"
