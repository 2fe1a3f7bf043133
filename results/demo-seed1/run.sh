#!/usr/bin/env bash
# The second-seed demo model (issue #20): v2's recipe with seed 1, both stages, not shipped as the default.
# Stage 1 is v1's recipe (core SynthAVQA only, 4 layers, 4,200 steps, lr 1e-3) run with today's trainer;
# stage 2 is v2's (deepen to 6 layers, three suites, lr 5e-4, 2,000-step cosine). Resumable: rerun the
# script after an interruption and each stage continues from its last checkpoint.
set -euo pipefail
export HF_HUB_OFFLINE=1
python -m acckv_cli.demo.train --out runs/demo-seed1-stage1 --steps 4200 --lr 1e-3 --seed 1 --mix core=1 \
  --mc-share 0 --validate-every 1050 --resume
python -m acckv_cli.demo.train --out runs/demo-seed1 --init runs/demo-seed1-stage1 --layers 6 --steps 2000 \
  --lr 5e-4 --seed 1 --validate-every 500 --resume "$@"
