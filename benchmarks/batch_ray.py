"""Throughput of `acckv batch --workers N` with 1 and 2 Ray workers on the same items, in one run.

Items: the four sample clips × their questions (samples/README.md), the clips linked `--reps` times under
new names so there are many videos (each copy is its own video: decoded, encoded and prefilled once for its
questions). Each measurement starts a fresh local Ray instance with N workers of `--cpus-per-worker` CPUs
(= torch threads) each, runs every item through `acckv_cli.batch.ray_workers.run` (the code behind
`acckv batch --workers N`) into a JSONL file, and checks the file has every item exactly once.

Throughput is items per second from the moment every worker has loaded the model to the last record
(the records written in that window over its length), the steady state, including any tail where one
worker has finished and the other still answers its last video. It leaves out Ray's start and the model
load in each worker, a fixed cost per run, shown separately ("start" column) and in the end-to-end rate. The
runs go 1, 2 workers, then 2, 1 (`--rounds 2`), so load from other jobs on a shared machine drifts over
both; the load average is printed before and after.

    python benchmarks/batch_ray.py [--reps 32] [--rounds 2] [--workers 1,2] [--out benchmarks/batch-ray.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's acckv_cli (the workers get the same one through Ray)
# samples/README.md: each clip's questions
QUESTIONS = {
    "flute_red_circle.mp4": [
        "What instrument plays?", "What colour is the circle?", "What shape is red?",
        "What colour is the shape on screen when the flute plays?",
        "Which instrument plays while the circle is visible?"],
    "clarinet_purple_triangle.mp4": [
        "What instrument plays?", "What colour is the triangle?", "What shape is purple?",
        "What colour is the shape on screen when the clarinet plays?",
        "Which instrument plays while the triangle is visible?"],
    "drum_then_violin.mp4": [
        "What instrument plays first?", "What instrument plays last?", "What colour is the square?",
        "What shape is blue?", "What colour is the shape on screen when the drum plays?",
        "Which instrument plays while the square is visible?", "What colour is the star?", "What shape is purple?",
        "What colour is the shape on screen when the violin plays?",
        "Which instrument plays while the star is visible?"],
    "guitar_bell_flute.mp4": [
        "What instrument plays first?", "What instrument plays last?", "What colour is the triangle?",
        "What shape is red?", "What colour is the shape on screen when the guitar plays?",
        "Which instrument plays while the triangle is visible?", "What colour is the square?",
        "What shape is yellow?", "What colour is the shape on screen when the bell plays?",
        "Which instrument plays while the square is visible?", "What colour is the star?", "What shape is white?",
        "What colour is the shape on screen when the flute plays?",
        "Which instrument plays while the star is visible?"],
}


def build_manifest(folder: Path, reps: int) -> Path:
    rows = []
    for rep in range(reps):
        for clip, questions in QUESTIONS.items():
            link = folder / f"r{rep:03d}_{clip}"
            link.symlink_to(ROOT / "samples" / clip)
            rows += [{"video": link.name, "question": q, "answer": None} for q in questions]
    manifest = folder / "items.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def measure(items, options, workers: int, cpus_per_worker: float, out: Path) -> dict:
    from acckv_cli.batch.local import LineWriter
    from acckv_cli.batch.ray_workers import RayConfig, RayStats, cluster, run

    cfg = RayConfig(workers, None, 0.0, cpus_per_worker)
    stamps: list[float] = []
    cpu: list[float] = []  # this process's (the driver's) CPU seconds at each record
    stats = RayStats()
    t0 = time.perf_counter()
    with cluster(cfg) as ray, LineWriter(str(out), "jsonl", truncate=True) as writer:
        def write(record):
            writer.write(record)
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())
        tally = run(items, options, write, cfg, stats=stats, ray=ray)
    t_end = time.perf_counter()
    keys = [json.loads(line)["key"] for line in out.read_text().splitlines()]
    assert sorted(keys) == sorted(it.key for it in items), "every item exactly once"
    assert tally.failed == 0, f"{tally.failed} item(s) failed"
    assert len(stats.ready_at) == workers and stats.deaths == 0
    all_ready = max(stats.ready_at.values())
    steady_n = sum(t > all_ready for t in stamps)
    steady = steady_n / (stamps[-1] - all_ready)
    driver_ms = 1000 * (cpu[-1] - cpu[-steady_n]) / max(1, steady_n - 1)  # driver CPU per item, steady state
    return {"workers": workers, "items": len(items), "items_per_s": steady, "start_s": all_ready - t0,
            "items_before_all_ready": len(stamps) - steady_n, "driver_cpu_ms_per_item": driver_ms,
            "total_s": t_end - t0, "end_to_end_items_per_s": len(items) / (t_end - t0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=32, help="copies of each sample clip")
    ap.add_argument("--rounds", type=int, default=2, help="passes over --workers, every other one reversed")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--cpus-per-worker", type=float, default=1.0)
    ap.add_argument("--budget", default="0.2")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--out", default=None, help="write all numbers to this JSON file")
    args = ap.parse_args()

    from acckv_cli.batch.local import Options, collect_items
    from acckv_cli.methods import Budget

    counts = [int(w) for w in args.workers.split(",")]
    budget = Budget.parse(args.budget)
    options = Options("acckv", budget, "query-aware", 2.0, None, args.max_new_tokens)
    runs = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = build_manifest(Path(tmp), args.reps)
        items, _ = collect_items(str(manifest), None, "acckv", str(budget))
        print(f"{len(items)} items: {len(QUESTIONS)} sample clips × {args.reps} copies × their questions; "
              f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}",
              flush=True)
        for rnd in range(args.rounds):
            for n in (counts if rnd % 2 == 0 else counts[::-1]):
                result = measure(items, options, n, args.cpus_per_worker, Path(tmp) / f"out{n}.jsonl")
                result["round"] = rnd
                result["load_1min_after"] = os.getloadavg()[0]
                runs.append(result)
                print(f"round {rnd}: {n} worker(s): {result['items_per_s']:.2f} items/s steady "
                      f"({result['end_to_end_items_per_s']:.2f} end to end, start {result['start_s']:.1f} s, "
                      f"total {result['total_s']:.1f} s; driver {result['driver_cpu_ms_per_item']:.1f} ms CPU per item), "
                      f"load {result['load_1min_after']:.2f}", flush=True)
    load_after = os.getloadavg()
    mean = {n: statistics.mean(r["items_per_s"] for r in runs if r["workers"] == n) for n in counts}
    e2e = {n: statistics.mean(r["end_to_end_items_per_s"] for r in runs if r["workers"] == n) for n in counts}
    print()
    print("| workers | items/s (steady, mean of rounds) | items/s (end to end) | vs 1 worker |")
    print("|---|---|---|---|")
    for n in counts:
        print(f"| {n} | {mean[n]:.2f} | {e2e[n]:.2f} | {mean[n] / mean[counts[0]]:.2f}× |")
    print(f"\nload average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; "
          f"{args.cpus_per_worker:g} CPU (torch thread) per worker")
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": runs, "mean_items_per_s": mean, "end_to_end": e2e,
                                              "load_before": load_before, "load_after": load_after,
                                              "cpus": os.cpu_count(), "argv": sys.argv[1:]}, indent=1))


if __name__ == "__main__":
    main()
