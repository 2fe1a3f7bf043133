"""`acckv bench`: what KV compression costs and saves on a Qwen2.5-Omni-3B-shaped thinker (issue #6).

One process, side by side, for prompts of N tokens (default 2k, 8k, 16k):

* **prefill** without any method (hooks not installed) and the extra time each method's per-layer work
  (scoring, selection, merging, eviction, statistics) adds to it, in %;
* **decode** time per token with the full cache and with caches compressed to 20 % and 10 %, plus a
  split of one decode step into attention core / KV append / attention projections / MLP / LM head /
  rest, and its projection to the real 36 layers;
* **KV bytes** kept by every method, checked against the budget (within 1 %);
* **peak memory** (process RSS high-water mark above the RSS before each phase).

The model is a real `Qwen2_5OmniThinkerForConditionalGeneration` whose text decoder has the shape of
Qwen2.5-Omni-3B's thinker (hidden 2048, 16 query / 2 KV heads of 128, MLP 11008, vocabulary 151,936,
mRoPE sections [16, 24, 24]; see `shapes.QWEN25_OMNI_3B`) with fewer layers, random weights and tiny audio and
vision towers that never run. Prompts are ordinary token ids with explicit 4-row position ids and a
synthetic `TokenLayout` with the modality mix of a 640×360 clip at 2 fps (≈ 92 % video, 8 % audio, a few
text tokens), so the framework's hooks, `Compression` and the thinker's forward are the real ones.

How each number is measured (also printed and written to the JSON):

* `prefill_none_s`: one forward of the whole prompt, no hooks, logits for the last position only.
* `acckv_e2e_s` / `acckv_hook_s`: the same forward inside the real `Compression` context for `acckv`
  (hooks installed); `hook_s` is the time spent in the per-layer compression step. The bench also saves
  each layer's hook inputs (post-norm hidden states, cos/sin, full K/V) to a temporary folder on disk so
  the other methods can be measured without another prefill; that I/O is timed and subtracted.
* every method's `hook_s`: the framework's own per-layer step (`Compression._compress`, exactly what the
  hook runs) replayed on those saved inputs, per layer, timed (median of `--repeat` runs when a run is
  shorter than 1 s); overhead % = hook_s / prefill_none_s.
* decode: `--decode-steps` greedy thinker-forward steps per setting after warm-up, settings interleaved
  step by step (so a background load hits all settings alike), median ms/token. Settings: `full` (the
  full cache, transformers' sdpa, no hooks), `full·fw` (a copy of it through the framework's attention
  function `acckv_sdpa`, which compressed runs use), and AccKV's caches at each budget (without
  calibration so they hold exactly the budget). A second pass with timing hooks on the attention
  function, the cache update, `self_attn`, `mlp` and `lm_head` splits a step.
* memory: Linux `VmHWM` after resetting it through `/proc/self/clear_refs` (falls back to sampling
  `VmRSS` every 2 ms); reported as MB above the RSS just before the phase (model weights excluded).

Run: `acckv bench` (`acckv bench --help` for options).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch

from acckv_cli.bench.config import BenchConfig
from acckv_cli.bench.decode import FULL_FW, DecodeState, profile_summary, time_decode
from acckv_cli.bench.machine import loadavg, machine_info
from acckv_cli.bench.memory import PeakRSS
from acckv_cli.bench.plot import plot
from acckv_cli.bench.prefill import NOCAL, capture_prefill, kv_bytes, plain_prefill, replay
from acckv_cli.bench.prompts import synthetic_prompt
from acckv_cli.bench.render import markdown, render
from acckv_cli.bench.shapes import build_thinker
from acckv_cli.bench.targets import evaluate_targets
from acckv_cli.methods import METHODS, Budget
from acckv_cli.methods import attention as attn


def _say(progress, text: str) -> None:
    if progress is not None:
        progress(text)


def bench_size(thinker, cfg: BenchConfig, n: int, progress=None) -> dict:
    shape, n_layers = cfg.shape, cfg.layers
    prompt = synthetic_prompt(n, shape, cfg.seed)
    layout = prompt.layout
    counts = layout.counts()
    bytes_per_entry = 2 * shape.kv_heads * shape.head_dim * thinker.dtype.itemsize  # K + V, one layer
    row: dict = {"n": n, "counts": {"video": counts["video"], "audio": counts["audio"],
                                    "text": n - counts["video"] - counts["audio"]},
                 "tokens_per_frame_pair": prompt.tokens_per_pair, "bytes_per_entry_per_layer": bytes_per_entry}

    _say(progress, f"N={n}: prefill without hooks")
    with PeakRSS() as mem_none:
        start = time.perf_counter()
        logits, full_cache = plain_prefill(thinker, prompt)
        prefill_none = time.perf_counter() - start
    full_bytes = kv_bytes(full_cache)

    _say(progress, f"N={n}: prefill with acckv hooks")
    e2e, inputs, acckv_cache = capture_prefill(thinker, prompt, cfg.budgets[0])
    acckv_cache_bytes = kv_bytes(acckv_cache)
    del acckv_cache
    row["prefill"] = {
        "none_s": prefill_none, "acckv_e2e_s": e2e["e2e_s"], "acckv_hook_s": e2e["hook_s"],
        "acckv_hook_layer_s": e2e["hook_layer_s"],
        "acckv_e2e_overhead_pct": 100 * (e2e["e2e_s"] - prefill_none) / prefill_none,
        "acckv_hook_overhead_pct": 100 * e2e["hook_s"] / prefill_none,
        "bench_capture_io_s": e2e["capture_io_s"], "acckv_kv_bytes": acckv_cache_bytes}
    row["memory"] = {"prefill_none_peak_mb": mem_none.peak_mb, "prefill_acckv_peak_mb": e2e["peak_mb"],
                     "rss_before_mb": mem_none.before_mb, "method": PeakRSS.method}

    methods, caches = [], {}
    names = list(cfg.methods) + ([NOCAL] if "acckv" in cfg.methods else [])
    for budget in cfg.budgets:
        n_media = int(layout.media_mask.sum())
        target = n_layers * (n - n_media + Budget(budget).media_tokens(n_media)) * bytes_per_entry
        for name in names:
            _say(progress, f"N={n}: {name} @ {budget:g}")
            res = replay(thinker, layout, name, budget, inputs, cfg.repeat)
            mismatch = any(s.get("budget_mismatch") for s in res["stats"])
            calibrated = sum(int(s.get("calibration", {}).get("evicted", 0)) for s in res["stats"])
            ratio = res["kv_bytes"] / target
            # AccKV holds exactly the budget unless calibration (C-C step 2, off by default) evicted below it
            below = name == "acckv" and calibrated > 0
            exact = name != "full" and not mismatch and not below
            if below:
                check = ratio <= 1.01
            elif name == "full":
                check = res["kv_bytes"] == full_bytes
            else:
                check = abs(ratio - 1) <= 0.01 if exact else None
            methods.append({
                "name": name, "budget": budget, "hook_s": res["hook_s"], "layer_s": res["layer_s"], "runs": res["runs"],
                "overhead_pct": 100 * res["hook_s"] / prefill_none, "peak_mb": res["peak_mb"],
                "kv_bytes": res["kv_bytes"], "kv_bytes_budget": target, "kv_ratio": ratio,
                "budget_check": check, "budget_rule": ("≤ budget (calibration evicts below it)" if below
                                                       else "= full cache" if name == "full"
                                                       else "n/a: budget cannot be matched" if mismatch
                                                       else "= budget ± 1 %"),
                "entries": res["entries"], "layer_budgets": res["layer_budgets"],
                "calibration_evicted": calibrated})
            if name == NOCAL:
                caches[budget] = res["stubs"]
            del res
    row["methods"] = methods
    del inputs

    _say(progress, f"N={n}: decode")
    first = logits[:, -1:].argmax(-1)
    from transformers import DynamicCache

    def cache_of(layers) -> DynamicCache:
        cache = DynamicCache()
        for idx, (keys, values) in enumerate(layers):
            cache.update(keys, values, idx)
        return cache

    # "full": the full cache through transformers' sdpa, no hooks (what a run without compression does);
    # "full·fw": the same cache (a copy) through the framework's attention function `acckv_sdpa`, which
    # every compressed run uses, so the compressed settings can be compared with it kernel for kernel.
    states = [DecodeState("full", full_cache, first.clone(), prompt.next_position.clone(), "sdpa"),
              DecodeState(FULL_FW, cache_of([(l.keys.clone(), l.values.clone()) for l in full_cache.layers]),
                          first.clone(), prompt.next_position.clone(), attn.ATTENTION_NAME)]
    for budget, stubs in caches.items():
        states.append(DecodeState(f"{budget:.0%}", cache_of([(st.keys, st.values) for st in stubs]), first.clone(),
                                  prompt.next_position.clone(), attn.ATTENTION_NAME))
    entries = {s.name: s.cache.layers[0].keys.shape[2] for s in states}
    kv = {s.name: kv_bytes(s.cache) for s in states}
    time_decode(thinker, states, cfg.decode_steps, cfg.warmup_steps)
    decode = []
    for s in states:
        decode.append({"setting": s.name, "attention": s.attn_impl, "entries_per_layer": int(entries[s.name]),
                       "kv_bytes": kv[s.name], "ms_per_token": statistics.median(s.times) * 1e3,
                       "ms_per_token_mean": statistics.fmean(s.times) * 1e3, "steps": len(s.times),
                       "profile": profile_summary(s.profile, n_layers, shape.full_layers)})
    full, fw = decode[0], decode[1]
    for d in decode:
        d["ratio_to_full"] = d["ms_per_token"] / full["ms_per_token"]
        d["ratio_to_full_fw"] = d["ms_per_token"] / fw["ms_per_token"]
        d["projected_ratio_to_full_fw"] = d["profile"]["projected_total_ms"] / fw["profile"]["projected_total_ms"]
    row["decode"] = decode
    return row


def run_bench(cfg: BenchConfig, progress=None) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    transformers.utils.logging.set_verbosity_error()
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.dtype]
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(sorted(METHODS))}")
    started = time.perf_counter()
    _say(progress, "building the model")
    thinker = build_thinker(cfg.shape, cfg.layers, dtype, cfg.seed)
    build_s = time.perf_counter() - started
    shape = cfg.shape
    params = sum(p.numel() for p in thinker.model.language_model.parameters()) + thinker.lm_head.weight.numel()
    layer_bytes = sum(p.numel() * p.element_size() for p in thinker.get_decoder().layers[0].parameters())
    result = {
        "machine": machine_info(),
        "config": {**asdict(cfg), "sizes": list(cfg.sizes), "methods": list(cfg.methods), "budgets": list(cfg.budgets)},
        "model": {**asdict(shape), "head_dim": shape.head_dim, "layers": cfg.layers, "dtype": cfg.dtype,
                  "text_params": params, "build_s": build_s,
                  "layer_weight_bytes": layer_bytes,
                  "source": "Qwen/Qwen2.5-Omni-3B thinker text_config (config.json): hidden 2048, 36 layers, "
                            "16 heads, 2 KV heads, head_dim 128, intermediate 11008, vocab 151936, rope_theta 1e6; "
                            "mrope_section [16, 24, 24] as in transformers' Qwen2.5-Omni configs"},
        "method_notes": {
            "prefill": "prefill_none: one thinker forward, no hooks; overhead % = time in the compression step / "
                       "prefill_none; acckv is also run with the real hooks installed (acckv_e2e_s, acckv_hook_s); "
                       "the other methods replay the framework's per-layer step on that run's saved layer inputs",
            "decode": "median of --decode-steps greedy steps per setting after warm-up, settings interleaved; "
                      "20 %/10 % caches are AccKV's (merged) without calibration, holding exactly the budget; "
                      "split from a second pass with timing hooks on self_attn, mlp, lm_head and the attention "
                      "function (attention core = sdpa over the cache)",
            "memory": f"{PeakRSS.method if PeakRSS.method != 'unknown' else 'VmHWM / VmRSS'}; MB above the RSS "
                      "before the phase (weights and earlier caches excluded)"},
        "sizes": []}
    _say(progress, "warm-up (small prompt: prefill, every method once, decode)")
    warm = synthetic_prompt(max(min(cfg.sizes) // 4, 256), shape, cfg.seed + 1)
    _, cache = plain_prefill(thinker, warm)
    _, inputs, _ = capture_prefill(thinker, warm, cfg.budgets[0])
    for name in [*cfg.methods, NOCAL]:
        with contextlib.suppress(ValueError):  # a budget below the warm-up prompt's text is fine to skip
            replay(thinker, warm.layout, name, cfg.budgets[0], inputs)
    time_decode(thinker, [DecodeState("warm", cache, warm.input_ids[:, -1:], warm.next_position, "sdpa")], 1, 1)
    del cache, inputs
    for n in cfg.sizes:
        result["sizes"].append(bench_size(thinker, cfg, n, progress))
    result["memory_method"] = PeakRSS.method
    result["method_notes"]["memory"] = (f"{PeakRSS.method}; MB above the RSS before the phase "
                                        "(weights and earlier caches excluded)")
    result["machine"]["load_avg_end"] = loadavg()
    result["total_s"] = time.perf_counter() - started
    result["targets"] = evaluate_targets(result)
    return result


def _json_ready(result: dict) -> dict:
    return json.loads(json.dumps(result, default=str))


def main_with(cfg: BenchConfig, console=None, progress_console=None) -> dict:
    """Run, print the tables, write JSON/PNG as configured; return the result."""
    from rich.console import Console

    console = console or Console()
    if not console.is_terminal and console.width < 160:
        console = Console(width=160, file=console.file)
    progress_console = progress_console or Console(stderr=True)
    result = run_bench(cfg, lambda text: progress_console.print(f"[dim]… {text}[/dim]", highlight=False))
    render(result, console)
    if cfg.out_json:
        Path(cfg.out_json).write_text(json.dumps(_json_ready(result), indent=1) + "\n")
    if cfg.plot:
        plot(result, cfg.plot)
    if cfg.out_md:
        Path(cfg.out_md).write_text(markdown(result))
    return result
