#!/usr/bin/env bash
# The GPU check (issue #27): one prepared script for the day a CUDA machine is at hand.
#
#   benchmarks/gpu_check.sh [--dry-run] [--out DIR] [--wheelhouse DIR] [--sizes 8k,32k] [--full-suite]
#   benchmarks/gpu_check.sh --prepare-wheels DIR        (on a machine with network access, beforehand)
#
# Stages, each logged to DIR/<stage>.log and summarised in DIR/summary.txt (exit 1 if any failed):
#   env    a Python with CUDA torch and transformers 5.24/5.25: $ACCKV_PYTHON, else python3 (the GPU image's, which
#          holds torch 2.11 + cu130 and transformers 5.17), with the wheels of --wheelhouse installed offline
#          into .acckv/gpu-site/ and put first on PYTHONPATH (a venv made from the image's python, itself a venv,
#          would not see its torch). The GPU machines here reach no package index: prepare the wheels with
#          --prepare-wheels where there is a network and carry the folder along;
#   gpu    nvidia-smi and what torch sees (device, memory, bfloat16);
#   tests  the tests marked `gpu` (tests/test_gpu.py: tiny thinkers on CUDA in float32 and bfloat16, masked-full
#          equivalence, streaming, front-end blocks, merge counts); --full-suite runs every test as well (it
#          needs the media libraries: --prepare-wheels --with-media);
#   plan   the 7B-shaped thinker built on the meta device: parameters, weight and KV bytes, peak estimate per
#          size against the GPU's memory;
#   bench  `acckv bench --device cuda --dtype bfloat16` on a random thinker with Qwen2.5-Omni-7B's full decoder
#          (28 layers) at --sizes (default 8k,32k): prefill overhead of every method, decode ms/token for the
#          full cache and AccKV's 20 %/10 % caches, KV bytes, peak GPU memory, masked-full equivalence.
# --dry-run (any machine, CI runs it through tests/test_gpu_check.py): the same stages without a GPU — the
# current Python's imports and versions, the commands it would run, the gpu tests collected (they skip), the
# plan for an 80-GB GPU, and a tiny-size pass of the device bench on the CPU in bfloat16.
set -uo pipefail

cd "$(dirname "$0")/.."
DRY=0; OUT=""; WHEELS=".acckv/wheels"; SIZES="8k,32k"; FULL=0; PREPARE=""; MEDIA=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="$2"; shift ;;
    --wheelhouse) WHEELS="$2"; shift ;;
    --sizes) SIZES="$2"; shift ;;
    --full-suite) FULL=1 ;;
    --prepare-wheels) PREPARE="$2"; shift ;;
    --with-media) MEDIA=1 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

TRANSFORMERS="transformers==5.24.0"
MEDIA_WHEELS="av==18.1.0 decord==0.6.0 imageio-ffmpeg soxr librosa soundfile audioread pooch"
if [ -n "$PREPARE" ]; then  # the GPU image has Python 3.12, torch 2.11+cu130 and transformers 5.17
  mkdir -p "$PREPARE"
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    --platform manylinux_2_28_x86_64 -d "$PREPARE" "$TRANSFORMERS" $([ $MEDIA = 1 ] && echo $MEDIA_WHEELS)
  exit $?
fi

OUT="${OUT:-benchmarks/gpu-check-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"; : > "$SUMMARY"
FAILED=0
say() { echo "$*" | tee -a "$SUMMARY"; }
stage() {  # stage NAME COMMAND...: run, log, record ok/FAILED
  local name="$1"; shift
  local start=$SECONDS
  if "$@" > "$OUT/$name.log" 2>&1; then say "ok      $name ($((SECONDS - start)) s)"
  else say "FAILED  $name ($((SECONDS - start)) s): see $OUT/$name.log"; tail -5 "$OUT/$name.log" | sed 's/^/        /'; FAILED=1; fi
}
say "acckv GPU check $(date -Is) $([ $DRY = 1 ] && echo '(dry run)') — commit $(git rev-parse --short HEAD 2>/dev/null)"

# --- env ------------------------------------------------------------------------------------------------------
find_python() {
  if [ -n "${ACCKV_PYTHON:-}" ]; then echo "$ACCKV_PYTHON"; elif [ $DRY = 1 ]; then command -v python; else command -v python3; fi
}
PY="$(find_python)"
SITE=""
if [ $DRY = 0 ] && [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl > /dev/null 2>&1; then
  # offline, no dependency resolution: the image already has what these wheels need (torch, tokenizers, hub)
  "$PY" -m pip install --quiet --no-index --no-deps --upgrade --target .acckv/gpu-site "$WHEELS"/*.whl \
    > "$OUT/pip.log" 2>&1 || { say "FAILED  env: pip could not install $WHEELS (see $OUT/pip.log)"; exit 1; }
  SITE="$PWD/.acckv/gpu-site:"
fi
export PYTHONPATH="$SITE$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
check_env() {
  "$PY" - "$DRY" <<'PYEOF'
import sys
import torch, transformers
import acckv_cli.bench.device, acckv_cli.cli.app  # noqa: F401  (the bench and the command line import)
dry = sys.argv[1] == "1"
print(f"python {sys.version.split()[0]} at {sys.executable}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
      f"transformers {transformers.__version__}")
if not transformers.__version__.startswith(("5.24.", "5.25.")):
    sys.exit(f"transformers {transformers.__version__}: acckv needs 5.24 or 5.25 (carry the wheel: --prepare-wheels "
             "DIR, then --wheelhouse DIR)")
if not dry and not torch.cuda.is_available():
    sys.exit("torch sees no CUDA device")
PYEOF
}
stage env check_env

# --- gpu ------------------------------------------------------------------------------------------------------
gpu_info() {
  if [ $DRY = 1 ]; then echo "dry run: would run nvidia-smi and query torch.cuda"; command -v nvidia-smi || true; return 0; fi
  nvidia-smi && "$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(torch.cuda.get_device_name(0), \
round(p.total_memory / 2**30, 1), 'GiB; bf16', torch.cuda.is_bf16_supported())"
}
stage gpu gpu_info

# --- tests ----------------------------------------------------------------------------------------------------
run_tests() {
  # on a CPU the gpu tests are collected and skip: that proves they import and are marked
  "$PY" -m pytest -m gpu -rs -p no:cacheprovider tests/test_gpu.py || return 1
  if [ $FULL = 1 ] && [ $DRY = 0 ]; then "$PY" -m pytest -p no:cacheprovider -x -q tests; fi
}
stage tests run_tests

# --- plan -----------------------------------------------------------------------------------------------------
MEMORY_GB=80
if [ $DRY = 0 ]; then MEMORY_GB=$("$PY" -c "import torch; print(torch.cuda.get_device_properties(0).total_memory / 2**30)" 2>/dev/null || echo 80); fi
plan() {
  "$PY" -m acckv_cli.bench.device --plan --shape 7b --sizes "$SIZES" --memory-gb "$MEMORY_GB" | tee "$OUT/plan.json"
  "$PY" -c "import json, sys; sys.exit(0 if json.load(open('$OUT/plan.json'))['fits'] else 'does not fit this GPU')"
}
stage plan plan

# --- bench ----------------------------------------------------------------------------------------------------
BENCH=("$PY" -m acckv_cli bench --device cuda --dtype bfloat16 --shape 7b --sizes "$SIZES"
       --out-json "$OUT/bench-device-7b.json" --out-md "$OUT/bench-device-7b.md")
if [ $DRY = 1 ]; then
  say "dry run: would run ${BENCH[*]}"
  # the same code path at a tiny size on the CPU, in bfloat16 (every method, decode, equivalence)
  stage bench-tiny "$PY" -m acckv_cli bench --device cpu --tiny --dtype bfloat16 --sizes 256 --budgets 0.2 \
    --decode-steps 1 --out-json "$OUT/bench-device-tiny.json" --out-md "$OUT/bench-device-tiny.md"
else
  stage bench "${BENCH[@]}"
fi

say "$([ $FAILED = 0 ] && echo 'all stages ok' || echo 'some stages FAILED') — outputs in $OUT"
exit $FAILED
