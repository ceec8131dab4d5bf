# Shared by the bench/ scripts (sourced, not run). The working directory is
# the repository's root.

# The API keys every script's Verdict runs with, in files under a work
# directory (keys_in DIR writes them).
export VERDICT_KEY=bench_key_0123456789abcdef
ADMIN_KEY=ops_key_0123456789abcdef
keys_in() {
	printf 'bench:%s\n' "$VERDICT_KEY" >"$1/keys.txt"
	printf 'ops:%s\n' "$ADMIN_KEY" >"$1/admin-keys.txt"
}

# ensure_wrk: installs wrk from Debian's packages when it is missing.
ensure_wrk() {
	command -v wrk >/dev/null && return 0
	echo "installing wrk" >&2
	apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }
}

# wait_up URL [PID LOG]: fails loudly if nothing answers at URL within 30 s,
# or, given the server's PID and log file, as soon as the server has exited,
# with the end of its log (a bad flag, a port taken).
wait_up() {
	for _ in $(seq 300); do
		if curl -s -o /dev/null "$1"; then return 0; fi
		if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then
			echo "FAILED: the server for $1 exited; the end of its log:" >&2
			tail -n 5 "$3" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "FAILED: nothing answers at $1" >&2
	exit 1
}

# port_free ADDR: fails loudly if something already answers at ADDR (a server
# left from an earlier run would be measured instead of the new one).
port_free() {
	if curl -s -o /dev/null --max-time 1 "http://$1/"; then
		echo "FAILED: something already answers at $1" >&2
		exit 1
	fi
}

# warm URL NAME: decides each demo token three times at URL (a /decide):
# fetched, then cached, then staged. Fails loudly if NAME does not decide.
warm() {
	for t in demo-vpn demo-human demo-bot demo-tor demo-tamper; do
		for _ in 1 2 3; do
			curl -fs "$1" -H "Authorization: Bearer $VERDICT_KEY" -H 'Content-Type: application/json' \
				-d "{\"token\":\"$t\",\"action\":{\"type\":\"login\"}}" >/dev/null ||
				{ echo "FAILED: $2 does not decide" >&2; exit 1; }
		done
	done
}

# split_config CONFIG DEFAULT_BIN: splits a configuration as bench/ab.sh
# takes it (environment assignments, `verdict serve` flags, and a binary path
# as a word starting with /) into the arrays config_env and config_flags and
# the variable config_bin.
split_config() {
	config_bin=$2 config_env=() config_flags=()
	for word in $1; do
		case $word in
		/*) config_bin=$word ;;
		-*) config_flags+=("$word") ;; # before *=*: --staging=false is a flag
		*=*) config_env+=("$word") ;;
		*) config_flags+=("$word") ;;
		esac
	done
}

# start_verdict WORK NAME ADDR ADMIN_ADDR CONFIG [LAUNCHER...]: starts
# `verdict serve --demo` at ADDR, its admin routes and metrics at ADMIN_ADDR,
# in the production configuration every script measures: the API keys of
# keys_in WORK, the decision log to WORK/NAME-decisions.log and the access
# log (info level) to WORK/NAME.log. CONFIG goes on top (split_config; the
# binary defaults to WORK/verdict); LAUNCHER, if given, runs it (taskset -c 1).
# Returns once it answers and has decided each demo token (warm); sets
# verdict_pid.
start_verdict() {
	local work=$1 name=$2 addr=$3 admin=$4 config_desc=${5:-default configuration}
	port_free "$addr"
	split_config "$5" "$work/verdict"
	shift 5
	env "${config_env[@]}" "$@" "$config_bin" serve --demo --addr "$addr" --admin-addr "$admin" \
		--api-keys-file "$work/keys.txt" --admin-keys-file "$work/admin-keys.txt" \
		--decision-log "$work/$name-decisions.log" --log-level info "${config_flags[@]}" 2>"$work/$name.log" &
	verdict_pid=$!
	wait_up "http://$addr/healthz" "$verdict_pid" "$work/$name.log"
	warm "http://$addr/decide" "$name ($config_desc)"
}

# fill_cache URL ADMIN_URL TOKENS [LAUNCHER...]: decides TOKENS distinct
# demo-human-<n> tokens at URL (a /decide), so that Verdict's cache holds
# that many payloads as a busy replica's does, with wrk (bench/lua/fill.lua;
# LAUNCHER, if given, runs it: taskset -c 0), 5 s at a time until Verdict's
# metrics at ADMIN_URL count TOKENS cache misses. Fails loudly past 5 min.
fill_cache() {
	local url=$1 admin=$2 tokens=$3 misses=0
	shift 3
	for _ in $(seq 60); do
		# Each run goes on from the tokens the runs before reached: the misses
		# so far (a run starting at 0 again would mostly hit).
		FILL_TOKENS=$tokens FILL_FROM=$misses "$@" wrk -t1 -c8 -d5s -s bench/lua/fill.lua "$url" >/dev/null
		misses=$(curl -fs -H "Authorization: Bearer $ADMIN_KEY" "$admin/metrics" |
			awk '$1 == "verdict_cache_lookups_total{result=\"miss\"}" { printf "%d", $2 }')
		[ "${misses:-0}" -ge "$tokens" ] && return 0
	done
	echo "FAILED: filling the cache with $tokens tokens: ${misses:-no} misses counted in 5 min" >&2
	exit 1
}

# cpu_ticks PID: the CPU time (user + system, in clock ticks) the process has
# used; ticks_per_s converts it.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_s=$(getconf CLK_TCK)
