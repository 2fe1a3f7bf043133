"""`snapkv`: observation-window scoring with pooling (Li et al., arXiv 2404.14469)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from acckv_cli.methods.attention import reduce_heads
from acckv_cli.methods.base import LayerContext, LayerResult, ScorerMethod, keep_top, recent_media
from acckv_cli.methods.registry import register
from acckv_cli.methods.stash import AttentionNeeds


@register
@dataclass
class SnapKV(ScorerMethod):
    """SnapKV in the prefill-once setting (acckv-method.md §10.5).

    Score of key j = mean attention from the last `window_size` prompt queries, smoothed by a 1-D average
    pool (`kernel_size`, stride 1, same padding), averaged over heads → [L]. Media tokens inside the
    window are kept as part of the window; the rest compete for the remaining slots.

    window: `size` (the last `window_size` tokens) or `question` (the text after the media).
    """

    name = "snapkv"
    summary = "observation-window attention, pooled (Li et al. 2024)"
    window_size: int = 64
    kernel_size: int = 5
    window: str = "size"
    head_reduction: str = "mean"

    def attention_needs(self) -> AttentionNeeds:
        return AttentionNeeds(tail=max(64, self.window_size))

    def window_rows(self, ctx: LayerContext) -> torch.Tensor:
        if self.window == "question":
            return ctx.rows("text")
        if self.window == "size":
            return ctx.rows(f"window:{self.window_size}")
        raise ValueError(f"snapkv window must be size or question, got {self.window!r}")

    def score(self, ctx: LayerContext) -> torch.Tensor:
        rows = self.window_rows(ctx)
        scores = ctx.accumulate(rows) / max(rows.numel(), 1)              # [H, L]
        scores = F.avg_pool1d(scores[:, None], self.kernel_size, 1, self.kernel_size // 2,
                              count_include_pad=False)[:, 0]
        return reduce_heads(scores, self.head_reduction)

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        slots = self.media_slots(ctx)
        media = ~ctx.protected
        in_window = torch.zeros_like(media)
        in_window[self.window_rows(ctx)] = True
        forced = media & in_window
        if int(forced.sum()) > slots:  # the window alone exceeds the budget: keep its most recent part
            forced = recent_media(forced, slots)
        keep = keep_top(self.score(ctx), ctx.protected | forced, slots - int(forced.sum()), media & ~forced)
        return LayerResult(keep)
