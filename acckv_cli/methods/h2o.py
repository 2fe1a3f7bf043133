"""`h2o`: heavy hitters plus a recent window, selected once after prefill (Zhang et al., arXiv 2306.14048)."""

from __future__ import annotations

from dataclasses import dataclass

from acckv_cli.lazy import torch

from acckv_cli.methods.vocab import HEAD_REDUCTIONS
from acckv_cli.methods.base import LayerContext, LayerResult, ScorerMethod, keep_top, recent_media
from acckv_cli.methods.registry import register
from acckv_cli.methods.stash import AttentionNeeds

NORMALIZATIONS = ("none", "visible_queries")


def visible_query_count(length: int, device=None) -> torch.Tensor:
    """n − j: how many causal queries can see key j. Shape [L]."""
    return torch.arange(length, 0, -1, dtype=torch.float32, device=device)


@register
@dataclass
class H2O(ScorerMethod):
    """Heavy-Hitter Oracle in the prefill-once setting (as LOOK-M and AccKV's comparisons run it).

    Score of key j = Σ_i A[h, i, j] over all prompt queries (column sums of the causal attention, computed
    in query chunks; H2O's `utils_real_drop`), reduced over the query heads of each KV head
    (`head_reduction="kv_mean"` → [KV, L], a set per KV head; the reference is per head of an MHA model).
    The media budget is split `recent_share` to the most recent media tokens (H2O's recent window; text is
    always kept here, so the window holds media only) and the rest to each KV head's top heavy hitters.

    recent_share: fraction of the media slots for the recent window (H2O's hh_size = recent_size → 0.5).
    normalize:    `none` (H2O) or `visible_queries` (divide by n − j, as kvpress's ObservedAttention).
    """

    name = "h2o"
    summary = "heavy hitters (accumulated attention, per KV head) + recent window (Zhang et al. 2023)"
    paper = "arXiv 2306.14048"
    recent_share: float = 0.5
    normalize: str = "none"
    head_reduction: str = "kv_mean"

    choices = {"normalize": NORMALIZATIONS, "head_reduction": HEAD_REDUCTIONS}

    def __post_init__(self):
        self.check_choices()
        if not 0 <= self.recent_share <= 1:
            raise ValueError(f"h2o recent_share must lie in [0, 1], got {self.recent_share}")

    def attention_needs(self) -> AttentionNeeds:
        return AttentionNeeds(all_rows=frozenset({"none"}))

    def score(self, ctx: LayerContext) -> torch.Tensor:
        scores = ctx.reduce(ctx.accumulate(ctx.rows("all")), self.head_reduction)
        if self.normalize == "visible_queries":
            scores = scores / visible_query_count(ctx.length, scores.device)
        return scores

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        keep, _ = heavy_hitters_and_recent(ctx, self.score(ctx), self.media_slots(ctx), self.recent_share)
        return LayerResult(keep)


def heavy_hitters_and_recent(ctx: LayerContext, scores: torch.Tensor, slots: int, recent_share: float):
    """Protected tokens + the last `recent_share` of the media slots + the top-scored rest (H2O, LOOK-M).

    `scores` [L] or [KV, L]. Returns (sorted kept indices [k] or [KV, k], mask [L] of the recent media).
    """
    media = ~ctx.protected
    recent = recent_media(media, round(slots * recent_share))
    keep = keep_top(scores, ctx.protected | recent, slots - int(recent.sum()), media & ~recent)
    return keep, recent
