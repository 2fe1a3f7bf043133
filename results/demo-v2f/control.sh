#!/usr/bin/env bash
# Control for stage 2f: the same 400 steps from v2e with the same data, without the stop loss, so that what stage 2f
# changes in full-cache answers can be told apart from what any fine-tune from v2e changes.
set -euo pipefail
export HF_HUB_OFFLINE=1
python -m acckv_cli.demo.train --out runs/demo-v2f-control --init acckv_cli/assets/demo --steps 400 --lr 1e-4 --seed 3 \
  --mc-share 0.3 --mc-answer text --validate-every 200 --resume "$@"
