#!/usr/bin/env bash
# The README's results table (round-4 AccKV defaults, demo model v2), test splits.
set -euo pipefail
export HF_HUB_OFFLINE=1
acckv eval --suite core,sparse --split test -n 12 -m full -m oracle -m random -m uniform -m divprune -m acckv \
  -m acckv-round3 -m acckv-paper -m snapkv --budgets 0.2,0.1,0.05 --protocols context \
  --out-dir results/v2-compare-test-r4/context --data-dir .acckv/synthavqa -r none
acckv eval --suite core,sparse --split test -n 12 -m full -m oracle -m random -m uniform -m acckv -m acckv-round3 \
  --budgets 0.1,0.05 --protocols query-aware \
  --out-dir results/v2-compare-test-r4/query-aware --data-dir .acckv/synthavqa -r none
