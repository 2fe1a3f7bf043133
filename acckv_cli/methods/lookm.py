"""`lookm`: text-prior eviction plus merge compensation (Wan et al., arXiv 2406.18139; SUSTechBruce/LOOK-M)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from acckv_cli.layout import Modality
from acckv_cli.methods.attention import reduce_heads
from acckv_cli.methods.base import CompressionMethod, LayerContext, LayerResult
from acckv_cli.methods.h2o import heavy_hitters_and_recent
from acckv_cli.methods.merge import merge_mean, nearest_targets
from acckv_cli.methods.registry import register
from acckv_cli.methods.stash import AttentionNeeds

MERGES = ("avg", "pivot", "weighted")


@register
@dataclass
class LookM(CompressionMethod):
    """LOOK-M in the prefill-once setting (acckv-method.md §10.7).

    Text prior: every protected (text-like) token is kept. The media slots are split
    `recent_ratio / (hh_ratio + recent_ratio)` to the most recent media tokens and the rest to the media
    heavy hitters, scored by H2O accumulated attention Σ_i A[h, i, j] over all prompt queries ([H, L],
    fp32), reduced over heads ([L]) so that every KV head keeps the same tokens.

    Merge compensation (`merge = "avg"`): for each KV head, every evicted media token is averaged into
    its most key-cosine-similar kept token among *all* kept tokens (text, video and audio alike; post-RoPE
    keys). A kept slot becomes the mean of itself and its assigned tokens, for keys and values alike.
    Keys/values in: [1, KV, L, D]; out: [1, KV, k, D] aligned with `keep`. Because the target is
    unrestricted, audio can merge into video slots and vice versa (the O2 failure mode), which the
    per-layer stats count (`cross_modal`, mean over KV heads).

    Not implemented: `pivot` and `weighted` merges (LOOK-M's other variants) raise ValueError.
    """

    name = "lookm"
    summary = "text-prior heavy hitters + recent window, evicted KV merged into the nearest kept key (Wan et al. 2024)"
    paper = "arXiv 2406.18139"
    hh_ratio: float = 0.1
    recent_ratio: float = 0.1
    merge: str = "avg"
    head_reduction: str = "mean"

    def __post_init__(self):
        if self.merge not in MERGES:
            raise ValueError(f"lookm merge must be one of {', '.join(MERGES)}, got {self.merge!r}")
        if self.merge != "avg":
            raise ValueError(f"lookm merge {self.merge!r} is not implemented; use merge=avg")
        if self.hh_ratio < 0 or self.recent_ratio < 0 or self.hh_ratio + self.recent_ratio <= 0:
            raise ValueError("lookm hh_ratio and recent_ratio must be ≥ 0 with a positive sum")

    @property
    def recent_share(self) -> float:
        return self.recent_ratio / (self.hh_ratio + self.recent_ratio)

    def attention_needs(self) -> AttentionNeeds:
        return AttentionNeeds(all_rows=frozenset({"none"}))

    def score(self, ctx: LayerContext) -> torch.Tensor:
        """H2O accumulated attention from all prompt queries, reduced over heads: fp32 [L]."""
        return reduce_heads(ctx.accumulate(ctx.rows("all")), self.head_reduction)

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        keep, recent = heavy_hitters_and_recent(ctx, self.score(ctx), self.media_slots(ctx), self.recent_share)
        media = ~ctx.protected
        kept = torch.zeros_like(media)
        kept[keep] = True
        evicted = (media & ~kept).nonzero().squeeze(1)
        stats = {"recent": int(recent.sum()), "heavy": int(keep.numel() - ctx.protected.sum() - recent.sum())}
        # One nearest-kept search serves both the statistics and the merge (it was computed twice; issue #6).
        nearest = nearest_targets(ctx.keys, evicted, keep) if evicted.numel() else None
        stats["cross_modal"] = self._cross_modal(ctx, keep, evicted, nearest)
        if evicted.numel() == 0:
            return LayerResult(keep, stats={**stats, "merged": 0})
        keys, values, merged = merge_mean(ctx.keys, ctx.values, keep, [(keep, evicted)], nearest=[nearest])
        return LayerResult(keep, keys, values, {**stats, "merged": merged[0]})

    @staticmethod
    def _cross_modal(ctx: LayerContext, keep: torch.Tensor, evicted: torch.Tensor,
                     nearest: torch.Tensor | None = None) -> dict:
        """Evicted tokens by (source → target) modality, mean over KV heads: audio→video, video→audio, →text.

        `nearest`: `nearest_targets(ctx.keys, evicted, keep)` when the caller already has it.
        """
        if evicted.numel() == 0:
            return {"audio_to_video": 0.0, "video_to_audio": 0.0, "to_text": 0.0}
        if nearest is None:
            nearest = nearest_targets(ctx.keys, evicted, keep)
        target = ctx.modality[keep][nearest]                                     # [KV, e] target modality
        source = ctx.modality[evicted][None, :]                                  # [1, e]
        audio, video = int(Modality.AUDIO), int(Modality.VIDEO)
        heads = target.shape[0]

        def per_head(hit: torch.Tensor) -> float:
            return round(float(hit.sum()) / heads, 3)

        return {"audio_to_video": per_head((source == audio) & (target == video)),
                "video_to_audio": per_head((source == video) & (target == audio)),
                "to_text": per_head((target != audio) & (target != video))}
