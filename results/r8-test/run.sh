#!/usr/bin/env bash
# The README's results grid with round 8's default (the flat-kurtosis skeleton), on the built-in v2f and on the
# second seed after the same stage 2f (runs/demo-seed1f), test splits, run once after round 8 chose the default on
# validation; then the long suite streamed through 1,024 media tokens on v2f. acckv-round7 is the default before it.
set -euo pipefail
export HF_HUB_OFFLINE=1
out=results/r8-test
for model in builtin runs/demo-seed1f; do
  name=$([ "$model" = builtin ] && echo v2f || echo seed1f)
  use=$([ "$model" = builtin ] || echo --model "$model")
  acckv eval $use --suite core,sparse --split test -n 12 -m full -m oracle -m random -m uniform -m divprune \
    -m acckv -m acckv-round7 -m acckv-paper --budgets 0.2,0.1,0.05 --protocols context \
    --out-dir "$out/$name/context" --data-dir .acckv/synthavqa -r none
  acckv eval $use --suite core,sparse --split test -n 12 -m full -m oracle -m random -m uniform -m acckv \
    -m acckv-round7 --budgets 0.1,0.05 --protocols query-aware \
    --out-dir "$out/$name/query-aware" --data-dir .acckv/synthavqa -r none
done
python -m acckv_cli.evaluation.seeds "$out/v2f/context/summary.json" "$out/seed1f/context/summary.json" \
  "$out/v2f/query-aware/summary.json" "$out/seed1f/query-aware/summary.json" --against random,uniform,divprune \
  --tally > "$out/ranking-tally.md"
acckv eval --suite long --split test -n 6 -m full -m oracle -m random -m uniform -m acckv -m acckv-round7 \
  --budgets 1024 --protocols stream --out-dir "$out/v2f/long-stream" --data-dir .acckv/synthavqa -r none
