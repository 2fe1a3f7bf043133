"""`acckv`: Adaptive-Focusing and Cross-Calibration KV compression for audio-video LLMs.

Jiang, Chen, Li et al., "AccKV: Towards Efficient Audio-Video LLMs Inference via Adaptive-Focusing and
Cross-Calibration KV Cache Optimization", arXiv 2511.11106 (AAAI 2026). No official code exists; this
follows ../shared/docs/acckv-method.md §3–§7, and every point the paper leaves open is a field below.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from acckv_cli.layout import Modality
from acckv_cli.methods.attention import reduce_heads
from acckv_cli.methods.base import CompressionMethod, LayerContext, LayerResult
from acckv_cli.methods.merge import mean_cosine_to_anchors, merge_mean
from acckv_cli.methods.registry import register
from acckv_cli.methods.stash import AttentionNeeds

VIDEO, AUDIO = Modality.VIDEO, Modality.AUDIO


def redistributed_scores(ctx: LayerContext, rows: torch.Tensor, mode: str, head_reduction: str) -> torch.Tensor:
    """Attention Redistribution (A-R): s_j = Σ_{i∈rows} A[i,j]·(i+1) / c_j, averaged over heads → [L].

    mode: `paper` (c_j = n − j), `visible_count` (c_j = rows that can see j), `column_mean` (row weight 1,
    c_j = n − j, i.e. kvpress's ObservedAttention), `none` (raw accumulated attention; the −A-R ablation).
    With uniform attention A[i,j] = 1/(i+1) and all rows, `paper` gives s_j = 1 for every j.
    """
    n = ctx.length
    device = ctx.keys.device
    position = torch.arange(n, dtype=torch.float32, device=device)
    weighting = "position" if mode in ("paper", "visible_count") else "none"
    scores = reduce_heads(ctx.accumulate(rows, weighting), head_reduction)
    if mode in ("paper", "column_mean"):
        return scores / (n - position)
    if mode == "visible_count":
        # #rows ≥ j by binary search over the sorted rows: O((L + |rows|)·log|rows|), not an L × |rows| matrix.
        ordered = rows.to(device).sort().values
        below = torch.searchsorted(ordered, torch.arange(n, device=device, dtype=ordered.dtype))
        visible = (ordered.numel() - below).clamp(min=1)
        return scores / visible
    if mode == "none":
        return scores
    raise ValueError(f"unknown redistribution {mode!r} (paper, visible_count, column_mean, none)")


@register
@dataclass
class AccKV(CompressionMethod):
    """AccKV compression of one layer's prompt KV (run once after prefill).

    Tensors: keys/values [1, KV, L, D]; scores s [L] fp32; the result keeps the protected text plus,
    per media modality m, k_m top-scored tokens (the others merged into them if
    merge_target=nearest_kept), minus low-priority tokens
    removed by calibration.

    Components (each can be switched off for the ablations of the paper's Table 6):
      redistribution  A-R score form; `none` switches A-R off.
      focusing        A-F: per-layer modality weights W_v, W_a from text→modality attention.
      merge_target    C-C step 1: `nearest_kept` (same modality) or `none`.
      calibration     C-C step 2: evict low-priority tokens whose mean key cosine to the
                      high-priority keys is below `tau`.
      cross_modal_merge  debug switch: merge across modalities (reproduces the paper's collapse, O2).
    Open points (acckv-method.md §7): score_queries, head_reduction, focus_stat, budget_split, tau_mode,
    min_keep_low, refill. Defaults were chosen on SynthAVQA's validation split (docs/acckv-defaults.md).
    """

    name = "acckv"
    summary = "AccKV: redistributed attention, per-layer modality focus, cross-calibration (intra-modal merge optional)"
    paper = "arXiv 2511.11106"
    score_queries: str = "text"        # text | all | question | window:W
    redistribution: str = "paper"      # paper | visible_count | column_mean | none (measured: docs/acckv-defaults.md)
    head_reduction: str = "mean"       # mean | max (one selection shared by all KV heads)
    focusing: bool = True
    focus_stat: str = "mean_hat"       # mean_hat | sum_hat
    budget_split: str = "proportional"  # proportional | joint | proportional_by_count
    merge_target: str = "none"         # nearest_kept | none (merging cost 13.7 points at 10 %: docs/acckv-defaults.md)
    cross_modal_merge: bool = False
    calibration: bool = True
    tau: float = 0.25                  # with tau_mode=quantile: evict the lowest 25 % (measured)
    tau_mode: str = "quantile"         # absolute | quantile (evict the bottom `tau` fraction)
    min_keep_low: int = 0
    refill: str = "none"               # none | high

    def attention_needs(self) -> AttentionNeeds:
        weighting = "position" if self.redistribution in ("paper", "visible_count") else "none"
        if self.score_queries == "all":
            return AttentionNeeds(all_rows=frozenset({weighting}))
        if self.score_queries.startswith("window:"):
            return AttentionNeeds(tail=max(64, int(self.score_queries.split(":", 1)[1])))
        return AttentionNeeds()

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        scores = redistributed_scores(ctx, ctx.rows(self.score_queries), self.redistribution, self.head_reduction)
        weights = self.modality_weights(ctx, scores)
        high = max(weights, key=weights.get) if weights else None
        if self.focusing:
            for kind, w in weights.items():
                scores = torch.where(ctx.mask(kind), scores * w, scores)
        quota = self.split_budget(ctx, weights, scores)
        chosen = {kind: self.top_of(ctx, kind, scores, k) for kind, k in quota.items()}
        keep = torch.cat([ctx.protected.nonzero().squeeze(1), *chosen.values()]).sort().values
        keys, values, merged = self.merge(ctx, keep, chosen)
        stats = {"weights": {k.label: round(float(w), 4) for k, w in weights.items()},
                 "priority": high.label if high is not None else None,
                 "quota": {k.label: int(v) for k, v in quota.items()},
                 "merged": merged}
        low = next((k for k in weights if k != high), None)
        if self.calibration and low is not None and chosen[low].numel() and chosen[high].numel():
            keep, keys, values, stats["calibration"] = self.calibrate(ctx, keep, keys, values, chosen, high, low, scores)
        return LayerResult(keep, keys, values, stats)

    # --- A-F -------------------------------------------------------------------------------------------
    def modality_weights(self, ctx: LayerContext, scores: torch.Tensor) -> dict[Modality, float]:
        """W_m = S̄_m / Σ S̄, with S̄_m the statistic of the text queries' redistributed attention on m."""
        present = [k for k in (VIDEO, AUDIO) if bool(ctx.mask(k).any())]
        if len(present) < 2:
            return {k: 1.0 for k in present}
        text = scores if self.score_queries == "text" else redistributed_scores(
            ctx, ctx.rows("text"), self.redistribution, self.head_reduction)
        reduce = {"mean_hat": torch.mean, "sum_hat": torch.sum}[self.focus_stat]
        stat = {k: float(reduce(text[ctx.mask(k)])) for k in present}
        total = sum(stat.values())
        if total <= 0:
            return {k: 1.0 / len(present) for k in present}
        return {k: v / total for k, v in stat.items()}

    def split_budget(self, ctx: LayerContext, weights: dict, scores: torch.Tensor) -> dict[Modality, int]:
        """Per-modality slot counts k_m (sum = media slots), capped at each modality's token count."""
        slots = self.media_slots(ctx)
        counts = {k: int(ctx.mask(k).sum()) for k in weights}
        if not weights:
            return {}
        if self.budget_split == "joint" or not self.focusing:
            media = ctx.mask(VIDEO, AUDIO)
            top = scores.masked_fill(~media, float("-inf")).topk(min(slots, int(media.sum()))).indices
            return {k: int(ctx.mask(k)[top].sum()) for k in weights}
        if self.budget_split == "proportional":
            share = dict(weights)
        elif self.budget_split == "proportional_by_count":
            share = {k: weights[k] * counts[k] for k in weights}
        else:
            raise ValueError(f"unknown budget_split {self.budget_split!r}")
        total = sum(share.values()) or 1.0
        kinds = list(weights)
        quota = {k: int(round(slots * share[k] / total)) for k in kinds[:-1]}
        quota[kinds[-1]] = max(0, slots - sum(quota.values()))
        quota = {k: min(counts[k], q) for k, q in quota.items()}
        return _give_overflow(quota, counts, slots)

    @staticmethod
    def top_of(ctx: LayerContext, kind: Modality, scores: torch.Tensor, k: int) -> torch.Tensor:
        idx = ctx.mask(kind).nonzero().squeeze(1)
        if k <= 0:
            return idx[:0]
        return idx[scores[idx].topk(min(k, idx.numel())).indices].sort().values

    # --- C-C step 1 ------------------------------------------------------------------------------------
    def merge(self, ctx: LayerContext, keep: torch.Tensor, chosen: dict):
        if self.merge_target == "none":
            return None, None, {k.label: 0 for k in chosen}
        if self.merge_target != "nearest_kept":
            raise ValueError(f"unknown merge_target {self.merge_target!r} (nearest_kept or none)")
        kept_mask = torch.zeros(ctx.length, dtype=torch.bool, device=keep.device)
        kept_mask[keep] = True
        if self.cross_modal_merge:
            media = ctx.mask(VIDEO, AUDIO)
            groups = [((media & kept_mask).nonzero().squeeze(1), (media & ~kept_mask).nonzero().squeeze(1))]
            names = ["media"]
        else:
            groups = [(chosen[k], (ctx.mask(k) & ~kept_mask).nonzero().squeeze(1)) for k in chosen]
            names = [k.label for k in chosen]
        keys, values, merged = merge_mean(ctx.keys, ctx.values, keep, groups)
        return keys, values, dict(zip(names, merged))

    # --- C-C step 2 ------------------------------------------------------------------------------------
    def calibrate(self, ctx, keep, keys, values, chosen, high, low, scores):
        """Evict low-priority tokens whose mean key cosine to the kept high-priority keys is below τ."""
        keys = keys if keys is not None else ctx.keys.index_select(2, keep)
        values = values if values is not None else ctx.values.index_select(2, keep)
        low_slot = torch.searchsorted(keep, chosen[low])
        c = mean_cosine_to_anchors(keys, low_slot, torch.searchsorted(keep, chosen[high]))
        drop = self.calibration_drop(c)
        dropped = int(drop.sum())
        stats = {"evicted": dropped, "mean_cos": round(float(c.mean()), 4), "low": low.label}
        survivors = torch.ones(keep.numel(), dtype=torch.bool, device=keep.device)
        survivors[low_slot[drop]] = False
        keep, keys, values = keep[survivors], keys[:, :, survivors], values[:, :, survivors]
        if self.refill == "high" and dropped:
            keep, keys, values, stats["refilled"] = self.refill_high(ctx, keep, keys, values, high, scores, dropped)
        return keep, keys, values, stats

    def calibration_drop(self, c: torch.Tensor) -> torch.Tensor:
        if self.tau_mode == "absolute":
            drop = c < self.tau
        elif self.tau_mode == "quantile":
            drop = torch.zeros_like(c, dtype=torch.bool)
            n = int(self.tau * c.numel())
            if n:
                drop[c.topk(n, largest=False).indices] = True
        else:
            raise ValueError(f"unknown tau_mode {self.tau_mode!r} (absolute or quantile)")
        if self.min_keep_low > 0 and int((~drop).sum()) < self.min_keep_low:
            drop[c.topk(min(self.min_keep_low, c.numel())).indices] = False
        return drop

    @staticmethod
    def refill_high(ctx, keep, keys, values, high, scores, n):
        """Give the slots freed by calibration to the next-best high-priority tokens (unmerged)."""
        candidates = ctx.mask(high).clone()
        candidates[keep] = False
        idx = candidates.nonzero().squeeze(1)
        extra = idx[scores[idx].topk(min(n, idx.numel())).indices] if idx.numel() else idx
        all_keep = torch.cat([keep, extra])
        order = all_keep.argsort()
        keys = torch.cat([keys, ctx.keys.index_select(2, extra)], 2)[:, :, order]
        values = torch.cat([values, ctx.values.index_select(2, extra)], 2)[:, :, order]
        return all_keep[order], keys, values, int(extra.numel())


def _give_overflow(quota: dict, counts: dict, slots: int) -> dict:
    """Move slots a modality cannot use (fewer tokens than its quota) to the other one; fix rounding."""
    spare = slots - sum(quota.values())
    for kind in sorted(quota, key=lambda k: counts[k] - quota[k], reverse=True):
        take = max(0, min(spare, counts[kind] - quota[kind]))
        quota[kind] += take
        spare -= take
    return quota
