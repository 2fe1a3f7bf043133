#!/usr/bin/env bash
# The README's results grid with round 7's default (modality_floor=0.8), on the built-in v2e and on the second
# seed after the same stage 2e (runs/demo-seed1e), test splits, run once after round 7 chose the default on
# validation. acckv-round6 is the default before it (no floor).
set -euo pipefail
export HF_HUB_OFFLINE=1
out=results/r7-test
for model in builtin runs/demo-seed1e; do
  name=$([ "$model" = builtin ] && echo v2e || echo seed1e)
  use=$([ "$model" = builtin ] || echo --model "$model")
  acckv eval $use --suite core,sparse --split test -n 12 -m full -m oracle -m random -m uniform -m divprune \
    -m acckv -m acckv-round6 -m acckv-round3 -m acckv-paper --budgets 0.2,0.1,0.05 --protocols context \
    --out-dir "$out/$name/context" --data-dir .acckv/synthavqa -r none
  acckv eval $use --suite core,sparse --split test -n 12 -m full -m oracle -m random -m uniform -m acckv \
    -m acckv-round6 --budgets 0.1,0.05 --protocols query-aware \
    --out-dir "$out/$name/query-aware" --data-dir .acckv/synthavqa -r none
done
python -m acckv_cli.evaluation.seeds "$out/v2e/context/summary.json" "$out/seed1e/context/summary.json" \
  "$out/v2e/query-aware/summary.json" "$out/seed1e/query-aware/summary.json" --against random,uniform,divprune \
  --tally > "$out/ranking-tally.md"
