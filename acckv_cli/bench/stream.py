"""`acckv bench --stream`: memory and time of streaming vs one-shot prefill against clip length.

For clips of 1, 2, 5 and 10 minutes (`--minutes`) of synthetic audio-video tokens, on the random 3B-shaped
thinker of `acckv bench` (hidden 2048, 16/2 heads, MLP 11008, vocabulary 151,936; `--layers` of its 36):

* **one-shot** — the `context` protocol: system + media prefilled in one forward (the method compresses
  each layer after it), then one question;
* **stream** — `acckv_cli.answer.stream.stream_prefill`: steps of `--chunk-seconds` (default, as for `ask`:
  the fewest 2-s chunks holding 512 tokens — 16 s at this clip's 33 tokens/s), every layer compressed after
  every step, then the same question.

Both keep the same fixed number of media entries (`--budget`, a count) with the same method. Each point
runs in a fresh process (`--worker`), so one run's freed memory never hides the next one's peak; the two
modes of one length run back to back (one-shot first), so a change of background load between lengths hits
both alike, but not one within a pair: run it on an idle machine.

Measured per point: peak RSS above the process's RSS after building the model (Linux VmHWM; the synthetic
prompt is built inside the measured block, so its per-token bookkeeping counts), the KV bytes the cache
held at its fullest moment, the KV bytes kept at the end, and the wall time of the media prefill and of
the question; beside the prefill's wall time, its CPU time (`time.process_time`: with one torch thread, the
work itself, which a busy machine's waiting does not inflate — `stream_over_one_shot_cpu`). The clip is Qwen2.5-Omni's layout at `--fps` (default 2) with `--pair-tokens` tokens per
frame pair (default 8, a 112×56 frame) and 25 audio tokens per second: 33 tokens per second. Encoders do
not run (token embeddings stand in for their outputs), so this measures the prefill and the cache, not
decoding or the vision/audio towers (the streamed pipeline runs those over blocks, `answer/frontend.py`).

Targets (issue #12): the streaming peak within ±10 % of its 1-minute value up to 10 minutes while
one-shot grows; streaming time per minute ≤ 1.2× one-shot's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from acckv_cli.bench.machine import machine_info
from acckv_cli.bench.memory import PeakRSS
from acckv_cli.bench.prompts import SyntheticMediaPrompt, synthetic_clip
from acckv_cli.bench.shapes import ModelShape, build_thinker, shape_for

DEFAULT_MINUTES = (1.0, 2.0, 5.0, 10.0)
FLAT_TOLERANCE = 0.10   # streaming peak within ±10 % of the shortest clip's
TIME_RATIO = 1.2        # streaming time per minute ≤ 1.2× one-shot's


@dataclass
class StreamBenchConfig:
    minutes: tuple[float, ...] = DEFAULT_MINUTES
    layers: int = 2
    dtype: str = "float32"
    method: str = "acckv"
    budget: int = 1024
    fps: float = 2.0
    pair_tokens: int = 8
    chunk_seconds: float | None = None   # None: the stream protocol's default step (`auto_chunk_seconds`)
    new_tokens: int = 4
    threads: int = 1
    tiny: bool = False
    isolate: bool = True     # one process per point (False: in this process, for tests)

    @property
    def shape(self) -> ModelShape:
        return shape_for(self.tiny)


def measure(cfg: StreamBenchConfig, mode: str, minutes: float, thinker=None) -> dict:
    """Prefill a clip of `minutes` (one-shot or streamed), answer one question; memory, KV bytes, time."""
    from transformers import DynamicCache

    from acckv_cli.methods import get_method
    from acckv_cli.methods.budget import Budget
    from acckv_cli.model.load import LoadedModel
    from acckv_cli.answer.session import ClipSession, MediaCache, snapshot
    from acckv_cli.answer.stream import auto_chunk_seconds, stream_prefill

    shape = cfg.shape
    thinker = thinker if thinker is not None else build_thinker(shape, cfg.layers, getattr(torch, cfg.dtype))
    lm = LoadedModel(thinker, None, "bench", torch.device("cpu"), thinker.dtype)
    method, budget = get_method(cfg.method), Budget(cfg.budget)
    with PeakRSS() as mem:
        start, cpu_start = time.perf_counter(), time.process_time()
        prompt = synthetic_clip(minutes * 60, shape.vocab, cfg.fps, cfg.pair_tokens)
        media = SyntheticMediaPrompt.split(prompt)
        ids = prompt.input_ids
        if mode == "one-shot":
            session = ClipSession.from_prompt(lm, media, {"input_ids": ids[:, :media.length]})
            media_cache = session.media_cache(method, budget)
            protocol, steps, kv_peak = "context", 1, _one_shot_peak(media_cache.run.layers)
            step_s = None
        else:
            session = ClipSession.from_prompt(lm, media, {})
            cache = DynamicCache(config=thinker.config.get_text_config(decoder=True))
            embed = thinker.get_decoder().embed_tokens
            result = stream_prefill(lm, media, cache, method, budget,
                                    lambda a, b: {"inputs_embeds": embed(ids[:, a:b])}, cfg.chunk_seconds)
            media_cache = MediaCache(cache, snapshot(cache), result.run, None, result.prefill_s)
            protocol, steps, kv_peak = "stream", len(result.steps), result.run.peak_kv_bytes
            step_s = cfg.chunk_seconds if cfg.chunk_seconds is not None else auto_chunk_seconds(media.layout)
        prefill_s, prefill_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
        answer = session.answer("q", media_cache, protocol, method, budget, cfg.new_tokens)
    records = media_cache.run.layers
    return {"mode": mode, "minutes": minutes, "tokens": int(ids.shape[1]), "prefix_tokens": media.length,
            "media_tokens": int(media.layout.media_mask.sum()), "steps": steps, "step_s": step_s,
            "prefill_s": round(prefill_s, 3), "prefill_cpu_s": round(prefill_cpu_s, 3), "answer_s": round(answer.timings["question_prefill_s"]
                                                                 + answer.timings["generate_s"], 3),
            "peak_rss_mb": round(mem.peak_mb, 1), "rss_before_mb": round(mem.before_mb, 1),
            "kv_full_mb": round(sum(r["kv_bytes_before"] for r in records) / 2**20, 3),
            "kv_peak_mb": round(kv_peak / 2**20, 3),
            "kv_final_mb": round(sum(r["kv_bytes_after"] for r in records) / 2**20, 3),
            "memory_method": PeakRSS.method}


def _one_shot_peak(records: list[dict]) -> int:
    """KV bytes at the fullest moment of a one-shot prefill: layer l full, earlier layers compressed."""
    ordered = sorted(records, key=lambda r: r["layer"])
    done = 0
    peak = 0
    for r in ordered:
        peak = max(peak, done + r["kv_bytes_before"])
        done += r["kv_bytes_after"]
    return peak


def run(cfg: StreamBenchConfig, progress=None) -> dict:
    """Every length, one-shot and stream, side by side; the summary with the targets checked."""
    rows: list[dict] = []
    thinker = None
    if not cfg.isolate:
        thinker = build_thinker(cfg.shape, cfg.layers, getattr(torch, cfg.dtype))
    for minutes in cfg.minutes:
        for mode in ("one-shot", "stream"):
            if progress:
                progress(f"{mode}: {minutes:g} min")
            rows.append(_worker(cfg, mode, minutes) if cfg.isolate else measure(cfg, mode, minutes, thinker))
    return {"config": asdict(cfg), "shape": cfg.shape.name, "rows": rows,
            "targets": targets(rows), "machine": machine_info()}


def _worker(cfg: StreamBenchConfig, mode: str, minutes: float) -> dict:
    args = json.dumps({"config": asdict(cfg), "mode": mode, "minutes": minutes})
    proc = subprocess.run([sys.executable, "-m", "acckv_cli.bench.stream", "--worker", args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench worker ({mode}, {minutes:g} min) failed: "
                           f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def targets(rows: list[dict]) -> dict:
    """Flatness of the streaming peak and the time ratio, as measured."""
    stream = [r for r in rows if r["mode"] == "stream"]
    one = {r["minutes"]: r for r in rows if r["mode"] == "one-shot"}
    base = max(stream[0]["peak_rss_mb"], 1.0) if stream else 1.0  # (at least 1 MB: a near-zero peak is flat)
    spread = [round((r["peak_rss_mb"] - stream[0]["peak_rss_mb"]) / base, 3) for r in stream]
    ratios = [round(r["prefill_s"] / one[r["minutes"]]["prefill_s"], 3) for r in stream if r["minutes"] in one]
    cpu = [round(r["prefill_cpu_s"] / one[r["minutes"]]["prefill_cpu_s"], 3) for r in stream
           if r["minutes"] in one and "prefill_cpu_s" in r]
    flat = all(abs(s) <= FLAT_TOLERANCE for s in spread)
    return {"stream_peak_vs_shortest": spread, "stream_peak_flat": flat,
            "stream_over_one_shot_time": ratios, "time_ok": all(r <= TIME_RATIO for r in ratios),
            "stream_over_one_shot_cpu": cpu,
            "one_shot_peak_grows": _grows([one[m]["peak_rss_mb"] for m in sorted(one)])}


def _grows(values: list[float]) -> bool:
    return len(values) > 1 and all(b > a for a, b in zip(values, values[1:]))


HEADER = ("minutes", "tokens", "stream steps", "peak RSS one-shot (MB)", "peak RSS stream (MB)", "KV peak one-shot (MB)",
          "KV peak stream (MB)", "KV kept (MB)", "s/min one-shot", "s/min stream", "stream / one-shot time")


def table_rows(result: dict) -> list[list[str]]:
    by = {(r["mode"], r["minutes"]): r for r in result["rows"]}
    out = []
    for minutes in result["config"]["minutes"]:
        one, st = by[("one-shot", minutes)], by[("stream", minutes)]
        step = f"{st['steps']} × {st['step_s']:g} s" if st.get("step_s") else str(st["steps"])
        out.append([f"{minutes:g}", f"{st['prefix_tokens']:,}", step, f"{one['peak_rss_mb']:.0f}", f"{st['peak_rss_mb']:.0f}",
                    f"{one['kv_peak_mb']:.1f}", f"{st['kv_peak_mb']:.1f}", f"{st['kv_final_mb']:.1f}",
                    f"{one['prefill_s'] / minutes:.1f}", f"{st['prefill_s'] / minutes:.1f}",
                    f"×{st['prefill_s'] / one['prefill_s']:.2f}"])
    return out


def markdown(result: dict) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---:|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    t = result["targets"]
    lines.append("")
    lines.append(f"Streaming peak vs the shortest clip: {', '.join(f'{100 * s:+.1f} %' for s in t['stream_peak_vs_shortest'])}"
                 f" (target ±{100 * FLAT_TOLERANCE:.0f} %: {'met' if t['stream_peak_flat'] else 'NOT met'}); "
                 f"stream / one-shot prefill time: {', '.join(f'×{r:.2f}' for r in t['stream_over_one_shot_time'])}"
                 f" (target ≤ ×{TIME_RATIO}: {'met' if t['time_ok'] else 'NOT met'})"
                 + (f"; in CPU time: {', '.join(f'×{r:.2f}' for r in t['stream_over_one_shot_cpu'])}."
                    if t.get("stream_over_one_shot_cpu") else "."))
    return "\n".join(lines) + "\n"


def render(result: dict, console) -> None:
    from rich.table import Table

    cfg = result["config"]
    table = Table(title=f"streaming vs one-shot prefill — {result['shape']}, {cfg['layers']} layers, {cfg['method']} "
                        f"keeping {cfg['budget']} media tokens, {cfg['fps']:g} fps × {cfg['pair_tokens']} tokens/pair "
                        f"+ 25 audio tokens/s", title_justify="left")
    for col in HEADER:
        table.add_column(col, justify="right")
    for row in table_rows(result):
        table.add_row(*row)
    console.print(table)
    console.print(markdown(result).splitlines()[-1])


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for mode, style in (("one-shot", "o-"), ("stream", "s-")):
        rows = [r for r in result["rows"] if r["mode"] == mode]
        x = [r["minutes"] for r in rows]
        axes[0].plot(x, [r["peak_rss_mb"] for r in rows], style, label=mode)
        axes[1].plot(x, [r["kv_peak_mb"] for r in rows], style, label=mode)
        axes[2].plot(x, [r["prefill_s"] / r["minutes"] for r in rows], style, label=mode)
    for ax, title in zip(axes, ("peak RSS above the model (MB)", "KV cache at its fullest (MB)",
                                "prefill seconds per minute of clip")):
        ax.set_xlabel("clip length (minutes)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: dict, out_json: str | None, out_md: str | None, plot_path: str | None) -> None:
    if out_json:
        Path(out_json).write_text(json.dumps(result, indent=1))
    if out_md:
        Path(out_md).write_text(markdown(result))
    if plot_path:
        plot(result, plot_path)


def command(minutes: str, layers: int, dtype: str, methods: str | None, media_budget: int, chunk_seconds: float | None,
            threads: int | None, out_json: str | None, plot_path: str | None, out_md: str | None, tiny: bool,
            console, progress_console) -> dict:
    """`acckv bench --stream`: parse the options (one-line ValueErrors for bad ones), run, print, write."""
    from acckv_cli.errors import UsageError

    try:
        lengths = tuple(float(m) for m in minutes.split(",") if m.strip())
    except ValueError:
        raise UsageError(f"--minutes takes clip lengths like 1,2,5,10, not {minutes!r}") from None
    method = (methods or "acckv").split(",")[0].strip()
    if not lengths or min(lengths) <= 0 or dtype not in ("float32", "bfloat16") or media_budget < 0 or layers < 1:
        raise UsageError("--stream needs positive --minutes, --layers ≥ 1, --media-budget ≥ 0 and --dtype "
                         "float32 or bfloat16")
    if chunk_seconds is not None and not (chunk_seconds >= 2 and chunk_seconds % 2 == 0):
        raise UsageError("--chunk-seconds must be a multiple of Qwen's 2-s chunk (2, 4, 6, …)")
    from acckv_cli.methods import METHODS
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}")
    cfg = StreamBenchConfig(minutes=lengths, layers=layers, dtype=dtype, method=method, budget=media_budget,
                            chunk_seconds=chunk_seconds, threads=threads or 1, tiny=tiny, isolate=not tiny)
    result = run(cfg, progress=lambda text: progress_console.print(text, highlight=False))
    render(result, console)
    write_outputs(result, out_json, out_md, plot_path)
    return result


def main(argv: list[str] | None = None) -> None:
    """`python -m acckv_cli.bench.stream --worker JSON`: measure one point in this fresh process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", required=True, help="JSON: {config, mode, minutes}")
    args = parser.parse_args(argv)
    spec = json.loads(args.worker)
    cfg = StreamBenchConfig(**{**spec["config"], "minutes": tuple(spec["config"]["minutes"])})
    torch.set_num_threads(cfg.threads)
    print(json.dumps(measure(cfg, spec["mode"], float(spec["minutes"]))))



if __name__ == "__main__":
    main()
