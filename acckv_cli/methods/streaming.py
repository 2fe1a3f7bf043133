"""Streaming compression: any method applied after every prefill step, so the cache stays bounded.

`Compression` compresses the compressed part once, when its last segment is prefilled. A long clip
prefilled chunk by chunk (`acckv_cli.answer.stream`) must be compressed after *each* chunk instead, or the cache
would hold the whole clip before the first eviction. `StreamCompression` does that with the same hooks:
after a layer's attention has appended the step's new entries, the method sees that layer's cache —
its kept entries from earlier steps plus the step's — and keeps the protected text plus `MediaCap`
media entries; the layer after it runs against the already compressed layer. So at any moment one layer
holds at most protected + cap + one step, and every other layer at most protected + cap.

What a method sees in one step (a `StreamLayerContext`):

* `keys`/`values` [1, KV, n + q, D]: the layer's cached entries (n) followed by the step's (q);
* `layout`: the whole prompt's layout at those entries (`TokenLayout.select`), so modality, time and
  positions of every slot are known; with a kept set per KV head, the slots of KV head 0 (protected text,
  media/text and slot order are the same in every head; cached media labels and times are head 0's);
* `hidden`, `cos`, `sin`: the step's rows only (`offset` = n). Earlier rows no longer exist, so scoring
  is **query-agnostic and recency-based**: every row selector (`text`, `question`, `all`) means the
  step's own rows — the newest seconds of the clip attending back over everything kept — and `window:W`
  the step's last W rows. In the last step those rows include the closing delimiters after the media,
  the rows the `context` protocol scores with. Nothing of the question is ever used.

Budgets: a ratio is a share of the *whole* clip's media tokens, turned into a fixed count before the
first step (`MediaCap`), so the cap does not grow with the clip. Bookkeeping: `kept[layer]` holds the
prompt index of every cached entry ([n], or [KV, n] per KV head), so reports know each slot's modality and
time; `trace` records every (step, layer) with the entries before and after compression and the KV bytes
of the whole cache at that moment. Merging methods merge again after every step: `counts[layer]` ([KV, n])
holds how many prompt tokens each cached entry stands for, handed to the next step (`LayerContext.counts`)
so that a merged entry averages every token it absorbed (`merge.merge_counted`).

Refused with one line (`stream_refusal`): methods that change the prefill itself or need the whole
compressed part in one forward (FastV's hooks: `install`, `cached_length`, `finish`), PyramidKV (its
per-layer budgets are a pyramid over the whole prompt's media count; sized from each layer's own cache at
every step, shallow layers would settle near twice the cap) and TaskFocus (it picks its modality from the
question, which a streamed cache never sees).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import torch
from transformers import AttentionInterface

from acckv_cli.model.layout import TokenLayout
from acckv_cli.methods import attention as attn
from acckv_cli.methods.base import (Compression, CompressionError, CompressionMethod, LayerContext,
                                    shrink_layer)
from acckv_cli.methods.budget import Budget, BudgetError
from acckv_cli.methods.merge import kept_counts


@dataclass(frozen=True)
class MediaCap(Budget):
    """A fixed number of media entries per layer (0 allowed), whatever the entries a step holds."""

    def __post_init__(self):
        if self.value < 0 or self.value != int(self.value):
            raise BudgetError(f"a media cap must be a whole number ≥ 0, got {self.value}")

    @property
    def is_ratio(self) -> bool:
        return False

    def media_tokens(self, n_media: int) -> int:
        return min(n_media, int(self.value))

    def __str__(self) -> str:
        return f"{int(self.value)} tokens"


def media_cap(budget: Budget, total_media: int) -> MediaCap:
    """The fixed cap of a streamed clip: the budget applied to the whole clip's media tokens."""
    return MediaCap(budget.media_tokens(total_media))


def stream_refusal(method: CompressionMethod) -> str | None:
    """Why `method` cannot compress a streamed cache (a one-line message), or None if it can.

    Refused: methods that hook into the prefill itself (FastV: `install`, `cached_length`, `finish`), which
    need one forward of the whole part, and methods that declare a reason in `cannot_stream`.
    """
    kind = type(method)
    if (method.single_forward or kind.install is not CompressionMethod.install
            or kind.cached_length is not CompressionMethod.cached_length
            or kind.finish is not CompressionMethod.finish):
        return f"{method.name} prunes inside one forward of the whole prompt and cannot stream; pick another method"
    if reason := method.stream_obstacle():
        return f"{method.name} cannot stream: {reason}; pick another method"
    return None


# The post-RoPE queries of the step, kept by the attention function for the hook that runs right after it
# (keyed by the attention module): scoring then reuses them instead of projecting the step's rows again, which
# cost 5 % of a streamed prefill (one more q_proj per layer and step). Popped by the hook, so none outlives it.
_QUERIES: dict[int, torch.Tensor] = {}
STREAM_ATTENTION = "acckv_stream_sdpa"


def _sdpa_keeping_queries(module, query, key, value, attention_mask, **kwargs):
    """`acckv_sdpa` that also keeps this layer's queries [1, H, q, D] for the compression hook."""
    _QUERIES[id(module)] = query
    return attn.acckv_sdpa(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(STREAM_ATTENTION, _sdpa_keeping_queries)


@dataclass
class StreamLayerContext(LayerContext):
    """A `LayerContext` whose query rows are the step's own rows (see the module docstring); `queries` are the
    step's post-RoPE queries as the attention module computed them ([1, H, q, D]), when it kept them."""

    queries: torch.Tensor | None = None

    def accumulate(self, rows: torch.Tensor, weighting: str = "none") -> torch.Tensor:
        rows = rows.to(self.keys.device).sort().values
        if self.queries is None or (rows.numel() and int(rows[0]) < self.offset):
            return super().accumulate(rows, weighting)
        q = self.queries[0]  # the same numbers `project_queries` computes from the step's hidden states
        return attn.accumulate_queries(lambda r: q[:, r - self.offset].float(), rows, self.keys, self.module,
                                       weighting)

    def rows(self, selector: str) -> torch.Tensor:
        L, device = self.length, self.keys.device
        if selector.startswith("window:"):
            width = int(selector.split(":", 1)[1])
            return torch.arange(max(self.offset, L - width), L, device=device)
        if selector in ("all", "text", "question"):
            return torch.arange(self.offset, L, device=device)
        raise ValueError(f"unknown query selector {selector!r}")


TRACE_FIELDS = ("step", "layer", "start", "end", "before", "after", "kv_bytes", "protected", "media_budget")


class StreamCompression(Compression):
    """Hooks that compress every layer after each prefill step (`begin_step` before the step's forward).

    layout: the whole prefix's layout; budget: the user's budget (reports show it); cap: its `MediaCap`.
    After the last step, `layers` holds one record per layer like `Compression`'s (kept prompt indices,
    budgets, KV bytes before/after), so `RetentionReport.from_run` and the answers work unchanged.
    """

    def __init__(self, method: CompressionMethod, thinker, layout: TokenLayout, budget: Budget):
        if (reason := stream_refusal(method)) is not None:
            raise CompressionError(reason)
        super().__init__(method, thinker, layout, budget, collect_stats=False)
        self.cap = media_cap(budget, int(layout.media_mask.sum()))
        self.kept: dict[int, torch.Tensor] = {}
        # Prompt tokens each cached entry stands for, [KV, n] fp32, once a merge made one stand for several
        # (absent: one each). The next step's merge weighs entries by it, so a slot averages all it absorbed.
        self.counts: dict[int, torch.Tensor] = {}
        self.stats: dict[int, dict] = {}
        self._trace = array("q")  # TRACE_FIELDS per (step, layer), 72 bytes a row (a dict would be ~10×)
        self.peak_entries: dict[int, int] = {}
        self.peak_kv_bytes = 0  # the most KV bytes the whole cache held (one layer holding a step uncompressed)
        self.step: tuple[int, int] | None = None
        self.n_steps = 0

    def __enter__(self) -> "StreamCompression":
        super().__enter__()  # hooks, and `acckv_sdpa` for the decoder; then its query-keeping variant
        self._config = self.decoder_layers[0].self_attn.config
        self._saved_attention, self._config._attn_implementation = self._config._attn_implementation, STREAM_ATTENTION
        return self

    def __exit__(self, *exc) -> None:
        if getattr(self, "_config", None) is not None:
            self._config._attn_implementation = self._saved_attention
            self._config = None
        _QUERIES.clear()
        super().__exit__(*exc)

    def begin_step(self, start: int, end: int) -> None:
        """The next forward prefills prompt tokens [start, end)."""
        self.step = (start, end)

    # --- the per-layer hook -------------------------------------------------------------------------------
    def _hook(self, module, args, kwargs, output):
        hidden, cache = kwargs["hidden_states"], kwargs.get("cache")
        queries = _QUERIES.pop(id(module), None)
        if cache is None or self.step is None:
            return output
        if hidden.shape[0] != 1:
            raise CompressionError("KV compression supports batch size 1 only; run one clip at a time")
        start, end = self.step
        idx, layer = module.layer_idx, cache.layers[module.layer_idx]
        cached = self.kept.get(idx, torch.zeros(0, dtype=torch.long))
        n = cached.shape[-1]
        if hidden.shape[1] != end - start or layer.keys.shape[2] != n + end - start:
            raise CompressionError(f"layer {idx}: the cache holds {layer.keys.shape[2]} entries, expected "
                                   f"{n} kept + {end - start} new (steps must be run through begin_step)")
        cos, sin = kwargs["position_embeddings"]
        total_bytes = sum(l.keys.nbytes + l.values.nbytes for l in cache.layers if l.keys is not None and l.keys.numel())
        slots = self._slots(cached, start, end)                       # [n + q] or [KV, n + q]
        rows = slots if slots.ndim == 1 else slots[0]
        counts = self.counts.get(idx)
        if counts is not None:  # the step's new entries stand for themselves
            counts = torch.cat([counts, counts.new_ones(counts.shape[0], end - start)], dim=1)
        ctx = StreamLayerContext(idx, len(self.decoder_layers), module, hidden, cos, sin, layer.keys,
                                 layer.values, self.layout.select(rows), self.cap, self.shared, n, counts=counts,
                                 queries=queries)
        result = self.method.compress_layer(ctx)
        if result.counts is not None:
            self.counts[idx] = result.counts.float()
        elif counts is not None:
            self.counts[idx] = kept_counts(counts, result.keep.to(counts.device), counts.shape[0])
        self.kept[idx] = self._apply(layer, result, slots)
        media_budget = self.method.media_slots(ctx)
        self.stats[idx] = {**result.stats, "layer_budget": self.method.layer_budget(ctx), "media_budget": media_budget}
        self._trace.extend((self.n_steps, idx, start, end, n + end - start, int(layer.keys.shape[2]), total_bytes,
                            int(ctx.protected.sum()), media_budget))
        self.peak_entries[idx] = max(self.peak_entries.get(idx, 0), n + end - start)
        self.peak_kv_bytes = max(self.peak_kv_bytes, total_bytes)
        if idx == len(self.decoder_layers) - 1:
            self.n_steps += 1
        return output

    def _after_forward(self, module, args, kwargs, output):
        return output  # no whole-part `finish`: streamable methods have none

    @staticmethod
    def _slots(cached: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Prompt index of every entry the layer holds now: cached ones, then the step's."""
        new = torch.arange(start, end)
        if cached.ndim == 1:
            return torch.cat([cached, new])
        return torch.cat([cached, new[None].expand(cached.shape[0], -1)], dim=1)

    @torch.no_grad()
    def _apply(self, layer, result, slots: torch.Tensor) -> torch.Tensor:
        """Shrink the layer to the kept entries; return their prompt indices ([k] or [KV, k])."""
        keep = result.keep.to(layer.keys.device)
        shrink_layer(layer, result, keep)
        keep = keep.cpu()
        if slots.ndim == 1:
            return slots[keep]
        heads = slots.shape[0]
        rows = keep[None].expand(heads, -1) if keep.ndim == 1 else keep
        return slots.gather(1, rows)

    # --- the records reports read -------------------------------------------------------------------------
    def finish_stream(self, cache) -> None:
        """Per-layer records after the last step (what `Compression.layers` holds after a one-shot run)."""
        self.layers = []
        for idx, layer in enumerate(cache.layers):
            keep = self.kept[idx]
            per_entry = (layer.keys.nbytes + layer.values.nbytes) // max(1, layer.keys.shape[2])
            stats = dict(self.stats.get(idx, {}))
            record = {"layer": idx, "keep": keep.sort(dim=-1).values, "budget": stats.pop("layer_budget"),
                      "media_budget": stats.pop("media_budget"), "kv_bytes_before": per_entry * len(self.layout),
                      "kv_bytes_after": layer.keys.nbytes + layer.values.nbytes,
                      "peak_entries": self.peak_entries[idx], **stats}
            self.layers.append(record)

    @property
    def trace(self) -> list[dict]:
        """Every (step, layer) as a dict of `TRACE_FIELDS`: the step's prompt range, the layer's entries before
        and after compression, the whole cache's KV bytes at that moment, its protected entries and media cap.
        Built on demand from a flat int64 array, so recording costs 72 bytes per (step, layer)."""
        n = len(TRACE_FIELDS)
        return [dict(zip(TRACE_FIELDS, self._trace[i:i + n])) for i in range(0, len(self._trace), n)]
