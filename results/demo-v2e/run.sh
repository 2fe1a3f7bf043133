#!/usr/bin/env bash
# Demo model stage 2e (issue #23): v2 fine-tuned so that a multiple-choice turn is answered with the option's
# text (which `eval` reads back as that option) instead of its letter, which v2, 2c and 2d never learned to
# pick above chance. 500 steps first (multiple choice 50 % on quick validation), then resumed with a
# 1,000-step cosine. Resumable: rerun after an interruption.
set -euo pipefail
export HF_HUB_OFFLINE=1
python -m acckv_cli.demo.train --out runs/demo-v2e --init acckv_cli/assets/demo --steps 1000 --lr 2e-4 --seed 2 \
  --mc-share 0.3 --mc-answer text --validate-every 250 --resume "$@"
