"""The prefill of a bench prompt, with and without a method, and each method's per-layer step replayed.

`capture_prefill` runs the real `Compression` context for `acckv` (hooks installed), times its per-layer
step and saves each layer's hook inputs to disk (that I/O is timed and subtracted); `replay` runs any
method's step (`Compression._compress`, exactly what the hook runs) on those saved inputs, so every method
is measured without another prefill.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from acckv_cli.bench.memory import PeakRSS
from acckv_cli.bench.prompts import SyntheticPrompt
from acckv_cli.model.layout import TokenLayout
from acckv_cli.methods import Budget, get_method
from acckv_cli.methods.base import Compression
from acckv_cli.model.load import last_position_logits

# AccKV without cross-calibration: holds exactly the budget, so it provides the KV-bytes check and the
# compressed caches that decode is timed on (calibration may legitimately go below the budget).
NOCAL = "acckv-nocal"
REPEAT_BELOW_S = 1.0                 # replays shorter than this are repeated (median of --repeat runs)


class _StubLayer:
    """A cache layer stand-in holding one layer's full K/V for replaying the compression step."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        self.keys, self.values = keys, values


class _TimedCompression(Compression):
    """The real `Compression` context; additionally times the per-layer step and saves its inputs."""

    def __init__(self, *args, spill_dir: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.hook_s: list[float] = []
        self.spill_s = 0.0
        self.spill_dir = spill_dir

    def _compress(self, module, idx, hidden, cos, sin, layer) -> None:
        if self.spill_dir is not None:
            start = time.perf_counter()
            torch.save({"hidden": hidden, "keys": layer.keys, "values": layer.values,
                        **({"cos": cos, "sin": sin} if idx == 0 else {})}, Path(self.spill_dir, f"layer{idx}.pt"))
            self.spill_s += time.perf_counter() - start
        start = time.perf_counter()
        super()._compress(module, idx, hidden, cos, sin, layer)
        self.hook_s.append(time.perf_counter() - start)


def plain_prefill(thinker, prompt: SyntheticPrompt):
    with torch.inference_mode(), last_position_logits(thinker):
        out = thinker(input_ids=prompt.input_ids, position_ids=prompt.position_ids, use_cache=True)
    if out.logits.shape[1] != 1:
        raise RuntimeError("prefill computed logits for more than the last position")
    return out.logits, getattr(out, "cache", None) or out.past_key_values


def kv_bytes(cache) -> int:
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)


def _method(name: str):
    if name == NOCAL:
        return get_method("acckv", calibration=False)
    if name == "fastv":  # prune mode changes the prefill itself, which a per-layer replay cannot show
        return get_method("fastv", mode="kv_emulate")
    return get_method(name)


def replay(thinker, layout: TokenLayout, name: str, budget: float, inputs: list[dict], repeat: int = 1) -> dict:
    """Run one method's per-layer compression step on saved layer inputs; time, bytes and peak memory.

    Steps shorter than `REPEAT_BELOW_S` are run `repeat` times and the median is reported (short steps are
    the ones most disturbed by other processes); the first run's outputs and peak memory are returned.
    """
    runs = []
    for i in range(repeat if repeat > 1 else 1):
        comp = Compression(_method(name), thinker, layout, Budget(budget))
        layers = thinker.get_decoder().layers
        stubs, times = [], []
        cos, sin = inputs[0]["cos"], inputs[0]["sin"]
        with PeakRSS() as mem, torch.inference_mode():
            for idx, saved in enumerate(inputs):
                stub = _StubLayer(saved["keys"], saved["values"])
                start = time.perf_counter()
                comp._compress(layers[idx].self_attn, idx, saved["hidden"], cos, sin, stub)
                times.append(time.perf_counter() - start)
                stubs.append(stub)
        runs.append(times)
        if i == 0:
            first = {"stubs": stubs, "peak_mb": mem.peak_mb, "records": comp.layers}
        else:
            del stubs, comp
        if sum(times) >= REPEAT_BELOW_S:
            break
    records = first["records"]
    layer_s = [statistics.median(run[j] for run in runs) for j in range(len(inputs))]
    stats = [{k: v for k, v in r.items() if k in ("budget_mismatch", "calibration", "merged")} for r in records]
    return {"hook_s": statistics.median(sum(run) for run in runs), "layer_s": layer_s, "runs": len(runs),
            "stubs": first["stubs"], "peak_mb": first["peak_mb"],
            "kv_bytes": sum(r["kv_bytes_after"] for r in records),
            "entries": [int(s.keys.shape[2]) for s in first["stubs"]], "layer_budgets": [r["budget"] for r in records],
            "stats": stats}


def capture_prefill(thinker, prompt: SyntheticPrompt, budget: float) -> tuple[dict, list[dict], object]:
    """Prefill with the real `acckv` hooks: timings, peak memory, the saved per-layer inputs and the cache."""
    with tempfile.TemporaryDirectory(prefix="acckv-bench-") as spill:
        comp = _TimedCompression(get_method("acckv"), thinker, prompt.layout, Budget(budget), spill_dir=spill)
        with PeakRSS() as mem:
            start = time.perf_counter()
            with comp:
                _, cache = plain_prefill(thinker, prompt)
            total = time.perf_counter() - start
        inputs = [torch.load(Path(spill, f"layer{i}.pt")) for i in range(len(comp.hook_s))]
    info = {"e2e_s": total - comp.spill_s, "hook_s": sum(comp.hook_s), "hook_layer_s": comp.hook_s,
            "capture_io_s": comp.spill_s, "peak_mb": mem.peak_mb}
    return info, inputs, cache
