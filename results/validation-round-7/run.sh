#!/usr/bin/env bash
# AccKV round 7 (issue #21), validation splits only, on both demo models (the built-in v2e and the second seed
# after the same stage 2e, runs/demo-seed1e): a floor under A-F's modality quotas (modality_floor).
set -euo pipefail
export HF_HUB_OFFLINE=1
for model in builtin runs/demo-seed1e; do
  name=$([ "$model" = builtin ] && echo v2e || echo seed1e)
  acckv eval $([ "$model" = builtin ] || echo --model "$model") --suite core,sparse --split validation -n 12 \
    -m full -m random -m uniform -m acckv -m acckv:modality_floor=0.5 -m acckv:modality_floor=0.8 \
    -m acckv:focusing=false --budgets 0.1,0.05 --protocols context,query-aware \
    --out-dir "results/validation-round-7/$name" --data-dir .acckv/synthavqa -r none
done
# then, with the floor, which other component costs the second seed its core accuracy
for model in builtin runs/demo-seed1e; do
  name=$([ "$model" = builtin ] && echo v2e || echo seed1e)
  acckv eval $([ "$model" = builtin ] || echo --model "$model") --suite core,sparse --split validation -n 12 \
    -m full -m acckv:modality_floor=0.8,merge_target=none -m acckv:modality_floor=0.8,salience=0 \
    -m acckv:modality_floor=0.8,skeleton=1 -m acckv:modality_floor=1 --budgets 0.1,0.05 \
    --protocols context,query-aware --out-dir "results/validation-round-7/$name-b" --data-dir .acckv/synthavqa -r none
done
