"""How a decode step is timed: greedy steps per cache setting, interleaved, and the split of one step.

`time_decode` runs every setting's steps interleaved step by step (so a background load hits all settings
alike), then a second pass with timing hooks on the attention function, the cache update, `self_attn`,
`mlp` and `lm_head`; `profile_summary` turns that pass into a split and its projection to the real depth.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field

import torch

from acckv_cli.methods import attention as attn

FULL_FW = "full·fw"


TIMED = {"sdpa": "acckv_bench_timed_sdpa", attn.ATTENTION_NAME: "acckv_bench_timed_fw"}
_CLOCK: dict[str, float] = {}


def _timed(fn):
    def timed_attention(module, query, key, value, attention_mask, **kwargs):
        start = time.perf_counter()
        try:
            return fn(module, query, key, value, attention_mask, **kwargs)
        finally:
            _CLOCK["core"] = _CLOCK.get("core", 0.0) + time.perf_counter() - start
    return timed_attention


def _register_timed_attention() -> None:
    """Attention functions that time the attention core (softmax(qKᵀ)V over the cache) of each kernel."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    AttentionInterface.register(TIMED["sdpa"], _timed(sdpa_attention_forward))
    AttentionInterface.register(TIMED[attn.ATTENTION_NAME], _timed(attn.acckv_sdpa))


@contextlib.contextmanager
def _component_clocks(thinker):
    """Accumulate wall time of each decoder's self_attn and mlp, and of the LM head, into `_CLOCK`."""
    handles, starts = [], {}

    def watch(module, key):
        handles.append(module.register_forward_pre_hook(lambda m, a: starts.__setitem__(id(m), time.perf_counter())))
        handles.append(module.register_forward_hook(lambda m, a, o: _CLOCK.__setitem__(
            key, _CLOCK.get(key, 0.0) + time.perf_counter() - starts[id(m)])))

    for layer in thinker.get_decoder().layers:
        watch(layer.self_attn, "attention_module")
        watch(layer.mlp, "mlp")
    watch(thinker.lm_head, "lm_head")
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class DecodeState:
    name: str
    cache: object
    token: torch.Tensor
    position: torch.Tensor
    attn_impl: str
    times: list[float] = field(default_factory=list)
    profile: list[dict] = field(default_factory=list)


def _step(thinker, state: DecodeState, attn_impl: str | None = None) -> float:
    config = thinker.get_decoder().layers[0].self_attn.config
    config._attn_implementation = attn_impl or state.attn_impl
    start = time.perf_counter()
    with torch.inference_mode():
        out = thinker(input_ids=state.token, position_ids=state.position, cache=state.cache, use_cache=True)
        state.token = out.logits[:, -1:].argmax(-1)
    elapsed = time.perf_counter() - start
    state.position = state.position + 1
    return elapsed


def time_decode(thinker, states: list[DecodeState], steps: int, warmup: int) -> None:
    """Greedy decode steps for every setting, interleaved; then an instrumented pass for the split."""
    config = thinker.get_decoder().layers[0].self_attn.config
    saved = config._attn_implementation
    try:
        for _ in range(warmup):
            for s in states:
                _step(thinker, s)
        for _ in range(steps):
            for s in states:
                s.times.append(_step(thinker, s))
        _register_timed_attention()
        with _component_clocks(thinker), contextlib.ExitStack() as stack:
            for s in states:
                stack.enter_context(_append_clock(s.cache))
            for _ in range(max(2, steps // 2)):
                for s in states:
                    _CLOCK.clear()
                    total = _step(thinker, s, TIMED[s.attn_impl])
                    s.profile.append({**_CLOCK, "total": total})
    finally:
        config._attn_implementation = saved


@contextlib.contextmanager
def _append_clock(cache):
    """Time each cache layer's `update`: DynamicLayer appends with `torch.cat`, copying the whole cache."""
    layers = list(cache.layers)

    def timed(update):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return update(*args, **kwargs)
            finally:
                _CLOCK["append"] = _CLOCK.get("append", 0.0) + time.perf_counter() - start
        return wrapper

    for layer in layers:
        layer.update = timed(layer.update)   # instance attribute shadows the class method
    try:
        yield
    finally:
        for layer in layers:
            del layer.update


def profile_summary(profile: list[dict], layers: int, full_layers: int) -> dict:
    """Median split of an instrumented decode step (ms) and its projection to the real layer count.

    attention core = softmax(qKᵀ)V over the cache; KV append = the cache update (`torch.cat` of the whole
    layer cache); attention projections = the rest of the attention module (q/k/v/o, RoPE); both the
    core and the append scale with the cache, everything else does not.
    """
    med = {k: statistics.median(p.get(k, 0.0) for p in profile) * 1e3
           for k in ("total", "core", "append", "attention_module", "mlp", "lm_head")}
    proj = max(0.0, med["attention_module"] - med["core"] - med["append"])
    other = max(0.0, med["total"] - med["attention_module"] - med["mlp"] - med["lm_head"])
    per_layer = (med["attention_module"] + med["mlp"]) / layers
    fixed = med["lm_head"] + other
    projected = fixed + per_layer * full_layers
    cache_ms = med["core"] + med["append"]
    return {"total_ms": med["total"], "attention_core_ms": med["core"], "kv_append_ms": med["append"],
            "attention_proj_ms": proj, "mlp_ms": med["mlp"], "lm_head_ms": med["lm_head"], "other_ms": other,
            "attention_core_share": med["core"] / med["total"] if med["total"] else 0.0,
            "cache_share": cache_ms / med["total"] if med["total"] else 0.0,
            "core_per_layer_ms": med["core"] / layers, "projected_total_ms": projected,
            "projected_layers": full_layers}
