#!/usr/bin/env bash
# Round 11 (issue #21), validation splits only: round 10's candidate (skeleton=0.25: +1.3 points on sparse in three
# of four cells on v2f, inside noise, with no second seed to check it on) and round 9's default on the rebuilt
# second-seed model (results/demo-seed1/models/seed1f): 12 clips per suite first, as round 8 checked its default
# there, then (second run of this script, -n 30) 30 clips per suite, as round 10 measured v2f.
# full, random and uniform on the first 12 clips are round 8's rows on the same clips and model (results/validation-round-8/seed1f-kurtosis;
# the rebuilt model gives the lost one's answers, tests/test_seeds.py), copied by evaluation.reuse. Resumable.
set -euo pipefail
export HF_HUB_OFFLINE=1
out=results/validation-round-11/seed1f
[ -d runs/demo-seed1f ] || { mkdir -p runs && cp -r results/demo-seed1/models/seed1f runs/demo-seed1f; }
[ -f "$out/results.jsonl" ] || python -m acckv_cli.evaluation.reuse \
  results/validation-round-8/seed1f-kurtosis/results.jsonl.gz --methods full,random,uniform \
  --model runs/demo-seed1f --budgets 0.1,0.05 --out "$out"
acckv eval --model runs/demo-seed1f --suite core,sparse --split validation -n 30 -m full -m random -m uniform \
  -m oracle -m acckv -m acckv:skeleton=0.25 --budgets 0.1,0.05 --protocols context,query-aware --out-dir "$out" \
  --data-dir .acckv/synthavqa -r none --resume
gzip -kf "$out/results.jsonl"  # results.jsonl is ignored by git; the compressed copy is committed
python -m acckv_cli.evaluation.paired "$out/results.jsonl.gz" --method acckv:skeleton=0.25 \
  --against acckv,random,uniform > results/validation-round-11/paired-intervals.md
