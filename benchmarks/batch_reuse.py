"""Encode once, ask many: N questions about one clip via `acckv batch`'s runner vs. N `ask_clip` calls.

The batch runner decodes the clip once and reuses the `DecodedMedia` for every question; `ask_clip`
decodes it again for each call. Processor, encoders, prefill, compression and generation run per question
in both. Same process, same model, one warm-up call first; each side is timed `--repeat` times, in
alternating order, and the median is reported, as wall time and as CPU time (this process and its ffmpeg
children; less sensitive to other jobs on a shared machine).

    python benchmarks/batch_reuse.py [--clip samples/flute_red_circle.mp4] [-n 8] [--model DIR] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QUESTIONS = ["What instrument plays?", "What shape is shown?", "What colour is the shape?",
             "When does the sound start?", "Does the shape move?", "How many notes are played?",
             "Is there speech?", "What happens at the end?"]


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(root / "samples" / "flute_red_circle.mp4"))
    ap.add_argument("-n", type=int, default=8, help="questions per clip")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--method", default="acckv")
    ap.add_argument("--budget", default="0.2")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is steadiest on a busy machine)")
    args = ap.parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)

    from acckv_cli.batch import Item, LineWriter, Options, item_key, run_items
    from acckv_cli.methods import Budget
    from acckv_cli.model import load_model
    from acckv_cli.pipeline import ask_clip

    lm = load_model(args.model, args.device)
    budget = Budget.parse(args.budget)
    questions = [QUESTIONS[i % len(QUESTIONS)] + ("" if i < len(QUESTIONS) else f" ({i})") for i in range(args.n)]
    items = [Item(i, f"q{i}", args.clip, q, None, item_key(args.clip, q, args.method, str(budget)))
             for i, q in enumerate(questions)]
    options = Options(args.method, budget, args.fps, None, args.max_new_tokens)
    ask_clip(lm, args.clip, questions[0], args.method, budget, args.fps, None, args.max_new_tokens)  # warm-up

    def clock() -> tuple[float, float]:
        t = os.times()
        return time.perf_counter(), t.user + t.system + t.children_user + t.children_system

    def separate() -> None:
        for q in questions:
            ask_clip(lm, args.clip, q, args.method, budget, args.fps, None, args.max_new_tokens)

    def batch() -> None:
        with tempfile.TemporaryDirectory() as tmp, LineWriter(os.path.join(tmp, "r.jsonl"), "jsonl", True) as w:
            tally = run_items(lm, items, options, w.write)
        assert tally.done == len(items), tally

    times: dict[str, list[tuple[float, float]]] = {"separate": [], "batch": []}
    for rep in range(args.repeat):  # alternating order, so drifting machine load hits both sides alike
        for name in (("separate", "batch") if rep % 2 == 0 else ("batch", "separate")):
            wall0, cpu0 = clock()
            (separate if name == "separate" else batch)()
            wall1, cpu1 = clock()
            times[name].append((wall1 - wall0, cpu1 - cpu0))
    med = {name: (statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts))
           for name, ts in times.items()}
    import torch
    print(f"clip {args.clip}  model {lm.name} on {lm.device} ({torch.get_num_threads()} CPU threads)  method "
          f"{args.method} @ {budget}  {args.n} questions  max_new_tokens {args.max_new_tokens}  median of {args.repeat}")
    labels = {"separate": "separate ask_clip calls (decode every time)",
              "batch": "batch (decode once, reuse DecodedMedia)   "}
    for name, (wall, cpu) in med.items():
        print(f"{labels[name]}: wall {wall:6.2f} s ({wall / args.n:.3f} s/question)   "
              f"CPU {cpu:6.2f} s ({cpu / args.n:.3f} s/question)")
    print(f"ratio separate / batch: wall {med['separate'][0] / med['batch'][0]:.2f}x   "
          f"CPU {med['separate'][1] / med['batch'][1]:.2f}x")

if __name__ == "__main__":
    main()
