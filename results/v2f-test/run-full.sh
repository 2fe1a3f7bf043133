#!/usr/bin/env bash
# The built-in v2f's test-split numbers that do not depend on AccKV's defaults: the multiple-choice sample manifest
# and the full cache on each suite's test split (as results/v2e-test/run.sh made them for v2e).
set -euo pipefail
export HF_HUB_OFFLINE=1
out=results/v2f-test
python -m acckv_cli.evaluation.sample_choices "$out/samples-mc.jsonl"
acckv eval --manifest "$out/samples-mc.jsonl" -m full --protocols context --out-dir "$out/samples-mc" -r none
for suite_n in core:60 sparse:40 long:20; do
  acckv eval --suite "${suite_n%%:*}" --split test -n "${suite_n##*:}" -m full --protocols context \
    --out-dir "$out/full/${suite_n%%:*}" --data-dir .acckv/synthavqa -r none
done
# issue #20's done-when command on the sparse test split (6 clips): full cache, random and the oracle at 5 %
acckv eval --suite sparse --split test -n 6 -m full -m random -m oracle --budgets 0.05 --protocols context \
  --out-dir "$out/done-when" --data-dir .acckv/synthavqa -r none
