"""The 10-minute file of docs/long-videos.md: peak memory and wall time of `acckv ask` under `stream` and
`context`, each in a fresh process measured by `/usr/bin/time -v`, and the same command on a 4-s sample (what
Python, torch, transformers and the model cost before any clip).

The file is made here: `testsrc2` 320×240 at 25 fps with a beeping 440 Hz tone, 600 s. Writes
`benchmarks/long-file.json` (every number the docs' table shows, the commands and the commit) and prints a
Markdown table.

    python benchmarks/long_file.py [--seconds 600] [--keep FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ("What do you hear?", "What colour is the square?")


def make_clip(path: Path, seconds: int) -> None:
    from acckv_cli.media.ffmpeg import ffmpeg_executable

    subprocess.run([ffmpeg_executable(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:beep_factor=4:sample_rate=44100:duration={seconds}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
                    str(path)], check=True)


def measure(clip: str, protocol: str) -> dict:
    """One `acckv ask … --json` in a fresh process under /usr/bin/time -v."""
    command = [sys.executable, "-m", "acckv_cli", "ask", clip, *QUESTIONS, "--protocol", protocol, "-b", "1024",
               "--json"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr).group(1)
    seconds = sum(float(part) * 60 ** i for i, part in enumerate(reversed(wall.split(":"))))
    answers = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    first = answers[0]
    return {"protocol": protocol, "frames": first["media"]["frames"], "sampled_fps": first["media"]["sampled_fps"],
            "audio_tokens": first["tokens"]["audio"], "prompt_tokens": first["tokens"]["total"],
            "kv_bytes": first["kv_bytes"], "kv_bytes_full": first["kv_bytes_full"],
            "peak_rss_gb": round(rss_kb * 1024 / 1e9, 2), "wall_s": round(seconds, 1),
            "timings": first["timings"], "answers": [a["answer"] for a in answers],
            "command": " ".join(["acckv", *command[3:]])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--keep", help="make (or reuse) the clip at this path instead of a temporary one")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()  # the code measured (taken before the runs)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(args.keep) if args.keep else Path(tmp) / "long10min.mp4"
        if not clip.exists():
            make_clip(clip, args.seconds)
        runs = [measure(str(clip), protocol) for protocol in ("stream", "context")]
    baseline = measure(str(ROOT / "samples" / "flute_red_circle.mp4"), "stream")
    result = {"clip": f"testsrc2 320x240 25 fps + beeping 440 Hz tone, {args.seconds} s", "commit": commit,
              "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "runs": runs,
              "baseline_4s_sample": {k: baseline[k] for k in ("peak_rss_gb", "wall_s", "command")}}
    (ROOT / "benchmarks" / "long-file.json").write_text(json.dumps(result, indent=1) + "\n")
    print("| protocol | frames | audio tokens | prompt tokens | KV kept / full | peak RSS | wall (seconds) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        t = r["timings"]
        print(f"| `{r['protocol']}` | {r['frames']:,} ({r['sampled_fps']} fps) | {r['audio_tokens']:,} | "
              f"{r['prompt_tokens']:,} | {r['kv_bytes'] / 2**20:.1f} / {r['kv_bytes_full'] / 2**20:.1f} MiB | "
              f"{r['peak_rss_gb']:.2f} GB | {r['wall_s']:.0f} s (decode {t['decode_s']:.1f}, encode "
              f"{t['encode_s']:.1f}, media prefill {t['media_prefill_s']:.1f}) |")
    print(f"\n4-s sample: {result['baseline_4s_sample']['peak_rss_gb']:.2f} GB; commit {commit}")


if __name__ == "__main__":
    main()
