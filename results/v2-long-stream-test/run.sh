#!/usr/bin/env bash
# Issue #21's long-clip target: the long suite (60-180 s) streamed through a bounded cache of 1,024 media tokens.
set -euo pipefail
export HF_HUB_OFFLINE=1
acckv eval --suite long --split test -n 6 -m full -m oracle -m random -m uniform -m acckv -m acckv-round3 \
  --budgets 1024 --protocols stream --out-dir results/v2-long-stream-test --data-dir .acckv/synthavqa -r none
