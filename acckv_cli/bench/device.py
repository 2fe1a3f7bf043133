"""`acckv bench --device cuda`: every method's cost on a GPU (or any device) at a real checkpoint's full depth.

The CPU bench (`bench/costs.py`) runs 2 layers of a 3B-shaped decoder and replays each method's step from
disk; on a GPU the whole model fits, so this one runs a random-weight thinker with the *full* decoder of
`--shape` (default Qwen2.5-Omni-7B: 28 layers, hidden 3584, 28 query / 4 KV heads of 128, MLP 18944,
vocabulary 152,064) in `--dtype` on `--device`, on synthetic prompts of `--sizes` tokens (default 8k and
32k, laid out like a 640×360 clip at 2 fps). Per size, side by side in one process:

* **prefill**: one forward of the whole prompt without hooks (`none`), then one per method and budget with
  the real hooks (`Compression`: each layer compressed right after its attention, the `prefill` protocol);
  wall time with the device synchronised; overhead % = (with − none) / none. FastV prunes during the forward.
* **KV bytes** each method keeps, and **peak device memory** of each forward above what was allocated before
  it (`torch.cuda.max_memory_allocated`; on a CPU, the process's peak RSS).
* **decode** ms/token, median of `--decode-steps` greedy steps after 2 warm-up steps, settings interleaved
  step by step: the full cache (transformers' sdpa), the full cache through the framework's attention
  function, and AccKV's caches at each budget (merged, no calibration: exactly the budget).
* **masked-full equivalence**: for the eviction methods, decode logits from the compressed cache against
  the full cache with exactly the evicted entries masked (same tokens fed to both); the largest difference
  relative to the largest logit must stay within `EQUIVALENCE_TOLERANCE` for the dtype. Both sides compute
  the same function; they differ only in the order the kernels sum in, which bfloat16 (8-bit mantissa,
  relative step 2^-8 ≈ 3.9e-3) amplifies through the layers: 3e-2 of the logit range allows that and still
  catches a wrong mask or position (those move logits by O(1)). The same comparison between two kernels on
  the *full* cache (sdpa without a mask against the masked kernel with nothing masked) is reported as the
  noise floor; a method passes within max(tolerance, 4 × noise floor), so a GPU whose kernels round more
  than expected shows it as a larger floor, not as a false failure.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from acckv_cli.bench.config import DEFAULT_METHODS
from acckv_cli.bench.machine import machine_info
from acckv_cli.bench.memory import PeakRSS
from acckv_cli.bench.prompts import synthetic_prompt
from acckv_cli.bench.shapes import SHAPES, TINY, build_thinker

DEFAULT_DEVICE_SIZES = (8192, 32768)
EVICTION_METHODS = ("snapkv", "h2o", "streamingllm", "random", "acckv-evict")
EQUIVALENCE_TOLERANCE = {"bfloat16": 3e-2, "float16": 1e-2, "float32": 1e-4}
MASKS: dict[int, torch.Tensor] = {}   # layer → [KV or 1, L] kept prompt entries (masked reference)
MASKED_ATTENTION = "acckv_bench_masked"


@dataclass
class DeviceBenchConfig:
    sizes: tuple[int, ...] = DEFAULT_DEVICE_SIZES
    shape: str = "7b"                 # a key of shapes.SHAPES, or "tiny"
    layers: int | None = None         # None: the shape's full depth
    dtype: str = "bfloat16"
    device: str = "cuda"
    methods: tuple[str, ...] = (*DEFAULT_METHODS, "uniform", "divprune")
    budgets: tuple[float, ...] = (0.2, 0.1)
    decode_steps: int = 16
    equivalence_steps: int = 4
    seed: int = 0
    out_json: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def model_shape(self):
        return TINY if self.shape == "tiny" else SHAPES[self.shape]

    @property
    def depth(self) -> int:
        return self.layers or self.model_shape.full_layers


def _method(name: str):
    from acckv_cli.methods import get_method

    if name == "acckv-evict":  # AccKV's selection alone: eviction, comparable with a masked full cache
        return get_method("acckv", merge_target="none")
    return get_method(name)


class Clock:
    """Wall time and peak memory of one phase on `device`, the device synchronised at both ends."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> "Clock":
        self._sync()
        if self.device.type == "cuda":
            self.before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._rss = PeakRSS().__enter__()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self.start
        if self.device.type == "cuda":
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self.before) / 2**20
        else:
            self._rss.__exit__(*exc)
            self.peak_mb = self._rss.peak_mb

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _kv_bytes(cache) -> int:
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)


def _prefill(thinker, prompt, device, method=None, budget: float | None = None):
    """One forward of the whole prompt (last logits only), with `method`'s hooks if given; (logits, cache, run, clock)."""
    from acckv_cli.methods import Budget
    from acckv_cli.model.load import last_position_logits

    run = method(thinker, prompt.layout, Budget(budget), collect_stats=False) if method is not None else None
    with Clock(device) as clock, torch.inference_mode(), last_position_logits(thinker):
        with run if run is not None else contextlib.nullcontext():
            out = thinker(input_ids=prompt.input_ids, position_ids=prompt.position_ids, use_cache=True)
    return out.logits[0, -1].float(), out.cache, run, clock


def _decode(thinker, cache, tokens: list[int], start_position: torch.Tensor, attention: str | None) -> list:
    """Feed `tokens` one by one from `start_position`; the fp32 logits of each step ([V] each)."""
    from acckv_cli.methods.attention import per_layer_attention
    from acckv_cli.model.generation import forward_segment

    logits = []
    config = thinker.get_decoder().layers[0].self_attn.config
    with torch.inference_mode(), per_layer_attention(thinker):
        saved = config._attn_implementation
        config._attn_implementation = attention or saved
        try:
            for step, token in enumerate(tokens):
                ids = torch.tensor([[token]], device=start_position.device)
                logits.append(forward_segment(thinker, cache, start_position + step, ids))
        finally:
            config._attn_implementation = saved
    return logits


def masked_attention(module, query, key, value, attention_mask, **kwargs):
    """The full cache with this layer's evicted prompt entries hidden (per KV head): the equivalence reference."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    kwargs.pop("is_causal", None)
    keep = MASKS[module.layer_idx]
    visible = torch.ones(query.shape[1], key.shape[2], dtype=torch.bool, device=query.device)
    visible[:, :keep.shape[1]] = keep.repeat_interleave(query.shape[1] // keep.shape[0], dim=0)
    return sdpa_attention_forward(module, query, key, value, visible[None, :, None, :], is_causal=False, **kwargs)


def _register_masked() -> None:
    from transformers import AttentionInterface
    AttentionInterface.register(MASKED_ATTENTION, masked_attention)


def _snapshot(cache):
    return [(layer.keys, layer.values) for layer in cache.layers]


def _restore(cache, saved) -> None:
    for layer, (keys, values) in zip(cache.layers, saved):
        layer.keys, layer.values = keys, values


def _relative(a: list, b: list) -> tuple[float, float]:
    diff = max(float((x - y).abs().max()) for x, y in zip(a, b))
    return diff, diff / max(max(float(y.abs().max()) for y in b), 1e-12)


def noise_floor(thinker, prompt, full_cache, first_logits, steps: int) -> float:
    """Relative logit difference between two kernels computing the same full-cache decode: sdpa without a mask
    against the masked reference with nothing masked (what kernel summation order alone gives)."""
    tokens = [int(first_logits.argmax())] * steps
    saved = _snapshot(full_cache)
    plain = _decode(thinker, full_cache, tokens, prompt.next_position, "sdpa")
    _restore(full_cache, saved)
    MASKS.clear()
    for idx in range(len(full_cache.layers)):
        MASKS[idx] = torch.ones(1, len(prompt.layout), dtype=torch.bool, device=first_logits.device)
    masked = _decode(thinker, full_cache, tokens, prompt.next_position, MASKED_ATTENTION)
    _restore(full_cache, saved)
    return _relative(masked, plain)[1]


def equivalence(thinker, prompt, full_cache, run, cache, first_logits, steps: int) -> dict:
    """Decode `steps` tokens from the compressed `cache` and from the full cache masked like it; the largest
    logit difference, absolute and relative to the largest |logit| of the reference."""
    from acckv_cli.methods.base import kept_mask

    tokens = [int(first_logits.argmax())]
    saved_c, saved_f = _snapshot(cache), _snapshot(full_cache)
    compressed = _decode(thinker, cache, tokens[:1], prompt.next_position, None)
    for _ in range(steps - 1):  # the compressed run's own greedy tokens, fed to both
        tokens.append(int(compressed[-1].argmax()))
        compressed += _decode(thinker, cache, tokens[-1:], prompt.next_position + len(tokens) - 1, None)
    MASKS.clear()
    for record in run.layers:
        MASKS[record["layer"]] = kept_mask(record["keep"].to(first_logits.device), len(prompt.layout))
    reference = _decode(thinker, full_cache, tokens, prompt.next_position, MASKED_ATTENTION)
    _restore(cache, saved_c), _restore(full_cache, saved_f)
    diff, relative = _relative(compressed, reference)
    return {"steps": steps, "max_abs_diff": diff, "relative": relative}


def time_decode(thinker, settings: dict, prompt, first_token: int, steps: int, device) -> dict:
    """Median ms/token per setting (name → (cache, attention)), steps interleaved across settings."""
    times: dict[str, list[float]] = {name: [] for name in settings}
    saved = {name: _snapshot(cache) for name, (cache, _) in settings.items()}
    for step in range(steps + 2):
        for name, (cache, attention) in settings.items():
            with Clock(device) as clock:
                _decode(thinker, cache, [first_token], prompt.next_position + step, attention)
            if step >= 2:  # two warm-up steps
                times[name].append(clock.seconds)
    for name, (cache, _) in settings.items():
        _restore(cache, saved[name])
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def bench_size(thinker, cfg: DeviceBenchConfig, n: int, device, progress) -> dict:
    shape = cfg.model_shape
    prompt = synthetic_prompt(n, shape, cfg.seed)
    prompt.input_ids, prompt.position_ids = prompt.input_ids.to(device), prompt.position_ids.to(device)
    prompt.next_position = prompt.next_position.to(device)
    progress(f"N={n}: prefill without hooks")
    first_logits, full_cache, _, none = _prefill(thinker, prompt, device)
    row = {"n": n, "counts": prompt.layout.counts(), "prefill_none_s": none.seconds, "prefill_none_peak_mb": none.peak_mb,
           "kv_full_bytes": _kv_bytes(full_cache), "methods": [], "equivalence": [],
           "equivalence_noise_floor": noise_floor(thinker, prompt, full_cache, first_logits, cfg.equivalence_steps)}
    tolerance = max(EQUIVALENCE_TOLERANCE.get(cfg.dtype, 1e-4), 4 * row["equivalence_noise_floor"])
    caches = {}
    for budget in cfg.budgets:
        for name in [*cfg.methods, *(m for m in EVICTION_METHODS if m not in cfg.methods)]:
            if name not in cfg.methods and budget != cfg.budgets[0]:
                continue  # the eviction-only variants run once, for the equivalence check
            progress(f"N={n}: {name} @ {budget:g}")
            try:
                _, cache, run, clock = _prefill(thinker, prompt, device, _method(name), budget)
            except Exception as exc:  # one method failing is a row, not the end of the bench
                row["methods"].append({"name": name, "budget": budget, "error": f"{type(exc).__name__}: {exc}"})
                continue
            row["methods"].append({"name": name, "budget": budget, "prefill_s": clock.seconds,
                                   "overhead_pct": 100 * (clock.seconds - none.seconds) / none.seconds,
                                   "peak_mb": clock.peak_mb, "kv_bytes": _kv_bytes(cache),
                                   "kv_ratio": _kv_bytes(cache) / row["kv_full_bytes"]})
            if name in EVICTION_METHODS and budget == cfg.budgets[0]:
                check = equivalence(thinker, prompt, full_cache, run, cache, first_logits, cfg.equivalence_steps)
                row["equivalence"].append({"name": name, **check, "tolerance": tolerance,
                                           "ok": check["relative"] <= tolerance})
            if name == "acckv":
                caches[budget] = cache
            del cache, run
    progress(f"N={n}: decode")
    from acckv_cli.methods.attention import ATTENTION_NAME

    settings = {"full": (full_cache, "sdpa"), "full·fw": (full_cache, ATTENTION_NAME),
                **{f"{b:.0%}": (c, ATTENTION_NAME) for b, c in caches.items()}}
    row["decode_ms_per_token"] = time_decode(thinker, settings, prompt, int(first_logits.argmax()),
                                             cfg.decode_steps, device)
    row["decode_kv_bytes"] = {name: _kv_bytes(cache) for name, (cache, _) in settings.items()}
    return row


def run_device_bench(cfg: DeviceBenchConfig, progress=None) -> dict:
    """Build the model on the device, run every size, write `out_json` after each size (a partial run is kept)."""
    progress = progress or (lambda text: None)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
    _register_masked()
    dtype = getattr(torch, cfg.dtype)
    started = time.perf_counter()
    progress(f"building a random {cfg.model_shape.name} ({cfg.depth} layers, {cfg.dtype}) on {device}")
    thinker = build_thinker(cfg.model_shape, cfg.depth, dtype, cfg.seed, str(device))
    weights = sum(p.numel() * p.element_size() for p in thinker.parameters())
    result = {"config": {**asdict(cfg), "sizes": list(cfg.sizes), "methods": list(cfg.methods),
                         "budgets": list(cfg.budgets)},
              "model": {**asdict(cfg.model_shape), "layers": cfg.depth, "dtype": cfg.dtype, "weight_bytes": weights,
                        "build_s": time.perf_counter() - started},
              "machine": {**machine_info(), **_device_info(device)}, "sizes": []}
    for n in cfg.sizes:
        result["sizes"].append(bench_size(thinker, cfg, n, device, progress))
        result["equivalence_ok"] = all(e["ok"] for s in result["sizes"] for e in s["equivalence"])
        result["total_s"] = time.perf_counter() - started
        if cfg.out_json:
            Path(cfg.out_json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def _device_info(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"device": str(device)}
    props = torch.cuda.get_device_properties(device)
    return {"device": torch.cuda.get_device_name(device), "device_memory_gb": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda, "torch": torch.__version__}


def markdown(result: dict) -> str:
    """The main numbers: prefill overhead and KV per method, decode ms/token, equivalence, per size."""
    lines = []
    for size in result["sizes"]:
        n = size["n"]
        lines += [f"### {n:,} tokens — prefill without hooks {size['prefill_none_s']:.2f} s, peak "
                  f"{size['prefill_none_peak_mb']:,.0f} MB, full KV {size['kv_full_bytes'] / 2**20:,.0f} MiB", "",
                  "| method | budget | prefill (s) | overhead | KV kept (MiB) | KV / full | peak (MB) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for m in size["methods"]:
            if "error" in m:
                lines.append(f"| {m['name']} | {m['budget']:g} | error: {m['error'][:60]} | | | | |")
                continue
            lines.append(f"| {m['name']} | {m['budget']:g} | {m['prefill_s']:.2f} | {m['overhead_pct']:+.1f} % | "
                         f"{m['kv_bytes'] / 2**20:,.1f} | {m['kv_ratio']:.3f} | {m['peak_mb']:,.0f} |")
        lines += ["", "| decode setting | ms/token | KV (MiB) |", "|---|---:|---:|"]
        for name, ms in size["decode_ms_per_token"].items():
            lines.append(f"| {name} | {ms:.2f} | {size['decode_kv_bytes'][name] / 2**20:,.1f} |")
        lines += ["", f"| equivalence (masked full cache; noise floor {size['equivalence_noise_floor']:.1e}) | "
                      "max abs Δ logit | relative | tolerance | ok |", "|---|---:|---:|---:|---|"]
        for e in size["equivalence"]:
            lines.append(f"| {e['name']} | {e['max_abs_diff']:.3g} | {e['relative']:.2e} | {e['tolerance']:g} | "
                         f"{'yes' if e['ok'] else 'NO'} |")
        lines.append("")
    return "\n".join(lines)


def plan(cfg: DeviceBenchConfig, device_memory_gb: float | None = None) -> dict:
    """What a run would need, without allocating: the thinker built on the meta device (its real parameter
    count), weight and KV bytes, and a peak-memory estimate per size against the device's memory."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from acckv_cli.bench.shapes import thinker_config

    shape, item = cfg.model_shape, torch.tensor([], dtype=getattr(torch, cfg.dtype)).element_size()
    with torch.device("meta"):
        thinker = Qwen2_5OmniThinkerForConditionalGeneration._from_config(thinker_config(shape, cfg.depth),
                                                                          dtype=getattr(torch, cfg.dtype))
    params = sum(p.numel() for p in thinker.parameters())
    kv_per_token = 2 * cfg.depth * shape.kv_heads * shape.head_dim * item
    sizes = []
    for n in cfg.sizes:
        # the full cache, one method's cache beside it, AccKV's kept caches, and one layer's widest activations
        # (the MLP's three [n, intermediate] tensors, scoring chunks of 64 MB)
        activations = 3 * n * shape.intermediate * item + 64 * 2**20
        peak = params * item + kv_per_token * n * (2 + sum(cfg.budgets)) + activations
        sizes.append({"n": n, "kv_full_gb": round(kv_per_token * n / 2**30, 2), "peak_estimate_gb": round(peak / 2**30, 1)})
    out = {"shape": shape.name, "layers": cfg.depth, "dtype": cfg.dtype, "parameters": params,
           "weights_gb": round(params * item / 2**30, 1), "kv_bytes_per_token": kv_per_token, "sizes": sizes}
    if device_memory_gb is not None:
        out["device_memory_gb"] = device_memory_gb
        out["fits"] = all(s["peak_estimate_gb"] < 0.9 * device_memory_gb for s in sizes)
    return out


def main(argv: list[str] | None = None) -> None:
    """`python -m acckv_cli.bench.device --plan [--shape 7b] [--sizes 8k,32k] [--memory-gb 80]`: the plan as JSON."""
    import argparse

    from acckv_cli.bench.config import parse_sizes

    parser = argparse.ArgumentParser(description=plan.__doc__.splitlines()[0])
    parser.add_argument("--plan", action="store_true", required=True)
    parser.add_argument("--shape", default="7b", choices=[*SHAPES, "tiny"])
    parser.add_argument("--sizes", default="8k,32k")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--memory-gb", type=float, default=None)
    args = parser.parse_args(argv)
    cfg = DeviceBenchConfig(sizes=parse_sizes(args.sizes), shape=args.shape, dtype=args.dtype)
    print(json.dumps(plan(cfg, args.memory_gb)))


if __name__ == "__main__":
    main()
