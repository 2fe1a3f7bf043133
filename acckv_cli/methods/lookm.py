"""`lookm`: text-prior eviction plus merge compensation (Wan et al., arXiv 2406.18139; SUSTechBruce/LOOK-M)."""

from __future__ import annotations

from dataclasses import dataclass

from acckv_cli.lazy import torch

from acckv_cli.model.layout import Modality
from acckv_cli.methods.vocab import HEAD_REDUCTIONS
from acckv_cli.methods.base import CompressionMethod, LayerContext, LayerResult, kept_mask
from acckv_cli.methods.h2o import heavy_hitters_and_recent
from acckv_cli.methods.merge import MERGE_RULES, merge_counted, nearest_targets
from acckv_cli.methods.registry import register
from acckv_cli.methods.stash import AttentionNeeds


@register
@dataclass
class LookM(CompressionMethod):
    """LOOK-M in the prefill-once setting (Wan et al., arXiv 2406.18139; SUSTechBruce/LOOK-M).

    Text prior: every protected (text-like) token is kept. The media slots are split
    `recent_ratio / (hh_ratio + recent_ratio)` to the most recent media tokens and the rest to the media
    heavy hitters, scored by H2O accumulated attention Σ_i A[h, i, j] over all prompt queries ([H, L]
    fp32), reduced over the query heads of each KV head ([KV, L]: each KV head keeps its own heavy hitters;
    the reference is per head of an MHA model).

    Merge compensation, per KV head: every evicted media token joins its most key-cosine-similar kept
    token among *all* kept tokens (text, video and audio alike; post-RoPE keys), with LOOK-M's rules
    (`merge.merge_into_kept`): `avg` (mean), `pivot` (each evicted entry first averaged with its target;
    the paper's headline setting) or `weighted` (cosine-weighted, only entries at least as similar as
    the head's mean). Because the target is unrestricted, audio can merge into video slots and vice versa
    (the O2 failure mode), which the per-layer stats count (`cross_modal`, mean over KV heads).
    Keys/values in: [1, KV, L, D]; out: [1, KV, k, D].
    """

    name = "lookm"
    summary = "text-prior heavy hitters + recent window, evicted KV merged into the nearest kept key (Wan et al. 2024)"
    paper = "arXiv 2406.18139"
    hh_ratio: float = 0.1
    recent_ratio: float = 0.1
    merge: str = "pivot"               # LOOK-M's headline setting; avg | pivot | weighted
    head_reduction: str = "kv_mean"

    choices = {"merge": MERGE_RULES, "head_reduction": HEAD_REDUCTIONS}

    def __post_init__(self):
        self.check_choices()
        if self.hh_ratio < 0 or self.recent_ratio < 0 or self.hh_ratio + self.recent_ratio <= 0:
            raise ValueError("lookm hh_ratio and recent_ratio must be ≥ 0 with a positive sum")

    @property
    def recent_share(self) -> float:
        return self.recent_ratio / (self.hh_ratio + self.recent_ratio)

    def attention_needs(self) -> AttentionNeeds:
        return AttentionNeeds(all_rows=frozenset({"none"}))

    def score(self, ctx: LayerContext) -> torch.Tensor:
        """H2O accumulated attention from all prompt queries, reduced over heads: fp32 [KV, L] or [L]."""
        return ctx.reduce(ctx.accumulate(ctx.rows("all")), self.head_reduction)

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        keep, recent = heavy_hitters_and_recent(ctx, self.score(ctx), self.media_slots(ctx), self.recent_share)
        media = ~ctx.protected
        stats = {"recent": int(recent.sum()), "heavy": int(keep.shape[-1] - ctx.protected.sum() - recent.sum()),
                 "cross_modal": self._cross_modal(ctx, keep)}
        # weighed by the tokens each entry already stands for (a streamed cache merges again every step)
        keys, values, merged, counts = merge_counted(ctx.keys, ctx.values, keep, media, rule=self.merge,
                                                     counts=ctx.counts)
        return LayerResult(keep, keys, values, {**stats, "merged": merged.get("all", 0.0)}, counts)

    @staticmethod
    def _cross_modal(ctx: LayerContext, keep: torch.Tensor) -> dict:
        """Evicted tokens by (source → target) modality, mean over KV heads: audio→video, video→audio, →text."""
        rows = keep[None].expand(ctx.keys.shape[1], -1) if keep.ndim == 1 else keep
        audio, video = int(Modality.AUDIO), int(Modality.VIDEO)
        totals = {"audio_to_video": 0.0, "video_to_audio": 0.0, "to_text": 0.0}
        for h, kept in enumerate(rows):
            evicted = (~ctx.protected & ~kept_mask(kept, ctx.length)[0]).nonzero().squeeze(1)
            if evicted.numel() == 0:
                continue
            target = ctx.modality[kept][nearest_targets(ctx.keys[:, h:h + 1], evicted, kept)[0]]
            source = ctx.modality[evicted]
            totals["audio_to_video"] += float(((source == audio) & (target == video)).sum())
            totals["video_to_audio"] += float(((source == video) & (target == audio)).sum())
            totals["to_text"] += float(((target != audio) & (target != video)).sum())
        return {k: round(v / rows.shape[0], 3) for k, v in totals.items()}
