#!/usr/bin/env bash
# Stage 2e on the second-seed model (results/demo-v2e/run.sh's recipe from runs/demo-seed1): multiple-choice
# turns answered with the option's text, 1,000-step cosine. Resumable.
set -euo pipefail
export HF_HUB_OFFLINE=1
# stage 2's model is committed (results/demo-seed1/models/seed1, identical training record): on a machine without
# runs/demo-seed1, start from that copy instead of retraining stages 1 and 2
[ -d runs/demo-seed1 ] || { mkdir -p runs && cp -r results/demo-seed1/models/seed1 runs/demo-seed1; }
python -m acckv_cli.demo.train --out runs/demo-seed1e --init runs/demo-seed1 --steps 1000 --lr 2e-4 --seed 3 \
  --mc-share 0.3 --mc-answer text --validate-every 250 --resume "$@"
