#!/usr/bin/env bash
# Compares Go benchmarks between two commits with benchstat.
#
#   bench/compare.sh OLD [NEW]        (NEW defaults to the working tree)
#
# Environment:
#   BENCH    benchmark regexp (default: .)
#   PKGS     packages (default: ./engine ./api)
#   COUNT    runs per side (default: 6)
#   OVERLAY  files of the working tree copied into both checkouts before running,
#            for a benchmark an older commit does not have (space-separated)
#
# The two sides run alternately, one -count=1 run each in turn, so that the
# shared machine's drift falls on both alike. Installs benchstat if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: bench/compare.sh OLD [NEW]}
new=${2:-}
bench=${BENCH:-.}
pkgs=${PKGS:-./engine ./api}
count=${COUNT:-6}
work=$(mktemp -d)
cleanup() {
	git worktree remove --force "$work/old" 2>/dev/null || true
	[ -n "$new" ] && { git worktree remove --force "$work/new" 2>/dev/null || true; }
	rm -rf "$work"
}
trap cleanup EXIT

if ! command -v benchstat >/dev/null && [ ! -x "$work/bin/benchstat" ]; then
	GOBIN="$work/bin" go install golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
fi
benchstat=$(command -v benchstat || echo "$work/bin/benchstat")

git worktree add --quiet --detach "$work/old" "$old"
newdir=$PWD
if [ -n "$new" ]; then
	git worktree add --quiet --detach "$work/new" "$new"
	newdir=$work/new
fi
for f in ${OVERLAY:-}; do
	cp "$f" "$work/old/$f"
	[ -n "$new" ] && cp "$f" "$work/new/$f"
done
for dir in "$work/old" "$newdir"; do # build once before timing anything
	(cd "$dir" && go test -run '^$' -bench "$bench" -benchtime 1x $pkgs >/dev/null)
done
for i in $(seq "$count"); do
	echo "run $i of $count" >&2
	(cd "$work/old" && go test -run '^$' -bench "$bench" -benchmem -count 1 $pkgs) >>"$work/old.txt"
	(cd "$newdir" && go test -run '^$' -bench "$bench" -benchmem -count 1 $pkgs) >>"$work/new.txt"
done
"$benchstat" "old=$work/old.txt" "new=$work/new.txt"
