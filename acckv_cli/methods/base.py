"""The compression framework: per-layer context, method base classes and the hook context manager.

A method sees one decoder layer at a time, right after that layer's attention has written the last
entries of the *compressed part* of the prompt into the cache (the tokens `layout` describes: system +
media under the `context` protocol, + question under `query-aware`, the whole prompt under `prefill`),
and returns which of those entries to keep (and, for merging methods, new key/value tensors). The
framework then shrinks the cache for real and records per-layer statistics. Forwards that end before the
compressed part is complete (an earlier prefill segment) are only recorded (`stash.Stash`); forwards after
it (the rest of the prompt, decoding) run against the compressed cache.

Usage (one segment, the `prefill` protocol; `acckv_cli.answer.session` runs the others)::

    method = get_method("acckv")
    with method(thinker, layout, Budget(0.2)) as run:
        thinker.generate(**inputs, use_audio_in_video=True)
    run.layers  # list[dict], one record per layer

Positions: keys are cached after 3-D RoPE and every later forward passes the whole prompt's positions,
so pruning never re-rotates or renumbers anything (docs/qwen-omni-plumbing.md).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import ClassVar

from acckv_cli.lazy import no_grad, torch

from acckv_cli.errors import CompressionError
from acckv_cli.model.layout import Modality, TokenLayout
from acckv_cli.methods.budget import Budget
from acckv_cli.methods.stash import AttentionNeeds, LayerStash, Stash

log = logging.getLogger(__name__)


@dataclass
class LayerContext:
    """Everything a method may use for one layer.

    keys/values [1, KV, L, D] hold the whole compressed part (L = len(layout)); hidden [1, q, d] and
    cos/sin [1, q, D] only the rows of the forward that completed it, i.e. prompt rows [offset, L).
    Attention of earlier rows comes from `stash` (see `accumulate`).
    """

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
    offset: int = 0
    stash: LayerStash = field(default_factory=LayerStash)
    # How many prompt tokens each entry already stands for, [KV, L] fp32 (None: one each). Only a streamed
    # cache has entries that absorbed others in an earlier step; merging weighs them by it.
    counts: torch.Tensor | None = None

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

    @property
    def n_media(self) -> int:
        return int((~self.protected).sum())

    def accumulate(self, rows: torch.Tensor, weighting: str = "none") -> torch.Tensor:
        """Σ over prompt rows `rows` of (weighted) attention probabilities: fp32 [H, L].

        Rows of the current forward are recomputed from its hidden states; rows of earlier prefill
        segments come from the stash (all-row sums or recorded tail queries), or the method did not declare
        them in `attention_needs` and this raises CompressionError.
        """
        from acckv_cli.methods import attention as attn  # transformers: imported when a layer is scored

        rows = rows.to(self.keys.device).sort().values
        current, earlier = rows[rows >= self.offset], rows[rows < self.offset]
        total = attn.accumulate_attention(self.module, self.hidden, self.keys, self.cos, self.sin, current,
                                          weighting, self.offset)
        if earlier.numel():
            total += self._earlier(earlier, weighting)
        return total

    def _earlier(self, rows: torch.Tensor, weighting: str) -> torch.Tensor:
        from acckv_cli.methods import attention as attn

        stash = self.stash
        if rows.numel() == stash.n == self.offset and weighting in stash.sums:  # every earlier row
            total = torch.zeros(stash.sums[weighting].shape[0], self.length, device=self.keys.device)
            total[:, :stash.n] = stash.sums[weighting].to(self.keys.device)
            return total
        if stash.covers(rows):
            return attn.accumulate_queries(stash.queries_of, rows, self.keys, self.module, weighting)
        raise CompressionError(
            f"layer {self.layer_idx}: scoring needs the attention of {rows.numel()} prompt rows from an earlier "
            f"prefill segment that were not recorded (the method's attention_needs must declare them)")

    @functools.cached_property
    def text_attention(self) -> torch.Tensor:
        """Mean attention [L] from the text queries after the media, averaged over heads and rows."""
        rows = self.rows("text")
        if rows.numel() == 0:
            return torch.zeros(self.length, device=self.keys.device)
        return self.accumulate(rows).mean(0) / rows.numel()

    def reduce(self, scores: torch.Tensor, how: str) -> torch.Tensor:
        """[H, L] per-query-head scores → [L] (one set for all heads) or [KV, L] (a set per KV head)."""
        from acckv_cli.methods import attention as attn

        return attn.reduce_heads(scores, how, self.keys.shape[1])

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
    """What a method decided for one layer.

    keep: sorted prompt indices, [k] for one set shared by every KV head, or [KV, k] for a set per KV head
          (each row sorted; the same k in every head, so eviction stays one real gather).
    keys/values: [1, KV, k, D] when merging changed the kept entries (else gathered from the cache).
    counts: [KV, k] fp32 prompt tokens each kept entry now stands for, when merging changed them (a streamed
          cache carries them to the next step; None: the entries' own counts, gathered by `keep`).
    """

    keep: torch.Tensor
    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None
    stats: dict = field(default_factory=dict)
    counts: torch.Tensor | None = None


def check_choice(method: str, field_name: str, value, choices) -> None:
    """Raise a one-line ValueError when a string hyperparameter is not one of its choices."""
    if value not in choices:
        raise ValueError(f"{method} {field_name} must be one of {', '.join(map(str, choices))}, got {value!r}")


@dataclass
class CompressionMethod:
    """Base of all methods. Subclasses are small dataclasses whose fields are their hyperparameters."""

    name: ClassVar[str] = "base"
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    choices: ClassVar[dict[str, tuple]] = {}  # allowed values of the string hyperparameters

    def check_choices(self) -> None:
        """Refuse a string hyperparameter outside its `choices` (when the method is built, not in the hook)."""
        for field_name, allowed in self.choices.items():
            check_choice(self.name, field_name, getattr(self, field_name), allowed)

    @classmethod
    def options(cls) -> list[dict]:
        """Every hyperparameter: name, type, default and, for string knobs, the allowed values."""
        from dataclasses import MISSING, fields

        out = []
        for f in fields(cls):
            default = f.default if f.default is not MISSING else None
            out.append({"name": f.name, "type": getattr(f.type, "__name__", str(f.type)), "default": default,
                        "choices": list(cls.choices.get(f.name, ())) or None})
        return out

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        raise NotImplementedError

    # Methods that change the prefill itself (FastV's prune mode) need the compressed part in one forward.
    single_forward: ClassVar[bool] = False
    # Why the method cannot compress a cache streamed chunk by chunk (`methods/streaming.py`), if it cannot.
    cannot_stream: ClassVar[str] = ""
    # Methods that read the question's evidence spans (the oracle): `eval` supplies them from the manifest.
    needs_evidence: ClassVar[bool] = False

    def stream_obstacle(self) -> str:
        """Why this method, as configured, cannot compress a streamed cache ('' when it can)."""
        return self.cannot_stream

    def attention_needs(self) -> AttentionNeeds:
        """Rows of earlier prefill segments whose attention `compress_layer` reads (default: the last 64)."""
        return AttentionNeeds()

    def install(self, run: "Compression") -> list:
        """Extra hooks a method needs during the compressing forward (removed with the run's own)."""
        return []

    def cached_length(self, layer_idx: int, n_layers: int, layout: TokenLayout, budget: Budget) -> int:
        """Entries this layer's cache holds once the compressed part is prefilled (less if pruned in it)."""
        return len(layout)

    def finish(self, run: "Compression", cache) -> None:
        """Called once after the forward that completed the compressed part (all layers compressed)."""

    def media_slots(self, ctx: LayerContext) -> int:
        """Media entries this layer keeps (the budget, uniform over layers; PyramidKV and FastV override)."""
        return ctx.budget.media_tokens(ctx.n_media)

    def layer_budget(self, ctx: LayerContext) -> int:
        """Cache entries this layer may keep: every protected entry plus its media slots."""
        return int(ctx.protected.sum()) + self.media_slots(ctx)

    def __call__(self, thinker, layout: TokenLayout, budget: Budget, collect_stats: bool = True,
                 stash: Stash | None = None) -> "Compression":
        return Compression(self, thinker, layout, budget, collect_stats, stash)

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
    """Sorted indices of all protected tokens plus the `k` best-scored candidates (default: unprotected).

    scores [L] gives one set [P + k]; scores [KV, L] gives a set per KV head [KV, P + k] (rows sorted).
    """
    candidates = ~protected if candidates is None else candidates
    cand_idx = candidates.nonzero().squeeze(1)
    k = min(k, cand_idx.numel())
    fixed = protected.nonzero().squeeze(1)
    if scores.ndim == 1:
        best = cand_idx[scores[cand_idx].float().topk(k).indices] if k > 0 else cand_idx[:0]
        return torch.cat([fixed, best]).sort().values
    heads = scores.shape[0]
    best = cand_idx[scores[:, cand_idx].float().topk(k, dim=-1).indices] if k > 0 else cand_idx[None, :0].expand(heads, 0)
    return torch.cat([fixed[None].expand(heads, -1), best], dim=1).sort(dim=-1).values


def kept_mask(keep: torch.Tensor, length: int) -> torch.Tensor:
    """Boolean [heads, L] (heads = 1 for a shared set) of the prompt entries `keep` retains."""
    rows = keep[None] if keep.ndim == 1 else keep
    mask = torch.zeros(rows.shape[0], length, dtype=torch.bool, device=keep.device)
    mask.scatter_(1, rows, True)
    return mask


def gather_entries(tensor: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """[1, KV, L, D] → [1, KV, k, D]: the kept entries, shared ([k]) or per KV head ([KV, k])."""
    if keep.ndim == 1:
        return tensor.index_select(2, keep)
    return tensor.gather(2, keep[None, :, :, None].expand(1, -1, -1, tensor.shape[-1]))


def shrink_layer(layer, result: "LayerResult", keep: torch.Tensor) -> None:
    """Replace a cache layer's keys and values by what `result` keeps: `keep`'s entries ([k] or [KV, k]), or
    the method's own (merged) tensors. Nothing evicted: the tensors stay as they are (no copy)."""
    if result.keys is None and keep.ndim == 1 and keep.shape[-1] == layer.keys.shape[2]:
        return
    if result.keys is None:
        layer.keys = gather_entries(layer.keys, keep).contiguous()
        layer.values = gather_entries(layer.values, keep).contiguous()
    else:
        layer.keys, layer.values = result.keys.contiguous(), result.values.contiguous()


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
    (per-layer cache lengths). In each layer, a forward that leaves the cache shorter than `layout` is
    recorded in the stash; the forward that brings it to exactly `len(layout)` entries compresses it;
    later forwards pass through. On exit: hooks and attention function restored, whatever happened inside.
    `stash` holds records of segments prefilled before entering (it is forked, never modified).
    """

    def __init__(self, method: CompressionMethod, thinker, layout: TokenLayout, budget: Budget,
                 collect_stats: bool = True, stash: Stash | None = None):
        self.method, self.thinker, self.layout, self.budget = method, thinker, layout, budget
        self.collect_stats = collect_stats
        self.stash = stash.fork() if stash is not None else Stash(method.attention_needs())
        self.layers: list[dict] = []
        self.shared: dict = {}
        self._handles: list = []
        self._done: set[int] = set()
        self._backend = None

    @property
    def decoder_layers(self):
        return self.thinker.get_decoder().layers

    def __enter__(self) -> "Compression":
        from acckv_cli.methods import attention as attn  # registers `acckv_sdpa` with transformers

        self._backend = attn.per_layer_attention(self.thinker)
        self._backend.__enter__()
        try:
            for layer in self.decoder_layers:
                self._handles.append(layer.self_attn.register_forward_hook(self._hook, with_kwargs=True))
            self._handles.append(self.thinker.get_decoder().register_forward_hook(self._after_forward, with_kwargs=True))
            self._handles += self.method.install(self)
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._backend is not None:
            self._backend.__exit__(None, None, None)
            self._backend = None

    def _hook(self, module, args, kwargs, output):
        hidden, cache = kwargs["hidden_states"], kwargs.get("cache")
        idx = module.layer_idx
        if cache is None or idx in self._done:
            return output
        if hidden.shape[0] != 1:
            raise CompressionError("KV compression supports batch size 1 only; run one clip at a time")
        layer = cache.layers[idx]
        filled = layer.get_seq_length()
        target = self.method.cached_length(idx, len(self.decoder_layers), self.layout, self.budget)
        cos, sin = kwargs["position_embeddings"]
        if filled < target:  # an earlier segment of the compressed part: remember what scoring will need
            self.stash.record(module, idx, hidden, cos, sin, layer.keys)
            return output
        if filled > target:
            raise CompressionError(f"token layout has {target} tokens but the prompt reached {filled} "
                                   f"without compressing (layout and prompt do not match)")
        self._compress(module, idx, hidden, cos, sin, layer)
        self._done.add(idx)
        return output

    def _after_forward(self, module, args, kwargs, output):
        if len(self._done) == len(self.decoder_layers) and not self.shared.get("_finished"):
            self.shared["_finished"] = True
            self.method.finish(self, kwargs.get("cache"))
        return output

    @no_grad
    def _compress(self, module, idx, hidden, cos, sin, layer) -> None:
        offset = layer.keys.shape[2] - hidden.shape[1]
        ctx = LayerContext(idx, len(self.decoder_layers), module, hidden, cos, sin, layer.keys, layer.values,
                           self.layout, self.budget, self.shared, offset, self.stash.get(idx))
        result = self.method.compress_layer(ctx)
        keep = result.keep.to(layer.keys.device)
        # what the layer's full compressed part costs (a layer pruned during prefill holds less already)
        before = (layer.keys.nbytes + layer.values.nbytes) // layer.keys.shape[2] * len(self.layout)
        shrink_layer(layer, result, keep)
        record = {"layer": idx, "keep": keep.cpu(), "budget": self.method.layer_budget(ctx),
                  "media_budget": self.method.media_slots(ctx),
                  "kv_bytes_before": before, "kv_bytes_after": layer.keys.nbytes + layer.values.nbytes,
                  **result.stats}
        if self.collect_stats and ctx.length == len(self.layout):  # (a layer pruned during prefill has no rows)
            record["attention_share"] = ctx.media_share()
        self.layers.append(record)
