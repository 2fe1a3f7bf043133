#!/usr/bin/env bash
# Round 9's default (chosen on validation with v2f only) checked on the second-seed model rebuilt by
# results/demo-seed1/run-2e.sh and run-2f.sh (runs/demo-seed1f), on round 8's two-seed grid: the 12 test clips per
# suite of results/r8-test, 10 and 5 % media, both protocols. Baselines' rows are reused, not rerun:
# - v2f: every row is in results/r9-test (its 30 clips per suite hold these 12), so nothing is recomputed;
# - seed1f: full, oracle, random and uniform (and divprune under context) from results/r8-test/seed1f, made by the
#   same model if training reproduced it; acckv-round8 is run again to check that it did (it is round 8's acckv, and
#   tests/test_results.py compares the two runs' answers), acckv is round 9's default, and divprune under
#   query-aware is new (r8-test did not run it).
# Resumable: rerun after an interruption.
set -euo pipefail
export HF_HUB_OFFLINE=1
out=results/r9-seed-check
grid=(--suite core,sparse --split test -n 12 -m full -m oracle -m random -m uniform -m divprune -m acckv
      -m acckv-round8 --budgets 0.1,0.05 --protocols context,query-aware --data-dir .acckv/synthavqa -r none --resume)
[ -f "$out/v2f/results.jsonl" ] || python -m acckv_cli.evaluation.reuse results/r9-test/v2f/results.jsonl.gz \
  --methods full,oracle,random,uniform,divprune,acckv,acckv-round8 --model builtin-demo \
  --videos-from results/r8-test/v2f/context/results.jsonl.gz --out "$out/v2f"
acckv eval "${grid[@]}" --out-dir "$out/v2f"
# the rows name the model by the folder it was loaded from: load the committed copy from that same folder
[ -d runs/demo-seed1f ] || { mkdir -p runs && cp -r results/demo-seed1/models/seed1f runs/demo-seed1f; }
[ -f "$out/seed1f/results.jsonl" ] || python -m acckv_cli.evaluation.reuse \
  results/r8-test/seed1f/context/results.jsonl.gz results/r8-test/seed1f/query-aware/results.jsonl.gz \
  --methods full,oracle,random,uniform,divprune --model runs/demo-seed1f --budgets 0.1,0.05 --out "$out/seed1f"
acckv eval --model runs/demo-seed1f "${grid[@]}" --out-dir "$out/seed1f"
for run in v2f seed1f; do
  gzip -kf "$out/$run/results.jsonl"  # results.jsonl is ignored by git; the compressed copy is committed
done
python -m acckv_cli.evaluation.seeds "$out/v2f/summary.json" "$out/seed1f/summary.json" \
  --against random,uniform,divprune > "$out/ranking.md"
python -m acckv_cli.evaluation.seeds "$out/v2f/summary.json" "$out/seed1f/summary.json" \
  --against random,uniform,divprune --tally > "$out/ranking-tally.md"
python -m acckv_cli.evaluation.paired "$out/seed1f/results.jsonl.gz" --method acckv \
  --against random,uniform,divprune,oracle,acckv-round8 > "$out/paired-intervals-seed1f.md"
