#!/usr/bin/env bash
# The second-seed model after stage 2f, as the built-in v2f got it (results/demo-v2f/run.sh: the stop loss, 400
# steps from the stage-2e model), for the two-seed ranking check. Data seed 2 (v2f's stage used 3, this model's
# stage 2e used 3). Resumable: rerun after an interruption.
set -euo pipefail
export HF_HUB_OFFLINE=1
# stage 2e's model is committed (results/demo-seed1/models/seed1e): on a machine without runs/demo-seed1e, start there
[ -d runs/demo-seed1e ] || { mkdir -p runs && cp -r results/demo-seed1/models/seed1e runs/demo-seed1e; }
python -m acckv_cli.demo.train --out runs/demo-seed1f --init runs/demo-seed1e --steps 400 --lr 1e-4 --seed 2 \
  --mc-share 0.3 --mc-answer text --stop-weight 1.0 --validate-every 200 --resume "$@"
