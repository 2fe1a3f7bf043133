#!/usr/bin/env bash
# The two-seed ranking check for the built-in v2e: the README's grid (results/v2e-test/run.sh: context and
# query-aware) on the second-seed model after the same stage 2e (results/demo-seed1/run-2e.sh → runs/demo-seed1e).
set -euo pipefail
export HF_HUB_OFFLINE=1
model="${1:-runs/demo-seed1e}"
out=results/seed1e-compare-test
bash results/test-grid.sh "$model" "$out"
python -m acckv_cli.evaluation.seeds results/v2e-test/context/summary.json "$out/context/summary.json" \
  results/v2e-test/query-aware/summary.json "$out/query-aware/summary.json" --against random,uniform,divprune \
  --tally > "$out/ranking-tally.md"
