#!/usr/bin/env bash
# The long suite streamed through a bounded cache of 1,024 media tokens with round 7's default (modality_floor=0.8),
# on the built-in v2e, test split, run once (results/v2e-test/long-stream had the round-6 default: acckv-round6).
set -euo pipefail
export HF_HUB_OFFLINE=1
acckv eval --suite long --split test -n 6 -m full -m oracle -m random -m uniform -m acckv -m acckv-round6 \
  --budgets 1024 --protocols stream --out-dir results/r7-test/v2e/long-stream --data-dir .acckv/synthavqa -r none
