"""Index once, ask later (issue #22), measured side by side in one run: the size of a cache file against the
full cache's file at 0.2 / 0.1 / 0.05, the time to the first answer from a file against from the video, and
the time to read a file against its size.

    python benchmarks/index_once.py                 # writes benchmarks/index-once.json and index-once.md

Two models, in one process:

* **the built-in demo model, real files**: `samples/drum_then_violin.mp4` (10 s, 630 tokens) and a 135-s long
  SynthAVQA clip (long test item 0 rendered at 135 s: 8,130 tokens). From the video = `ask_clip` (decode,
  processor, encoders, media prefill and compression, question, greedy answer); from the file = `ask_file`
  (header, model fingerprint — recomputed every run, not cached —, every byte read and checksummed, cache
  restored, question, answer). Both `context`, AccKV at 0.2, the model loaded once and warm.
* **the random thinker of Qwen2.5-Omni-3B's shape** that `acckv bench` uses (`acckv_cli/bench/shapes.py`,
  2 decoder layers, float32) on the bench's synthetic 8k-token prompt. There is no file to decode and no
  encoder here, so "from the video" is only media prefill + compression + question + answer: a lower bound
  of what a real clip costs, and so a lower bound of the speed-up. Its files are 2 layers deep; a 36-layer
  model's hold 18× the keys and values per token (the header's overhead does not grow with depth).

Also measured once: the whole `acckv ask` command as a fresh process on the long clip, from the video and
from the file (imports and model loading included; a cold process is what a user types).

Times are medians (and best) of `--repeat` runs (interleaved, so a background load hits both paths alike), on whatever
CPU runs this, with the machine's load average at the start and the end; every answer from a file is checked
to equal the answer from the video. "First answer" is the whole answer, up to `--new-tokens` tokens (the demo
model stops at its end token; the random thinker has none and always decodes them all); "its first token" is
that time without the later tokens' decoding, the same work on both paths, which no cache can save.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from acckv_cli.answer import cachefile
from acckv_cli.answer.indexed import (IndexRequest, ask_file, export_state, index_to_file, restore_session)
from acckv_cli.answer.pipeline import ask_clip
from acckv_cli.answer.report import RetentionReport
from acckv_cli.answer.session import ClipSession
from acckv_cli.bench.prompts import SyntheticMediaPrompt, synthetic_prompt
from acckv_cli.bench.shapes import QWEN25_OMNI_3B, build_thinker
from acckv_cli.methods import Budget, get_method
from acckv_cli.model.load import LoadedModel, load_model

ROOT = Path(__file__).resolve().parent.parent
BUDGETS = (0.2, 0.1, 0.05)
TARGET_SPEEDUP, TARGET_RATIO = 10.0, 0.25


def median_time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def run_times(start: float, timings: dict) -> tuple[float, float]:
    """(seconds to the whole first answer, seconds to its first token): the answer's later tokens are
    `generate_s`, the same work on both paths, which no cache can save."""
    whole = time.perf_counter() - start
    return whole, whole - timings["generate_s"]


def speedups(video: list[tuple[float, float]], saved: list[tuple[float, float]]) -> dict:
    """Medians (and, as `best_*`, minima) of the whole first answer and of its first token, from the video and
    from the file. On a shared machine the minimum is the run least slowed by other jobs, on either path."""
    out = {}
    for stat, prefix in ((statistics.median, ""), (min, "best_")):
        for i, what in enumerate(("", "first_token_")):
            v, f = stat(t[i] for t in video), stat(t[i] for t in saved)
            out.update({f"{prefix}{what}from_video_s": round(v, 4), f"{prefix}{what}from_file_s": round(f, 4),
                        f"{prefix}{what}speedup": round(v / f, 1)})
    return out


def read_times(paths: dict[str, Path], repeat: int) -> list[dict]:
    rows = []
    for label, path in paths.items():
        seconds, _ = median_time(lambda: cachefile.read(str(path)), repeat)
        size = path.stat().st_size
        rows.append({"file": label, "bytes": size, "read_s": round(seconds, 4),
                     "mb_per_s": round(size / 2**20 / seconds, 1)})
    return rows


def sizes(paths: dict[str, Path]) -> list[dict]:
    full = paths["full"].stat().st_size
    rows = []
    for label, path in paths.items():
        header = cachefile.read_header(str(path))
        rows.append({"file": label, "bytes": path.stat().st_size, "kv_bytes": header["cache"]["kv_bytes"],
                     "kv_bytes_full": header["cache"]["kv_bytes_full"],
                     "ratio_to_full_file": round(path.stat().st_size / full, 4)})
    return rows


# --- the demo model on real files ---------------------------------------------------------------------------

def demo_clip(lm, clip: Path, question: str, folder: Path, repeat: int, new_tokens: int) -> dict:
    paths = {"full": folder / "full" / f"{clip.stem}.acckv"}
    paths.update({str(b): folder / str(b) / f"{clip.stem}.acckv" for b in BUDGETS})
    index_s = {}
    for label, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        full = label == "full"
        request = IndexRequest("full" if full else "acckv", budget=Budget(1.0 if full else float(label)))
        start = time.perf_counter()
        index_to_file(lm, str(clip), path, request)
        index_s[label] = round(time.perf_counter() - start, 3)
    video_t, file_t = [], []
    for _ in range(repeat):  # interleaved
        start = time.perf_counter()
        from_video = ask_clip(lm, str(clip), [question], "acckv", Budget(0.2), "context", max_new_tokens=new_tokens)
        video_t.append(run_times(start, from_video[0].timings))
        cachefile._IDENTITIES.clear()  # the fingerprint is part of every fresh `ask FILE`
        start = time.perf_counter()
        from_file = ask_file(lm, str(paths["0.2"]), [question], new_tokens)
        file_t.append(run_times(start, from_file[0].timings))
        assert from_file[0].answer == from_video[0].answer, (from_file[0].answer, from_video[0].answer)
    start = time.perf_counter()
    cachefile._IDENTITIES.clear()
    cachefile.model_identity(lm)
    fingerprint_s = time.perf_counter() - start
    return {"clip": clip.name, "tokens": from_video[0].tokens["total"], "answer": from_video[0].answer,
            "index_s": index_s, "sizes": sizes(paths), "reads": read_times(paths, repeat),
            "first_answer": {**speedups(video_t, file_t), "video_timings": from_video[0].timings,
                             "file_timings": from_file[0].timings, "fingerprint_s": round(fingerprint_s, 4)}}


def cold_commands(clip: Path, file: Path, question: str) -> dict:
    """The whole command in a fresh process (imports, model load, everything), once each."""
    out = {}
    for label, args in (("from_video_s", [str(clip), question, "-b", "0.2", "--protocol", "context"]),
                        ("from_file_s", [str(file), question])):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "acckv_cli", "ask", *args, "--json", "--max-new-tokens", "8"],
                              cwd=ROOT, capture_output=True, text=True)
        out[label] = round(time.perf_counter() - start, 2)
        assert done.returncode == 0, done.stderr
    return out


# --- the 3B-shaped thinker on a synthetic prompt ------------------------------------------------------------

def synthetic_header(lm, method: str, budget: Budget, run, layout, media_length: int) -> dict:
    summary = RetentionReport.from_run(run, layout).summary()
    config = get_method(method).config()
    return {"model": cachefile.model_identity(lm), "method": {"name": config.pop("method"), "label": method,
                                                              "params": config},
            "budget": {"value": budget.value, "text": str(budget)}, "protocol": "context",
            "prompt": {"length": media_length, "seconds_per_chunk": layout.seconds_per_chunk, "notices": []},
            "cache": {"kv_bytes": summary["kv_bytes_after"], "kv_bytes_full": summary["kv_bytes_before"]}}


def shaped_3b(layers: int, size: int, folder: Path, repeat: int, new_tokens: int) -> dict:
    thinker = build_thinker(QWEN25_OMNI_3B, layers, torch.float32)
    lm = LoadedModel(thinker, None, f"random {QWEN25_OMNI_3B.name}, {layers} layers", torch.device("cpu"),
                     torch.float32)
    prompt = SyntheticMediaPrompt.split(synthetic_prompt(size, QWEN25_OMNI_3B))
    embedded = {"input_ids": prompt.input_ids[:, :prompt.length]}
    paths, index_s = {}, {}

    answered: dict = {}

    def from_video(method: str, budget: Budget, save: Path | None):
        started = time.perf_counter()
        compressor = get_method(method)
        session = ClipSession.from_prompt(lm, prompt, embedded)
        media_cache = session.media_cache_for("context", compressor, budget)
        answer = session.answer("q", media_cache, "context", compressor, budget, new_tokens)
        answered[method, budget.value] = time.perf_counter() - started
        if save is not None:
            save.parent.mkdir(parents=True, exist_ok=True)
            header = synthetic_header(lm, method, budget, media_cache.run, prompt.layout, prompt.length)
            cachefile.write(save, export_state(session, media_cache), header)
        return answer

    for label in ("full", *map(str, BUDGETS)):
        paths[label] = folder / "3b" / label / "synthetic.acckv"
        start = time.perf_counter()
        first = from_video("full" if label == "full" else "acckv", Budget(1.0 if label == "full" else float(label)),
                           paths[label])
        index_s[label] = round(time.perf_counter() - start, 3)
        if label == "0.2":
            reference = first

    def from_file():
        cachefile._IDENTITIES.clear()
        cachefile.check_model(cachefile.read_header(str(paths["0.2"])), lm, str(paths["0.2"]))
        header, state = cachefile.read(str(paths["0.2"]))
        session, media_cache = restore_session(lm, prompt, header, state)
        return session.answer("q", media_cache, "context", max_new_tokens=new_tokens)

    # the indexing run of 0.2 (its file written after the answer) is one from-video run
    first = answered["acckv", 0.2]
    video_t, file_t = [(first, first - reference.timings["generate_s"])], []
    for i in range(repeat):
        if i < repeat - 1:
            start = time.perf_counter()
            video_answer = from_video("acckv", Budget(0.2), None)
            video_t.append(run_times(start, video_answer.timings))
        start = time.perf_counter()
        answer = from_file()
        file_t.append(run_times(start, answer.timings))
        assert answer.token_ids == reference.token_ids
    return {"model": lm.name, "tokens": int(prompt.input_ids.shape[1]), "index_s": index_s, "sizes": sizes(paths),
            "reads": read_times(paths, repeat),
            "first_answer": {**speedups(video_t, file_t), "video_timings": reference.timings,
                             "file_timings": answer.timings}}


# --- report ---------------------------------------------------------------------------------------------------

def markdown(result: dict) -> str:
    lines = []
    for part in result["parts"]:
        full = next(r for r in part["sizes"] if r["file"] == "full")["bytes"]
        lines += [f"### {part['title']}", "",
                  "| file | bytes | of the full file | KV kept | read (ms) | MB/s |", "|---|---:|---:|---:|---:|---:|"]
        for size, read in zip(part["sizes"], part["reads"]):
            lines.append(f"| `{size['file']}` | {size['bytes']:,} | {size['bytes'] / full:.3f} | "
                         f"{size['kv_bytes'] / size['kv_bytes_full']:.3f} | {1000 * read['read_s']:.1f} | "
                         f"{read['mb_per_s']:.0f} |")
        fa = part["first_answer"]
        lines += ["", f"First answer (AccKV 0.2, context, up to {result['new_tokens']} new tokens): from the video "
                      f"{fa['from_video_s']:.3f} s, from the file {fa['from_file_s']:.3f} s: **×{fa['speedup']:.1f}**. "
                      f"Its first token: {fa['first_token_from_video_s']:.3f} s → {fa['first_token_from_file_s']:.3f} "
                      f"s (×{fa['first_token_speedup']:.1f}). Best of {result['repeat']} runs: ×{fa['best_speedup']:.1f}, "
                      f"first token ×{fa['best_first_token_speedup']:.1f}.", ""]
        if "cold" in part:
            lines += [f"Whole `acckv ask` command, fresh process: from the video {part['cold']['from_video_s']:.1f} s, "
                      f"from the file {part['cold']['from_file_s']:.1f} s.", ""]
    load = result["machine"]["load_average_1min"]
    lines += [f"{result['machine']['cpus']} CPUs, {result['machine']['torch_threads']} torch threads; load average "
              f"{load['start']} at the start, {load['end']} at the end.", "",
              "| target | measured | |", "|---|---|---|"]
    for target in result["targets"]:
        lines.append(f"| {target['target']} | {target['measured']} | {'pass' if target['pass'] else 'MISS'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layers", type=int, default=2, help="decoder layers of the 3B-shaped thinker")
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "index-once"))
    parser.add_argument("--skip-3b", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    load_before = os.getloadavg()  # a busy machine slows both paths: say how busy it was
    parts = []
    with tempfile.TemporaryDirectory(prefix="acckv-index-once-") as tmp:
        folder = Path(tmp)
        from acckv_cli.synth.long import make_long_example
        from acckv_cli.synth.render import write_mp4

        long_example = make_long_example("test", 0, 135, 135)
        long_clip = write_mp4(long_example.spec, folder / "long-test-0-135s.mp4")
        lm = load_model()
        for clip, question in ((ROOT / "samples" / "drum_then_violin.mp4", "What instrument plays first?"),
                               (long_clip, long_example.questions[0].question)):
            print(f"demo model: {clip.name}", file=sys.stderr)
            part = demo_clip(lm, clip, question, folder / clip.stem, args.repeat, args.new_tokens)
            part["title"] = f"built-in demo model, {clip.name} ({part['tokens']:,} tokens)"
            parts.append(part)
        parts[-1]["cold"] = cold_commands(long_clip, folder / long_clip.stem / "0.2" / f"{long_clip.stem}.acckv",
                                          long_example.questions[0].question)
        if not args.skip_3b:
            print("3B-shaped thinker", file=sys.stderr)
            part = shaped_3b(args.layers, 8192, folder, args.repeat, args.new_tokens)
            part["title"] = f"{part['model']}, synthetic prompt ({part['tokens']:,} tokens)"
            parts.append(part)
    targets = []
    for part in parts:
        if part["tokens"] < 8000:
            continue
        ratio = next(r for r in part["sizes"] if r["file"] == "0.2")["ratio_to_full_file"]
        speedup = part["first_answer"]["speedup"]
        targets += [{"target": f"{part['title']}: 20 % file ≤ {TARGET_RATIO} × full file", "measured": ratio,
                     "pass": ratio <= TARGET_RATIO},
                    {"target": f"{part['title']}: first answer from the 20 % file ≥ {TARGET_SPEEDUP:g}× faster",
                     "measured": f"×{speedup}", "pass": speedup >= TARGET_SPEEDUP}]
    machine = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "load_average_1min": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)}}
    result = {"parts": parts, "targets": targets, "machine": machine, "new_tokens": args.new_tokens,
              "repeat": args.repeat,
              "command": "python benchmarks/index_once.py " + " ".join(sys.argv[1:])}
    Path(args.out + ".json").write_text(json.dumps(result, indent=1))
    Path(args.out + ".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
