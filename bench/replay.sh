#!/usr/bin/env bash
# Replay throughput: generates a decision log of N real decisions (shipped
# policies, demo payloads, 20k tokens; the format serve writes with
# --decision-log-datapoints) and replays it with a candidate that lowers the
# VPN checkout threshold from 500 to 100 — once as is (deterministic:
# evaluations are memoized per distinct input), once with a clock-reading
# rule added (no memo: every line evaluated).
#
#   bench/replay.sh [N]     (default 1000000; the log takes ~1.7 GB in $TMPDIR)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

go build -o "$work/verdict" ./cmd/verdict
go run ./bench/genlog -n "$n" -tokens 20000 -out "$work/decisions.jsonl"

mkdir "$work/candidate"
cp policies/*.rego policies/data.json "$work/candidate/"
sed -i 's/"checkout_min_amount": 500/"checkout_min_amount": 100/' "$work/candidate/data.json"
cp -r "$work/candidate" "$work/candidate-clock"
printf 'package verdict\n\nnow_ns := time.now_ns()\n' > "$work/candidate-clock/clock.rego"

echo "=== deterministic candidate (memoized)"
/usr/bin/time -f "wall %es, max RSS %M KB" "$work/verdict" replay --log "$work/decisions.jsonl" --policies "$work/candidate" --out "$work/changed.jsonl"
echo "=== clock-reading candidate (every line evaluated)"
/usr/bin/time -f "wall %es, max RSS %M KB" "$work/verdict" replay --log "$work/decisions.jsonl" --policies "$work/candidate-clock"
