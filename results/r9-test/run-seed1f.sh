#!/usr/bin/env bash
# Round 9's grid of results/r9-test/run.sh (30 test clips per suite, 10 and 5 %, both protocols) on the second-seed
# model after the same stage 2f (rebuilt and committed: results/demo-seed1/models/seed1f), for the two-seed check on
# the README's 30-clip grid. The first 12 clips per suite were run by results/r9-seed-check/run.sh on the same model
# and code: their rows are copied (evaluation.reuse), the other 18 are run. Resumable.
set -euo pipefail
export HF_HUB_OFFLINE=1
out=results/r9-test/seed1f
[ -d runs/demo-seed1f ] || { mkdir -p runs && cp -r results/demo-seed1/models/seed1f runs/demo-seed1f; }
[ -f "$out/results.jsonl" ] || python -m acckv_cli.evaluation.reuse results/r9-seed-check/seed1f/results.jsonl.gz \
  --methods full,oracle,random,uniform,divprune,acckv,acckv-round8 --model runs/demo-seed1f --out "$out"
acckv eval --model runs/demo-seed1f --suite core,sparse --split test -n 30 -m full -m oracle -m random -m uniform \
  -m divprune -m acckv -m acckv-round8 -m acckv-paper --budgets 0.1,0.05 --protocols context,query-aware \
  --out-dir "$out" --data-dir .acckv/synthavqa -r none --resume
gzip -kf "$out/results.jsonl"  # results.jsonl is ignored by git; the compressed copy is committed
python -m acckv_cli.evaluation.seeds results/r9-test/v2f/summary.json "$out/summary.json" \
  --against random,uniform,divprune --tally > results/r9-test/ranking-tally.md
python -m acckv_cli.evaluation.seeds results/r9-test/v2f/summary.json "$out/summary.json" \
  --against random,uniform,divprune > results/r9-test/ranking.md
python -m acckv_cli.evaluation.paired "$out/results.jsonl.gz" --method acckv \
  --against random,uniform,divprune,oracle,acckv-round8 > results/r9-test/paired-intervals-seed1f.md
