#!/usr/bin/env bash
# Every test-split number the README quotes, on the built-in demo model v2e (v2 + stage 2e): the multiple-choice
# sample manifest, the results grid (as results/v2-compare-test-r4/run.sh), the long suite streamed through
# 1,024 media tokens (as results/v2-long-stream-test/run.sh) and the full cache on each suite's test split.
set -euo pipefail
export HF_HUB_OFFLINE=1
out=results/v2e-test
python -m acckv_cli.evaluation.sample_choices "$out/samples-mc.jsonl"
acckv eval --manifest "$out/samples-mc.jsonl" -m full --protocols context --out-dir "$out/samples-mc" -r none
bash results/test-grid.sh builtin "$out"
acckv eval --suite long --split test -n 6 -m full -m oracle -m random -m uniform -m acckv -m acckv-round3 \
  --budgets 1024 --protocols stream --out-dir "$out/long-stream" --data-dir .acckv/synthavqa -r none
for suite_n in core:60 sparse:40 long:20; do
  acckv eval --suite "${suite_n%%:*}" --split test -n "${suite_n##*:}" -m full --protocols context \
    --out-dir "$out/full/${suite_n%%:*}" --data-dir .acckv/synthavqa -r none
done
