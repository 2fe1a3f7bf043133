"""`h2o`: heavy hitters plus a recent window, selected once after prefill (Zhang et al., arXiv 2306.14048)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from acckv_cli.methods.attention import reduce_heads
from acckv_cli.methods.base import LayerContext, LayerResult, ScorerMethod, keep_top, recent_media
from acckv_cli.methods.registry import register
from acckv_cli.methods.stash import AttentionNeeds


def visible_query_count(length: int, device=None) -> torch.Tensor:
    """n − j: how many causal queries can see key j. Shape [L]."""
    return torch.arange(length, 0, -1, dtype=torch.float32, device=device)


@register
@dataclass
class H2O(ScorerMethod):
    """Heavy-Hitter Oracle in the prefill-once setting (acckv-method.md §10.4).

    Score of key j = Σ_i A[i, j] over all prompt queries (column sums of the causal attention, computed in
    query chunks), averaged over heads → [L]. The media budget is split `recent_share` to the most recent
    media tokens and the rest to the top heavy hitters.

    recent_share: fraction of the media slots for the recent window (LOOK-M's scripts: 0.1 + 0.1 → 0.5).
    normalize:    `none` (original) or `visible_queries` (divide by n − j, as kvpress's ObservedAttention).
    """

    name = "h2o"
    summary = "heavy hitters (accumulated attention) + recent window (Zhang et al. 2023)"
    recent_share: float = 0.5
    normalize: str = "none"
    head_reduction: str = "mean"

    def attention_needs(self) -> AttentionNeeds:
        return AttentionNeeds(all_rows=frozenset({"none"}))

    def score(self, ctx: LayerContext) -> torch.Tensor:
        rows = ctx.rows("all")
        scores = reduce_heads(ctx.accumulate(rows), self.head_reduction)
        if self.normalize == "visible_queries":
            scores = scores / visible_query_count(ctx.length, scores.device)
        elif self.normalize != "none":
            raise ValueError(f"h2o normalize must be none or visible_queries, got {self.normalize!r}")
        return scores

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        keep, _ = heavy_hitters_and_recent(ctx, self.score(ctx), self.media_slots(ctx), self.recent_share)
        return LayerResult(keep)


def heavy_hitters_and_recent(ctx: LayerContext, scores: torch.Tensor, slots: int, recent_share: float):
    """Protected tokens + the last `recent_share` of the media slots + the top-scored rest (H2O, LOOK-M).

    Returns (sorted kept indices [k], mask [L] of the recent media tokens).
    """
    media = ~ctx.protected
    recent = recent_media(media, round(slots * recent_share))
    keep = keep_top(scores, ctx.protected | recent, slots - int(recent.sum()), media & ~recent)
    return keep, recent

