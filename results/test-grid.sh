#!/usr/bin/env bash
# The README's test-split grid on one model: core and sparse, 12 clips each; context at 20/10/5 % with every
# compared method, query-aware at 10/5 %. Usage: bash results/test-grid.sh MODEL OUT_DIR (MODEL: a folder, or
# "builtin" for the built-in model). Called by results/seed1-compare-test/run.sh and results/seed1e-compare-test/run.sh.
set -euo pipefail
export HF_HUB_OFFLINE=1
model="$1" out="$2"
use=()
[ "$model" = builtin ] || use=(--model "$model")
acckv eval "${use[@]}" --suite core,sparse --split test -n 12 -m full -m oracle -m random -m uniform \
  -m divprune -m acckv -m acckv-round3 -m acckv-paper -m snapkv --budgets 0.2,0.1,0.05 --protocols context \
  --out-dir "$out/context" --data-dir .acckv/synthavqa -r none
acckv eval "${use[@]}" --suite core,sparse --split test -n 12 -m full -m oracle -m random -m uniform -m acckv \
  -m acckv-round3 --budgets 0.1,0.05 --protocols query-aware \
  --out-dir "$out/query-aware" --data-dir .acckv/synthavqa -r none
