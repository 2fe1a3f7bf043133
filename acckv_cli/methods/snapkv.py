"""`snapkv`: observation-window attention with pooling, per KV head (Li et al., arXiv 2404.14469)."""

from __future__ import annotations

from dataclasses import dataclass

from acckv_cli.lazy import functional as F, torch

from acckv_cli.methods.vocab import HEAD_REDUCTIONS
from acckv_cli.methods.base import LayerContext, LayerResult, ScorerMethod, keep_top, recent_media
from acckv_cli.methods.registry import register
from acckv_cli.methods.stash import AttentionNeeds

WINDOWS = ("size", "question")


@register
@dataclass
class SnapKV(ScorerMethod):
    """SnapKV in the prefill-once setting, as kvpress's `SnapKVPress` computes it.

    Observation window: the last `window_size` rows of the compressed part (`window="size"`; under the
    query-aware protocol that is the question plus the end of the media, under `context` the end of the
    media), or the text after the media (`window="question"`, a project option). Scores of the keys
    *before* the window: mean attention of the window rows ([H, L − W] fp32), smoothed by
    `avg_pool1d(kernel_size, stride 1, padding kernel_size // 2)` with the zero padding counted in the
    average (PyTorch's default, as kvpress), then averaged over the query heads of each KV head
    (`head_reduction="kv_mean"` → [KV, L − W]; `mean` gives one set for all heads). The window itself is
    always kept (kvpress pads its scores with max + 1); every KV head keeps its own top media entries
    among the rest. Text is always kept on top of the media budget (the project's budget rule); media
    inside the window count against it, and when they alone exceed it the most recent are kept.
    """

    name = "snapkv"
    summary = "observation-window attention, pooled, top-k per KV head (Li et al. 2024; kvpress's SnapKV)"
    paper = "arXiv 2404.14469"
    window_size: int = 64
    kernel_size: int = 5
    window: str = "size"
    head_reduction: str = "kv_mean"

    choices = {"window": WINDOWS, "head_reduction": HEAD_REDUCTIONS}

    def __post_init__(self):
        self.check_choices()
        if self.window_size < 1 or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"{self.name} needs window_size ≥ 1 and an odd kernel_size, got "
                             f"{self.window_size} and {self.kernel_size}")

    def attention_needs(self) -> AttentionNeeds:
        return AttentionNeeds(tail=max(64, self.window_size))

    def window_rows(self, ctx: LayerContext) -> torch.Tensor:
        if self.window == "question":
            return ctx.rows("text")
        return ctx.rows(f"window:{self.window_size}")

    def score(self, ctx: LayerContext) -> torch.Tensor:
        """[KV, L] (or [L]): pooled window attention of the keys before the window; window keys score +inf."""
        rows = self.window_rows(ctx)
        first = int(rows.min()) if rows.numel() else ctx.length
        if first == 0:  # a prompt (or streaming step) no longer than the window: every key is in it
            shape = (ctx.keys.shape[1],) if self.head_reduction.startswith("kv_") else ()
            return torch.full((*shape, ctx.length), float("inf"), device=ctx.keys.device)
        mean = ctx.accumulate(rows)[:, :first] / max(rows.numel(), 1)         # [H, L − W]
        pooled = F.avg_pool1d(mean[:, None], self.kernel_size, 1, self.kernel_size // 2)[:, 0]
        scores = ctx.reduce(pooled, self.head_reduction)
        window = torch.full((*scores.shape[:-1], ctx.length - first), float("inf"), device=scores.device)
        return torch.cat([scores, window], dim=-1)

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        slots = self.media_slots(ctx)
        media = ~ctx.protected
        in_window = torch.zeros_like(media)
        in_window[self.window_rows(ctx)] = True
        forced = media & in_window
        if int(forced.sum()) > slots:  # the window alone exceeds the budget: keep its most recent part
            forced = recent_media(forced, slots)
        keep = keep_top(self.score(ctx), ctx.protected | forced, slots - int(forced.sum()), media & ~in_window)
        return LayerResult(keep)
