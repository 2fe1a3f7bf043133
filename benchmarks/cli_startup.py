"""How fast `acckv` answers when it needs no model: a usage error, a missing file, `acckv methods`, `--help`.

Issue #26's targets, in the same environment: a usage or missing-file error within 0.5× the time of
`python -c "import torch"`, `acckv methods` within 1.5× it. The commands run interleaved, round after round,
so that the load of a shared machine weighs on all of them alike; each reports its median wall time.

    python benchmarks/cli_startup.py --rounds 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = str(ROOT / "samples" / "flute_red_circle.mp4")
CLI = [sys.executable, "-m", "acckv_cli"]
COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "ask: missing file": [*CLI, "ask", "missing.mp4", "What plays?"],
    "ask: bad budget": [*CLI, "ask", CLIP, "What plays?", "-b", "150%"],
    "ask: bad -o": [*CLI, "ask", CLIP, "What plays?", "-o", "merge=none"],
    "eval: missing manifest": [*CLI, "eval", "--manifest", "missing.jsonl"],
    "acckv methods": [*CLI, "methods"],
    "acckv --help": [*CLI, "--help"],
}
TARGETS = {"acckv methods": 1.5}  # × import torch; every other acckv command: 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, cmd in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT)
            times[name].append(time.perf_counter() - start)
    torch_s = statistics.median(times["import torch"])
    print(f"{'command':24} {'median s':>9} {'× import torch':>15} {'target':>7}")
    for name, values in times.items():
        median = statistics.median(values)
        target = "" if name == "import torch" else f"≤ {TARGETS.get(name, 0.5)}"
        print(f"{name:24} {median:9.3f} {median / torch_s:15.2f} {target:>7}")
    print(f"({args.rounds} rounds, interleaved; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
