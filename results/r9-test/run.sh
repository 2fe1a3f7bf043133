#!/usr/bin/env bash
# Round 9's default (the ranking pooled over 3 neighbours, chosen on validation: docs/acckv-defaults.md round 9) on
# the 30 test clips per suite of results/r8-test-wide, v2f, run once; acckv-round8 is the default before it. Then the
# long suite streamed through 1,024 media tokens, as results/r8-test ran it. The second-seed model's weights were lost
# with the machine that trained them (runs/ is not in git) when this ran; round 9 on the rebuilt second seed is
# results/r9-seed-check/run.sh.
set -euo pipefail
export HF_HUB_OFFLINE=1
out=results/r9-test
acckv eval --suite core,sparse --split test -n 30 -m full -m oracle -m random -m uniform -m divprune -m acckv \
  -m acckv-round8 -m acckv-paper --budgets 0.1,0.05 --protocols context,query-aware --out-dir "$out/v2f" \
  --data-dir .acckv/synthavqa -r none
acckv eval --suite long --split test -n 6 -m full -m oracle -m random -m uniform -m acckv -m acckv-round8 \
  --budgets 1024 --protocols stream --out-dir "$out/long-stream" --data-dir .acckv/synthavqa -r none
for run in v2f long-stream; do
  gzip -kf "$out/$run/results.jsonl"  # results.jsonl is ignored by git; the compressed copy is committed
done
python -m acckv_cli.evaluation.paired "$out/v2f/results.jsonl.gz" --method acckv \
  --against random,uniform,divprune,oracle,acckv-round8 > "$out/paired-intervals.md"
python -m acckv_cli.evaluation.paired "$out/long-stream/results.jsonl.gz" --method acckv \
  --against random,uniform,oracle,acckv-round8 >> "$out/paired-intervals.md"
