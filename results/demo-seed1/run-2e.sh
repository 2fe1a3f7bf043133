#!/usr/bin/env bash
# Stage 2e on the second-seed model (results/demo-v2e/run.sh's recipe from runs/demo-seed1): multiple-choice
# turns answered with the option's text, 1,000-step cosine. Resumable.
set -euo pipefail
export HF_HUB_OFFLINE=1
python -m acckv_cli.demo.train --out runs/demo-seed1e --init runs/demo-seed1 --steps 1000 --lr 2e-4 --seed 3 \
  --mc-share 0.3 --mc-answer text --validate-every 250 --resume "$@"
