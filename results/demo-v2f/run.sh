#!/usr/bin/env bash
# Demo model stage 2f: v2e fine-tuned with the stop loss (acckv_cli/demo/losses.py::stop_loss), so that under a
# compressed cache a one-word answer still ends (v2e said "flute flute" for the README's Quick start). Otherwise
# v2e's recipe (multiple choice answered with the option's text). Resumable: rerun after an interruption.
set -euo pipefail
export HF_HUB_OFFLINE=1
python -m acckv_cli.demo.train --out runs/demo-v2f --init acckv_cli/assets/demo --steps 400 --lr 1e-4 --seed 3 \
  --mc-share 0.3 --mc-answer text --stop-weight 1.0 --validate-every 200 --resume "$@"
