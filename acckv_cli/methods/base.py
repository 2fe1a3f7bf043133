"""The compression framework: per-layer context, method base classes and the hook context manager.

A method sees one decoder layer at a time, right after that layer's prefill attention has written the
full prompt KV into the cache, and returns which prompt entries to keep (and, for merging methods, new
key/value tensors). The framework then shrinks the cache for real and records per-layer statistics.

Usage::

    method = get_method("acckv")
    with method(thinker, layout, Budget(0.2)) as run:
        thinker.generate(**inputs, use_audio_in_video=True)
    run.layers  # list[LayerResult]

Positions: keys are cached after 3-D RoPE, and `generate` tracks positions itself, so pruning never
re-rotates or renumbers anything (qwen-omni-notes §0 items 3, 8).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from acckv_cli.layout import Modality, TokenLayout
from acckv_cli.methods import attention as attn
from acckv_cli.methods.budget import Budget, media_slots

log = logging.getLogger(__name__)


class CompressionError(RuntimeError):
    """Compression cannot run on this input (batch size, cache type, layout mismatch)."""


@dataclass
class LayerContext:
    """Everything a method may use for one layer. Tensors: keys/values [1, KV, L, D], hidden [1, L, d]."""

    layer_idx: int
    n_layers: int
    module: torch.nn.Module
    hidden: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    layout: TokenLayout
    budget: Budget
    shared: dict  # state shared across the layers of one run (e.g. FastV's kept set)

    @property
    def length(self) -> int:
        return self.keys.shape[2]

    @functools.cached_property
    def modality(self) -> torch.Tensor:
        return self.layout.modality.to(self.keys.device)

    @functools.cached_property
    def protected(self) -> torch.Tensor:
        return self.layout.protected_mask.to(self.keys.device)

    def mask(self, *kinds: Modality) -> torch.Tensor:
        return self.layout.mask(*kinds).to(self.keys.device)

    def rows(self, selector: str) -> torch.Tensor:
        """Query rows by name: `text` (text after the media), `all`, `question`, or `window:W`."""
        L = self.length
        if selector == "all":
            return torch.arange(L, device=self.keys.device)
        if selector.startswith("window:"):
            width = int(selector.split(":", 1)[1])
            return torch.arange(max(0, L - width), L, device=self.keys.device)
        if selector == "question":
            return (self.mask(Modality.QUESTION) & self.layout.post_media_text_mask().to(self.keys.device)).nonzero().squeeze(1)
        if selector == "text":
            return self.layout.post_media_text_mask().to(self.keys.device).nonzero().squeeze(1)
        raise ValueError(f"unknown query selector {selector!r}")

    def accumulate(self, rows: torch.Tensor, row_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Σ over `rows` of (weighted) attention probabilities: fp32 [H, L]."""
        return attn.accumulate_attention(self.module, self.hidden, self.keys, self.cos, self.sin, rows, row_weight)

    @functools.cached_property
    def text_attention(self) -> torch.Tensor:
        """Mean attention [L] from the text queries after the media, averaged over heads and rows."""
        rows = self.rows("text")
        if rows.numel() == 0:
            return torch.zeros(self.length, device=self.keys.device)
        return self.accumulate(rows).mean(0) / rows.numel()

    def media_share(self) -> dict[str, float]:
        """Share of the text queries' attention that lands on audio, video and text-like keys."""
        a = self.text_attention
        total = float(a.sum()) or 1.0
        return {
            "video": float(a[self.mask(Modality.VIDEO)].sum()) / total,
            "audio": float(a[self.mask(Modality.AUDIO)].sum()) / total,
            "text": float(a[self.protected].sum()) / total,
        }


@dataclass
class LayerResult:
    """What a method decided for one layer. `keep` holds sorted prompt indices [k]."""

    keep: torch.Tensor
    keys: torch.Tensor | None = None    # [1, KV, k, D] when merging changed the kept entries
    values: torch.Tensor | None = None
    stats: dict = field(default_factory=dict)


@dataclass
class CompressionMethod:
    """Base of all methods. Subclasses are small dataclasses whose fields are their hyperparameters."""

    name: ClassVar[str] = "base"
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        raise NotImplementedError

    def layer_budget(self, ctx: LayerContext) -> int:
        """Cache entries this layer may keep (uniform by default; PyramidKV overrides)."""
        return ctx.budget.tokens(ctx.length)

    def media_slots(self, ctx: LayerContext) -> int:
        return media_slots(self.layer_budget(ctx), int(ctx.protected.sum()), ctx.length)

    def __call__(self, thinker, layout: TokenLayout, budget: Budget, collect_stats: bool = True) -> "Compression":
        return Compression(self, thinker, layout, budget, collect_stats)

    def config(self) -> dict:
        from dataclasses import asdict
        return {"method": self.name, **asdict(self)}


@dataclass
class ScorerMethod(CompressionMethod):
    """A method that scores every prompt token and keeps the protected tokens plus the top-scored media.

    Scoring is separate from selection (as in kvpress's ScorerPress): `score` returns fp32 [L], higher is
    more important; only media tokens compete for the slots left after the protected text.
    """

    def score(self, ctx: LayerContext) -> torch.Tensor:
        raise NotImplementedError

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        scores = self.score(ctx)
        keep = keep_top(scores, ctx.protected, self.media_slots(ctx))
        return LayerResult(keep)


def keep_top(scores: torch.Tensor, protected: torch.Tensor, k: int, candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Sorted indices of all protected tokens plus the `k` best-scored candidates (default: unprotected)."""
    candidates = ~protected if candidates is None else candidates
    cand_idx = candidates.nonzero().squeeze(1)
    k = min(k, cand_idx.numel())
    best = cand_idx[scores[cand_idx].float().topk(k).indices] if k > 0 else cand_idx[:0]
    keep = torch.cat([protected.nonzero().squeeze(1), best])
    return keep.sort().values


def recent_media(media: torch.Tensor, n: int) -> torch.Tensor:
    """Mask of the last `n` tokens of `media` by position."""
    idx = media.nonzero().squeeze(1)
    out = torch.zeros_like(media)
    if n > 0:
        out[idx[-n:]] = True
    return out


class Compression:
    """Context manager that installs the per-layer hooks and always removes them.

    On entry: a forward hook on every decoder attention module, and the `acckv_sdpa` attention function
    (per-layer cache lengths). On exit: both restored, whatever happened inside.
    """

    def __init__(self, method: CompressionMethod, thinker, layout: TokenLayout, budget: Budget,
                 collect_stats: bool = True):
        self.method, self.thinker, self.layout, self.budget = method, thinker, layout, budget
        self.collect_stats = collect_stats
        self.layers: list[dict] = []
        self.shared: dict = {}
        self._handles: list = []
        self._done: set[int] = set()
        self._saved_attn: str | None = None

    @property
    def decoder_layers(self):
        return self.thinker.get_decoder().layers

    def __enter__(self) -> "Compression":
        text_config = self.decoder_layers[0].self_attn.config
        self._saved_attn = text_config._attn_implementation
        text_config._attn_implementation = attn.ATTENTION_NAME
        try:
            for layer in self.decoder_layers:
                self._handles.append(layer.self_attn.register_forward_hook(self._hook, with_kwargs=True))
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._saved_attn is not None:
            self.decoder_layers[0].self_attn.config._attn_implementation = self._saved_attn
            self._saved_attn = None

    def _hook(self, module, args, kwargs, output):
        hidden, cache = kwargs["hidden_states"], kwargs.get("cache")
        idx = module.layer_idx
        if cache is None or idx in self._done:
            return output
        layer = cache.layers[idx]
        q_len = hidden.shape[1]
        if q_len <= 1 or layer.get_seq_length() != q_len:
            return output  # only the prefill of an empty cache is compressed
        if hidden.shape[0] != 1:
            raise CompressionError("KV compression supports batch size 1 only; run one clip at a time")
        if q_len != len(self.layout):
            raise CompressionError(f"token layout has {len(self.layout)} tokens but the prompt has {q_len}")
        self._compress(module, idx, hidden, kwargs["position_embeddings"], layer)
        self._done.add(idx)
        return output

    @torch.no_grad()
    def _compress(self, module, idx, hidden, position_embeddings, layer) -> None:
        cos, sin = position_embeddings
        ctx = LayerContext(idx, len(self.decoder_layers), module, hidden, cos, sin, layer.keys, layer.values,
                           self.layout, self.budget, self.shared)
        result = self.method.compress_layer(ctx)
        keep = result.keep.to(layer.keys.device)
        before = layer.keys.nbytes + layer.values.nbytes
        if result.keys is None and keep.numel() == ctx.length:
            pass  # nothing evicted: keep the tensors as they are (no copy)
        elif result.keys is None:
            layer.keys = layer.keys.index_select(2, keep).contiguous()
            layer.values = layer.values.index_select(2, keep).contiguous()
        else:
            layer.keys, layer.values = result.keys.contiguous(), result.values.contiguous()
        record = {"layer": idx, "keep": keep.cpu(), "budget": self.method.layer_budget(ctx),
                  "kv_bytes_before": before, "kv_bytes_after": layer.keys.nbytes + layer.values.nbytes,
                  **result.stats}
        if self.collect_stats:
            record["attention_share"] = ctx.media_share()
        self.layers.append(record)
