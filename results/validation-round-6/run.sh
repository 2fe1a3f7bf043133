#!/usr/bin/env bash
# AccKV round 6 (issue #21), validation splits only: rank by key salience alone in the layers whose text-row
# attention points away from brief evidence (benchmarks/where-evidence-is.txt), or in every layer.
set -euo pipefail
export HF_HUB_OFFLINE=1
acckv eval --suite sparse,core --split validation -n 12 -m full -m random -m uniform -m oracle -m acckv \
  -m acckv:attention_from_depth=0.5 -m acckv:attention_from_depth=1 -m acckv:attention_from_depth=1,skeleton=0.25 \
  -m acckv:salience=4 --budgets 0.1,0.05 --protocols context,query-aware \
  --out-dir results/validation-round-6/grid --data-dir .acckv/synthavqa -r none "$@"
# query-aware only: let the question's attention concentrate the quota (salient time bins, question rows, all rows)
acckv eval --suite sparse,core --split validation -n 12 -m full -m acckv -m acckv:coverage=salient_time \
  -m acckv:score_queries=question -m acckv:score_queries=all -m acckv:score_queries=question,coverage=salient_time \
  -m acckv:skeleton=0.25 --budgets 0.1,0.05 --protocols query-aware \
  --out-dir results/validation-round-6/qa --data-dir .acckv/synthavqa -r none "$@"
