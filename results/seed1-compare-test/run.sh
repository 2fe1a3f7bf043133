#!/usr/bin/env bash
# The two-seed ranking check (issues #20, #21): the README's results grid (results/v2-compare-test-r4/run.sh),
# same test clips, same methods and budgets, on the second-seed demo model (results/demo-seed1/run.sh makes it
# in runs/demo-seed1; pass another folder as $1).
set -euo pipefail
export HF_HUB_OFFLINE=1
model="${1:-runs/demo-seed1}"
out=results/seed1-compare-test
bash results/test-grid.sh "$model" "$out"
# the ranking check against the README's grid on v2 (same clips, methods and budgets)
for protocol in context query-aware; do
  python -m acckv_cli.evaluation.seeds "results/v2-compare-test-r4/$protocol/summary.json" \
    "$out/$protocol/summary.json" --method acckv --against random,uniform,divprune,acckv-round3 \
    > "$out/ranking-$protocol.md"
done
# the long suite streamed through 1,024 media tokens (results/v2-long-stream-test/run.sh on the second model)
acckv eval --model "$model" --suite long --split test -n 6 -m full -m oracle -m random -m uniform -m acckv \
  -m acckv-round3 --budgets 1024 --protocols stream --out-dir "$out/long-stream" --data-dir .acckv/synthavqa -r none
python -m acckv_cli.evaluation.seeds results/v2-long-stream-test/summary.json "$out/long-stream/summary.json" \
  --method acckv --against random,uniform,acckv-round3 > "$out/ranking-long-stream.md"
python -m acckv_cli.evaluation.seeds results/v2-compare-test-r4/context/summary.json "$out/context/summary.json" \
  results/v2-compare-test-r4/query-aware/summary.json "$out/query-aware/summary.json" \
  results/v2-long-stream-test/summary.json "$out/long-stream/summary.json" --against random,uniform,divprune \
  --tally > "$out/ranking-tally.md"
