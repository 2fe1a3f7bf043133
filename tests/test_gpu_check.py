"""`benchmarks/gpu_check.sh --dry-run` runs on a CPU: the GPU check is ready to run when a GPU is at hand.

The dry run checks the current Python's imports and transformers version, lists the commands, collects the
`gpu` tests (they skip here), builds the 7B plan on the meta device and runs the device bench's code path at a
tiny size on the CPU in bfloat16. A broken import, a renamed option or a failing equivalence makes it fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run(tmp_path):
    env = {**os.environ, "ACCKV_PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=900)
    summary = (tmp_path / "summary.txt").read_text()
    assert proc.returncode == 0, summary + proc.stdout[-2000:] + proc.stderr[-2000:]
    for stage in ("env", "gpu", "tests", "plan", "bench-tiny"):
        assert f"ok      {stage}" in summary, summary
    assert "would run" in summary and "--device cuda --dtype bfloat16 --shape 7b --sizes 8k,32k" in summary
    plan = json.loads((tmp_path / "plan.json").read_text().strip().splitlines()[-1])
    assert plan["layers"] == 28 and plan["fits"] and 7.5e9 < plan["parameters"] < 7.8e9
    tiny = json.loads((tmp_path / "bench-device-tiny.json").read_text())
    assert tiny["equivalence_ok"] and tiny["config"]["dtype"] == "bfloat16"
    assert "skipped" in (tmp_path / "tests.log").read_text()  # the gpu tests were collected and skipped
