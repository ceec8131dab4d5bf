#!/usr/bin/env bash
# The side-by-side harness: the same request mix, for the same duration, against
#   1. a Gin handler that only decodes and encodes JSON (the ceiling),
#   2. OPA's own server (opa run --server) with policies/ (one query: data.verdict.result),
#   3. Verdict with a warm cache (every request a cache hit), as in production: API keys, metrics, the
#      decision log and the access log to files; then paced, open loop, at half the rate it reached;
#   4. the same with --staging=false (every decision evaluated in full),
#   5. the same with --decision-memo,
#   6. Verdict with a cold cache against a fake cside answering in 20 ms (every request a miss).
# Prints one table: req/s, p50, p99, Verdict's ratios to OPA and to the ceiling, each server's CPU
# time per request (from /proc, so Linux only) with OPA's divided by it, and the memory it allocated per
# request (from its Prometheus metrics, where it has them: what sets the garbage collector's pace);
# then the paced latencies, and, on a machine with two cores or more, the same paced measurement with
# each server alone on a core and the load generator on another (bench/tail.sh, 3 rounds, with its
# busy server: the no-op plus Verdict's extra CPU per request, allocating nothing).
# Installs what it needs: wrk (Debian) and opa v1.22.3 (go install).
#
#   bench/run.sh [duration] [connections] [rounds]     (defaults: 10s 16 1)
#
# Every server is started first; then each round drives them in turn, and
# the table shows the mean over the rounds with its range: the more rounds,
# the less a row depends on the shared machine's mood while it ran.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-16}
rounds=${3:-1}
work=$(mktemp -d)
# stop_servers: stops every server this script started (its background jobs).
stop_servers() {
	kill $(jobs -p) 2>/dev/null || true
	wait 2>/dev/null || true
}
cleanup() {
	stop_servers
	rm -rf "$work"
}
trap cleanup EXIT

. bench/lib.sh
ensure_wrk
echo "building" >&2
GOBIN="$work/bin" go install github.com/open-policy-agent/opa@v1.22.3
go build -o "$work/bin/verdict" ./cmd/verdict
go build -o "$work/bin/harness" ./bench/harness

declare -A pid_of     # server name -> its process, whose CPU time run measures
declare -A metrics_of # server name -> its /metrics URL, for the bytes it allocates

# alloc_bytes NAME: the bytes the server has allocated so far (Go's
# go_memstats_alloc_bytes_total), empty for a server without metrics.
alloc_bytes() {
	[ -n "${metrics_of[$1]:-}" ] || return 0
	curl -fs -H "Authorization: Bearer $ADMIN_KEY" "${metrics_of[$1]}" |
		awk '$1 == "go_memstats_alloc_bytes_total" { printf "%.0f", $2 }'
}

# run NAME URL SCRIPT: drives one server once, appends its numbers to $work/NAME:
# req/s, p50, p99, non-2xx, and the server's CPU time per request in µs (wrk
# shares the cores, so req/s depends on wrk's share; CPU per request does not).
run() {
	echo "running $1 ($duration, $conns connections)" >&2
	local before after alloc_before alloc_after
	alloc_before=$(alloc_bytes "$1")
	before=$(cpu_ticks "${pid_of[$1]}")
	wrk -t1 -c"$conns" -d"$duration" --latency -s "$3" "$2" >"$work/$1.out"
	after=$(cpu_ticks "${pid_of[$1]}")
	alloc_after=$(alloc_bytes "$1")
	awk -v name="$1" -v ticks=$((after - before)) -v hz="$ticks_per_s" -v a0="$alloc_before" -v a1="$alloc_after" '
		/requests in/ { n = $1 }
		/Requests\/sec/ { rps = $2 }
		/^ +50%/ { p50 = $2 }
		/^ +99%/ { p99 = $2 }
		/Non-2xx/ { bad = $NF }
		END {
			printf "%s %s %s %s %s %.1f %s\n", name, rps, p50, p99, (bad == "" ? 0 : bad), (n > 0 ? ticks * 1e6 / hz / n : 0),
				(a0 != "" && a1 != "" && n > 0 ? sprintf("%.1f", (a1 - a0) / n / 1000) : "-")
		}' "$work/$1.out" >>"$work/$1"
}

# Start every server first, then drive them in turn, ROUNDS times: rows
# measured far apart would see the shared machine in different moods.
port_free 127.0.0.1:18301
"$work/bin/harness" noop 127.0.0.1:18301 &
pid_of[ceiling]=$!
wait_up http://127.0.0.1:18301/

mkdir "$work/opa-policies"
cp policies/*.rego policies/data.json bench/opa/result.rego "$work/opa-policies/"
"$work/bin/harness" opa-input demo-vpn >"$work/opa-input.json"
port_free 127.0.0.1:18302
"$work/bin/opa" run --server --addr 127.0.0.1:18302 --log-level error "$work/opa-policies" &
pid_of[opa]=$!
metrics_of[opa]=http://127.0.0.1:18302/metrics
wait_up http://127.0.0.1:18302/health
curl -fs -XPOST http://127.0.0.1:18302/v1/data/verdict/result -d @"$work/opa-input.json" | grep -q '"decision"' \
	|| { echo "FAILED: OPA does not decide" >&2; exit 1; }
export OPA_INPUT="$work/opa-input.json"

# Verdict as in production: API keys, the admin listener (metrics), the
# decision log to a file and the access log (info level) to a file.
keys_in "$work"
# verdict NAME PORT ADMIN_PORT [FLAGS...]: starts a Verdict and warms the demo tokens.
verdict() {
	local name=$1 port=$2 admin=$3
	shift 3
	start_verdict "$work" "$name" "127.0.0.1:$port" "127.0.0.1:$admin" "$work/bin/verdict $*"
	pid_of[$name]=$verdict_pid
	metrics_of[$name]=http://127.0.0.1:$admin/metrics
}
verdict verdict-warm 18303 18306
verdict verdict-nostage 18307 18308 --staging=false
verdict verdict-memo 18309 18310 --decision-memo

port_free 127.0.0.1:18304
"$work/bin/harness" fake 127.0.0.1:18304 20ms &
wait_up http://127.0.0.1:18304/
port_free 127.0.0.1:18305
"$work/bin/verdict" serve --addr 127.0.0.1:18305 --admin-addr off --insecure-no-auth --log-level error \
	--cside-url http://127.0.0.1:18304 2>"$work/verdict-cold.log" &
pid_of[verdict-cold]=$!
wait_up http://127.0.0.1:18305/healthz "${pid_of[verdict-cold]}" "$work/verdict-cold.log"

for round in $(seq "$rounds"); do
	echo "round $round of $rounds" >&2
	run ceiling http://127.0.0.1:18301/decide bench/lua/verdict.lua
	run opa http://127.0.0.1:18302/v1/data/verdict/result bench/lua/opa.lua
	run verdict-warm http://127.0.0.1:18303/decide bench/lua/verdict.lua
	run verdict-nostage http://127.0.0.1:18307/decide bench/lua/verdict.lua
	run verdict-memo http://127.0.0.1:18309/decide bench/lua/verdict.lua
	run verdict-cold http://127.0.0.1:18305/decide bench/lua/cold.lua
done

# mean NAME: the mean req/s over the rounds.
mean() { awk '{ s += $2 } END { printf "%.2f", s / NR }' "$work/$1"; }
half=$(awk -v m="$(mean verdict-warm)" 'BEGIN { printf "%d", m / 2 }')
echo "pacing verdict-warm at $half req/s ($duration)" >&2
read -r half_p50 half_p99 half_p999 half_errs half_lag < <("$work/bin/harness" pace http://127.0.0.1:18303/decide "$half" "$duration")
echo "pacing the ceiling server at the same rate: the machine's own tail" >&2
read -r noop_p50 noop_p99 noop_p999 noop_errs noop_lag < <("$work/bin/harness" pace http://127.0.0.1:18301/decide "$half" "$duration")

# cpu NAME: the mean CPU time per request, in µs, over the rounds.
cpu() { awk '{ s += $6 } END { printf "%.1f", s / NR }' "$work/$1"; }
# alloc NAME: the mean KB allocated per request over the rounds, "-" without metrics.
alloc() { awk '$7 == "-" { none = 1 } { s += $7 } END { if (none) print "-"; else printf "%.1f", s / NR }' "$work/$1"; }
opa_rps=$(mean opa)
opa_cpu=$(cpu opa)
ceiling_rps=$(mean ceiling)
printf "\n%-16s %10s %19s %10s %10s %8s %10s %10s %12s %12s %13s\n" server "req/s" "(min-max)" p50 p99 non-2xx "vs OPA" "vs ceiling" "CPU µs/req" "OPA's CPU /" "alloc KB/req"
for n in ceiling opa verdict-warm verdict-nostage verdict-memo verdict-cold; do
	read -r name _ p50 p99 _ < <(tail -n 1 "$work/$n")
	rps=$(mean "$n")
	range=$(awk '{ if (NR == 1 || $2 < lo) lo = $2; if ($2 > hi) hi = $2 } END { printf "%.0f-%.0f", lo, hi }' "$work/$n")
	bad=$(awk '{ s += $5 } END { print s }' "$work/$n")
	printf "%-16s %10.0f %19s %10s %10s %8s %9.2fx %9.0f%% %12s %11.2fx %13s\n" "$name" "$rps" "($range)" "$p50" "$p99" "$bad" \
		"$(awk -v a="$rps" -v b="$opa_rps" 'BEGIN{print a/b}')" "$(awk -v a="$rps" -v b="$ceiling_rps" 'BEGIN{print 100*a/b}')" \
		"$(cpu "$n")" "$(awk -v a="$opa_cpu" -v b="$(cpu "$n")" 'BEGIN{print (b > 0 ? a/b : 0)}')" "$(alloc "$n")"
done
printf "\n(means over %s round(s) of %s each, rows taken in turn; p50 and p99 from the last round;\n" "$rounds" "$duration"
printf " CPU µs/req: the server process's own CPU time per request, which wrk's share of the cores does not move;\n"
printf " alloc KB/req: what it allocated per request, from its metrics (- without), which sets how often its GC runs)\n"
printf "verdict-warm at half its saturation rate (%s req/s, open loop): p50 %s, p99 %s, p99.9 %s, %s failed (sender at most %s late)\n" \
	"$half" "$half_p50" "$half_p99" "$half_p999" "$half_errs" "$half_lag"
printf "ceiling server at the same rate:                          p50 %s, p99 %s, p99.9 %s, %s failed (sender at most %s late)\n" \
	"$noop_p50" "$noop_p99" "$noop_p999" "$noop_errs" "$noop_lag"

# The tail with the machine's share taken out: the servers above stop, and
# bench/tail.sh paces a fresh Verdict and no-op server, each alone on a core.
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
	stop_servers
	echo "pacing again, each server alone on a core (bench/tail.sh, 3 rounds of $duration)" >&2
	tail_line=$(bench/tail.sh "" 3 "$duration" | tail -n 1)
	printf "each server alone on a core, the load generator on another: %s\n" "${tail_line#median }"
fi
