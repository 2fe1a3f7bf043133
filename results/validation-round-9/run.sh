#!/usr/bin/env bash
# Round 9 (issue #21), validation splits only: long clips streamed through 1,024 media tokens, where no default has
# been chosen on validation before (the long target, random + 5, was missed on the test split twice).
set -euo pipefail
export HF_HUB_OFFLINE=1
acckv eval --suite long --split validation -n 12 -m full -m oracle -m random -m uniform -m acckv -m acckv-round7 \
  -m acckv:skeleton=1 -m acckv:salience=0 --budgets 1024 --protocols stream \
  --out-dir results/validation-round-9/long-stream --data-dir .acckv/synthavqa -r none
# then maximal marginal relevance for the ranked share (acckv.diversity, methods/diversity.py): 30 clips per suite
acckv eval --suite core,sparse --split validation -n 30 -m full -m oracle -m random -m acckv -m acckv:diversity=1 \
  -m acckv:diversity=3 -m acckv:diversity=10 -m acckv:diversity=3,skeleton=0.25 --budgets 0.1,0.05 \
  --protocols context,query-aware --out-dir results/validation-round-9/diversity --data-dir .acckv/synthavqa -r none
# (stopped after all 30 core clips and 7 sparse clips: every sparse cell already below the default in accuracy and
# KL; results.jsonl keeps the complete clips only, summarised with evaluation.summary)
# then, under query-aware only, more weight on the question's attention relative to key salience
acckv eval --suite core,sparse --split validation -n 30 -m full -m random -m acckv -m acckv:salience=1 \
  -m acckv:salience=0.5 -m acckv:attention_from_depth=0.5,salience=1 --budgets 0.1,0.05 --protocols query-aware \
  --out-dir results/validation-round-9/question-weight --data-dir .acckv/synthavqa -r none
# then SnapKV's two ideas inside AccKV: the ranking pooled over neighbours (acckv.pooling) and an observation window
acckv eval --suite core,sparse --split validation -n 30 -m full -m random -m acckv -m acckv:pooling=3 \
  -m acckv:pooling=7 -m acckv:score_queries=window:32 --budgets 0.1,0.05 --protocols context,query-aware \
  --out-dir results/validation-round-9/snapkv-ideas --data-dir .acckv/synthavqa -r none
# then the candidate pooling=3 on the long clips streamed (the same 12 clips as the first command)
acckv eval --suite long --split validation -n 12 -m acckv -m acckv:pooling=3 --budgets 1024 --protocols stream \
  --out-dir results/validation-round-9/long-stream-pooling --data-dir .acckv/synthavqa -r none
