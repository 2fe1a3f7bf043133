#!/usr/bin/env bash
# Round 8 (issue #21), validation splits only: the candidate built-in model v2f (v2e + the stop loss,
# results/demo-v2f/run.sh) against v2e's round-7 rows, with round 7's defaults.
set -euo pipefail
export HF_HUB_OFFLINE=1
acckv eval --model runs/demo-v2f --suite core,sparse --split validation -n 12 -m full -m random -m uniform -m acckv \
  --budgets 0.1,0.05 --protocols context,query-aware --out-dir results/validation-round-8/v2f \
  --data-dir .acckv/synthavqa -r none
# then the flat-kurtosis skeleton (acckv.flat_kurtosis_audio / _video): lay a modality's whole quota evenly in a
# layer where nothing in its ranking stands out; thresholds from the kurtosis of core and sparse validation clips
acckv eval --model runs/demo-v2f --suite core,sparse --split validation -n 30 -m full -m oracle -m random -m uniform \
  -m acckv -m acckv:flat_kurtosis_video=13 -m acckv:flat_kurtosis_audio=3.5 \
  -m acckv:flat_kurtosis_audio=3.5,flat_kurtosis_video=13 -m acckv:skeleton=1 --budgets 0.1,0.05 \
  --protocols context,query-aware --out-dir results/validation-round-8/v2f-kurtosis --data-dir .acckv/synthavqa -r none
# the same on the second seed after the same stage 2f (results/demo-seed1/run-2f.sh), for the choice of a default
# (12 clips per suite, as round 7 checked its default on both models)
acckv eval --model runs/demo-seed1f --suite core,sparse --split validation -n 12 -m full -m random -m uniform -m acckv \
  -m acckv:flat_kurtosis_audio=3.5 -m acckv:flat_kurtosis_audio=3.5,flat_kurtosis_video=13 --budgets 0.1,0.05 \
  --protocols context,query-aware --out-dir results/validation-round-8/seed1f-kurtosis --data-dir .acckv/synthavqa -r none
