"""`acckv`: Adaptive-Focusing and Cross-Calibration KV compression for audio-video LLMs.

Jiang, Chen, Li et al., "AccKV: Towards Efficient Audio-Video LLMs Inference via Adaptive-Focusing and
Cross-Calibration KV Cache Optimization", arXiv 2511.11106 (AAAI 2026). No official code exists; this
reconstructs the paper (docs/acckv-method.md), and every point it leaves open is a field below
(docs/acckv-choices.md says which reading each value is; docs/acckv-defaults.md why the defaults are
what they are).
"""

from __future__ import annotations

from dataclasses import dataclass

from acckv_cli.lazy import functional as F, torch

from acckv_cli.model.layout import Modality
from acckv_cli.methods.vocab import HEAD_REDUCTIONS
from acckv_cli.methods.base import CompressionMethod, LayerContext, LayerResult, gather_entries
from acckv_cli.methods.diversity import marginal_relevance_order
from acckv_cli.methods.merge import MERGE_RULES, kept_counts, mean_cosine_to_anchors, merge_counted
from acckv_cli.methods.pyramidkv import pyramid_budgets
from acckv_cli.methods.registry import register
from acckv_cli.methods.salience import key_salience, standardised
from acckv_cli.methods.uniform import spread_in_time
from acckv_cli.methods.stash import AttentionNeeds

VIDEO, AUDIO = Modality.VIDEO, Modality.AUDIO
REDISTRIBUTIONS = ("visible_count", "paper", "column_mean", "none")
BUDGET_SPLITS = ("proportional_by_count", "proportional", "joint")
MERGE_TARGETS = ("none", "nearest_kept", "centroid")
TAU_MODES = ("absolute", "quantile")
COVERAGES = ("none", "time", "salient_time")
FOCUS_STATS = ("mean_hat", "sum_hat")
REFILLS = ("none", "high")
LAYER_SCHEDULES = ("flat", "pyramid")


def redistributed_scores(ctx: LayerContext, rows: torch.Tensor, mode: str, head_reduction: str) -> torch.Tensor:
    """Attention Redistribution (A-R): s_j = Σ_{i∈rows} A[i,j]·(i+1) / c_j → [L] or [KV, L] fp32.

    (i+1)·A[i,j] is the attention relative to a uniform row over its i+1 visible keys; c_j turns the sum
    into a mean over the summed rows that can see key j:
      visible_count  c_j = |{i ∈ rows : i ≥ j}| — uniform attention scores 1 for every key whatever the
                     rows (the property the paper's normalisation is for; with rows = all it is n − j);
      paper          c_j = n − j literally — equal to visible_count when rows = all; over the text rows
                     after the media it multiplies media key j by |rows| / (n − j), a recency prior;
      column_mean    row weight 1, c_j = n − j (kvpress's ObservedAttention);
      none           raw accumulated attention Σ A[i,j] (the −A-R ablation).
    """
    n = ctx.length
    device = ctx.keys.device
    position = torch.arange(n, dtype=torch.float32, device=device)
    weighting = "position" if mode in ("paper", "visible_count") else "none"
    scores = ctx.reduce(ctx.accumulate(rows, weighting), head_reduction)
    if mode in ("paper", "column_mean"):
        return scores / (n - position)
    if mode == "visible_count":
        # #rows ≥ j by binary search over the sorted rows: O((L + |rows|)·log|rows|), not an L × |rows| matrix.
        ordered = rows.to(device).sort().values
        below = torch.searchsorted(ordered, torch.arange(n, device=device, dtype=ordered.dtype))
        return scores / (ordered.numel() - below).clamp(min=1)
    if mode == "none":
        return scores
    raise ValueError(f"unknown redistribution {mode!r} ({', '.join(REDISTRIBUTIONS)})")


@register
@dataclass
class AccKV(CompressionMethod):
    """AccKV compression of one layer's prompt KV (run once, when the compressed part is prefilled).

    Tensors: keys/values [1, KV, L, D]; scores s [L] (or [KV, L] with a set per KV head) fp32. The result
    keeps the protected text plus, per media modality m, k_m top-scored tokens (C-C step 1 merges the
    others of m into them), minus the low-priority tokens C-C step 2 calibrates away.

    Components (each can be switched off for the paper's Table-6 ablations):
      A-R  redistribution    debiased heavy-hitter score over the `score_queries` rows (`none` = off).
      A-F  focusing          per-layer modality weights W_v, W_a from the text queries' A-R attention:
                             W_m ∝ the per-token statistic `focus_stat` of m; the high-priority modality
                             H is the heavier one. Off: no weights anywhere — one joint top-k over the
                             media, and calibration anchors on the modality with more kept entries.
      C-C  merge_target      step 1, intra-modal merge of the non-selected tokens of m into kept tokens
                             of m: `nearest_kept` (each into its most key-similar kept token, LOOK-M's
                             rule `merge_rule`), `centroid` (all of them averaged into one slot of m,
                             the paper's "merge the unimportant tokens by averaging" read literally) or
                             `none`.
           calibration       step 2: evict kept low-priority tokens whose mean key cosine to the kept
                             high-priority keys is below τ (`tau_mode=absolute`, the paper's test; τ =
                             0.6 or 0.9 there) or the lowest fraction τ of them (`quantile`).
      cross_modal_merge      debug switch: merge across modalities (the paper's O2 collapse).
    Open points, as fields: score_queries (text | all | question | window:W), head_reduction (mean: one
    set for all heads | kv_mean: a set per KV head), budget_split (how W becomes per-modality quotas:
    proportional_by_count k_m ∝ W_m·n_m, proportional k_m ∝ W_m, joint = one top-k over W-weighted
    scores), min_keep_low, refill. Beyond the paper (docs/acckv-defaults.md measures each):
      coverage=time          spreads each modality's quota over time bins of `coverage_seconds` in
                             proportion to the tokens of m in each bin (top-ranked within each bin), so a
                             modality's quota cannot all land in one second; `salient_time` weights the
                             bins by how much their tokens stand out instead.
      salience               the ranking inside a modality is z(A-R score) + salience · z(key salience),
                             key salience = 1 − cos(key, the modality's mean key direction) (salience.py):
                             brief sounds among silence and small shapes on a flat background stand out
                             in the keys, while the text rows' attention favours silent tokens (sinks).
      skeleton               that share of each modality's quota is laid evenly over the clip first, as
                             `uniform` lays it; the rest is ranked. Redundant evidence (one long tone, one
                             large shape) is best served by even coverage, brief evidence by the ranking.
      question_contrast      when the question's rows are in the scored part (`query-aware`), subtract that
                             weight × z(A-R score from the other text rows after the media: the closing
                             delimiters and the assistant header, which carry no question) from the ranking,
                             so keys every row attends to (sinks) lose and keys the question singles out win;
                             without question rows (`context`) nothing changes.
      attention_from_depth   layers with index < this share of the depth rank inside a modality by key salience
                             alone (the A-R term dropped): on sparse SynthAVQA the first layers' text-row
                             attention points *away* from brief evidence (benchmarks/where-evidence-is.txt),
                             so adding it there costs recall; A-F and the quotas still use it.
      modality_floor         each modality's quota is at least this fraction of the slots its token count alone
                             would give it (what `random` and `uniform` give it), whatever A-F's weights say: on a
                             model whose text rows attend mostly to video, A-F leaves a sound question 2 of 12
                             slots (measured on the second-seed demo model).
      flat_kurtosis_audio,   a modality whose ranking (z-scored inside it) has kurtosis E[z⁴] below this in a layer
      flat_kurtosis_video    looks redundant — nothing in it stands out, as with one long tone or one large shape —
                             and has its whole quota laid evenly in time (`skeleton` 1, which round 7 measured
                             best on redundant evidence); above it the ranking keeps its share. Measured on the
                             demo model's validation clips, mean over layers: core audio 1.9–4.2 against sparse
                             2.4–11.3, core video 5.5–12.7 against sparse 13.6–36.3 (docs/acckv-defaults.md,
                             round 8). Kurtosis is scale-free, so A-F's weights do not move it.
      diversity              > 0: the ranked share is picked by maximal marginal relevance (diversity.py) instead
                             of by time bins: each pick is the best of ranking − diversity · (largest cosine of
                             its values to anything already kept, the skeleton included), so the share goes to
                             one token of each distinct event before a second token of any (the issue's idea 2).
      pooling                odd kernel > 1: the ranking is averaged over that many neighbours of the same modality
                             (in prompt order: time for audio, raster order inside a frame pair for video), as
                             SnapKV pools its window attention, so a token inside an event outranks a lone spike
                             (the issue's idea 1).
      layer_schedule         `flat`: every layer keeps the same number of media entries; `pyramid`: the
                             media budget falls linearly with depth, largest in layer 0, the total fixed
                             (PyramidKV's schedule, `layer_beta` = its beta; the #21 issue's idea 3).
    """

    name = "acckv"
    summary = "AccKV: redistributed attention, per-layer modality focus, intra-modal merge + cross-calibration"
    paper = "arXiv 2511.11106"
    score_queries: str = "text"
    redistribution: str = "visible_count"
    head_reduction: str = "mean"
    focusing: bool = True
    focus_stat: str = "mean_hat"
    budget_split: str = "proportional_by_count"
    coverage: str = "time"             # beyond the paper; measured: docs/acckv-defaults.md
    coverage_seconds: float = 1.0      # with salience and skeleton (round 4); 0.25 s before
    merge_target: str = "nearest_kept"
    merge_rule: str = "avg"
    cross_modal_merge: bool = False
    calibration: bool = False          # the paper's τ test evicts every low-priority entry here (measured)
    tau: float = 0.6
    tau_mode: str = "absolute"
    min_keep_low: int = 0
    refill: str = "none"
    salience: float = 2.0              # beyond the paper: weight of key salience in the ranking (salience.py)
    skeleton: float = 0.5              # beyond the paper: share of each quota laid evenly in time first
    question_contrast: float = 0.0     # beyond the paper: discount what content-free rows attend to as well
    layer_schedule: str = "flat"       # beyond the paper: media budget per layer (pyramid: more in early layers)
    layer_beta: float = 20.0
    attention_from_depth: float = 0.0  # beyond the paper: layers shallower than this share rank by salience alone
    modality_floor: float = 0.8        # beyond the paper (round 7): each modality keeps ≥ this share of its token share
    flat_kurtosis_audio: float = 3.5   # beyond the paper (round 8): below this ranking kurtosis, lay all of audio's quota evenly
    flat_kurtosis_video: float = 13.0  # the same for video (0 = off)
    diversity: float = 0.0             # beyond the paper (round 9): weight of redundancy with what is kept (0 = time bins)
    pooling: int = 3                   # beyond the paper (round 9): SnapKV-style average over this many neighbours (1 = off)

    choices = {"redistribution": REDISTRIBUTIONS, "head_reduction": HEAD_REDUCTIONS, "focus_stat": FOCUS_STATS,
               "budget_split": BUDGET_SPLITS, "coverage": COVERAGES, "merge_target": MERGE_TARGETS,
               "merge_rule": MERGE_RULES, "tau_mode": TAU_MODES, "refill": REFILLS,
               "layer_schedule": LAYER_SCHEDULES}

    def __post_init__(self):
        self.check_choices()
        if self.score_queries not in ("text", "all", "question") and not (
                self.score_queries.startswith("window:") and self.score_queries[7:].isdigit()):
            raise ValueError(f"acckv score_queries must be text, all, question or window:W, got {self.score_queries!r}")
        if self.tau_mode == "quantile" and not 0 <= self.tau <= 1:
            raise ValueError(f"acckv tau must lie in [0, 1] with tau_mode=quantile, got {self.tau}")
        if not 0 <= self.skeleton <= 1:
            raise ValueError(f"acckv skeleton must lie in [0, 1], got {self.skeleton}")
        if self.coverage_seconds <= 0 or self.min_keep_low < 0 or self.salience < 0 or self.question_contrast < 0:
            raise ValueError("acckv coverage_seconds must be positive, min_keep_low, salience and question_contrast ≥ 0")
        if self.layer_beta < 1:
            raise ValueError(f"acckv layer_beta must be ≥ 1, got {self.layer_beta}")
        if self.pooling < 1 or self.pooling % 2 == 0:
            raise ValueError(f"acckv pooling must be an odd kernel size ≥ 1 (1 = off), got {self.pooling}")
        if self.diversity < 0:
            raise ValueError(f"acckv diversity must be ≥ 0 (0 turns it off), got {self.diversity}")
        if self.flat_kurtosis_audio < 0 or self.flat_kurtosis_video < 0:
            raise ValueError("acckv flat_kurtosis_audio and flat_kurtosis_video must be ≥ 0 (0 turns them off)")
        if not 0 <= self.modality_floor <= 1:
            raise ValueError(f"acckv modality_floor must lie in [0, 1], got {self.modality_floor}")
        if not 0 <= self.attention_from_depth <= 1 or (self.attention_from_depth > 0 and self.salience == 0):
            raise ValueError("acckv attention_from_depth must lie in [0, 1] and needs salience > 0 (the layers "
                             f"below it rank by salience alone), got {self.attention_from_depth}")

    def stream_obstacle(self) -> str:
        if self.layer_schedule != "flat":
            return ("layer_schedule=pyramid sizes each layer from the whole prompt's media, which a streamed "
                    "cache never sees at once")
        return ""

    def media_slots(self, ctx: LayerContext) -> int:
        uniform = ctx.budget.media_tokens(ctx.n_media)
        if self.layer_schedule == "flat":
            return uniform
        return int(pyramid_budgets(ctx.n_media, ctx.n_layers, uniform, self.layer_beta)[ctx.layer_idx])

    def attention_needs(self) -> AttentionNeeds:
        weighting = "position" if self.redistribution in ("paper", "visible_count") else "none"
        if self.score_queries == "all":
            return AttentionNeeds(all_rows=frozenset({weighting}))
        if self.score_queries.startswith("window:"):
            return AttentionNeeds(tail=max(64, int(self.score_queries.split(":", 1)[1])))
        return AttentionNeeds()

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        scores = redistributed_scores(ctx, ctx.rows(self.score_queries), self.redistribution, self.head_reduction)
        weights = self.modality_weights(ctx, scores) if self.focusing else {}
        present = [k for k in (VIDEO, AUDIO) if bool(ctx.mask(k).any())]
        if weights:
            for kind, w in weights.items():
                scores = torch.where(ctx.mask(kind), scores * w, scores)
        quota = self.split_budget(ctx, weights, scores, present)
        ranking = self.pooled(ctx, self.with_salience(ctx, scores, present), present)
        shares = {kind: self.skeleton_share(ctx, kind, ranking) for kind in present}
        chosen = {kind: self.top_of(ctx, kind, ranking, quota[kind], shares[kind]) for kind in present}
        keep = torch.cat([self._protected(ctx, scores), *chosen.values()], dim=-1).sort(dim=-1).values
        keys, values, merged, counts = self.merge(ctx, keep, scores)
        high, low = self.priorities(ctx, weights, chosen)
        stats = {"weights": {k.label: round(float(w), 4) for k, w in weights.items()},
                 "priority": high.label if high is not None else None,
                 "quota": {k.label: int(v) for k, v in quota.items()}, "merged": merged,
                 "skeleton": {k.label: v for k, v in shares.items()}}
        if self.calibration and low is not None and chosen[low].shape[-1] and chosen[high].shape[-1]:
            keep, keys, values, counts, stats["calibration"] = self.calibrate(ctx, keep, keys, values, high, low,
                                                                               scores, counts)
        return LayerResult(keep, keys, values, stats, counts)

    @staticmethod
    def _protected(ctx: LayerContext, scores: torch.Tensor) -> torch.Tensor:
        fixed = ctx.protected.nonzero().squeeze(1)
        return fixed if scores.ndim == 1 else fixed[None].expand(scores.shape[0], -1)

    def with_salience(self, ctx: LayerContext, scores: torch.Tensor, present: list) -> torch.Tensor:
        """The ranking inside each modality: z(attention score) + salience · z(key salience); the scores
        themselves when `salience` is 0. Standardised per modality, so the weight means the same in every
        layer whatever the scale of attention there."""
        baseline = self.content_free_scores(ctx, scores) if self.question_contrast > 0 else None
        if self.salience == 0 and baseline is None:
            return scores
        attention = ctx.layer_idx >= self.attention_from_depth * ctx.n_layers
        ranking = torch.zeros_like(scores, dtype=torch.float32)
        for kind in present:
            mask = ctx.mask(kind)
            if attention:
                ranking = ranking + standardised(scores, mask)
            if self.salience:
                ranking = ranking + self.salience * standardised(key_salience(ctx.keys, mask, per_head=scores.ndim == 2), mask)
            if baseline is not None:
                ranking = ranking - self.question_contrast * standardised(baseline, mask)
        return ranking

    def pooled(self, ctx: LayerContext, ranking: torch.Tensor, present: list) -> torch.Tensor:
        """The ranking averaged over `pooling` neighbours inside each modality (zero padding at its ends, counted
        in the mean, as SnapKV's avg_pool1d does); unchanged with pooling 1."""
        if self.pooling == 1:
            return ranking
        out = ranking.clone().float()
        rows = out[None] if out.ndim == 1 else out
        for kind in present:
            idx = ctx.mask(kind).nonzero().squeeze(1)
            part = rows[:, idx][:, None]                                        # [rows, 1, n]
            rows[:, idx] = F.avg_pool1d(part, self.pooling, 1, self.pooling // 2)[:, 0]
        return out

    def content_free_scores(self, ctx: LayerContext, scores: torch.Tensor) -> torch.Tensor | None:
        """A-R scores from the text rows after the media that are not the question (None without a question
        in the scored part, or when every such row is the question)."""
        text, question = ctx.rows("text"), ctx.rows("question")
        if question.numel() == 0:
            return None
        other = text[~torch.isin(text, question)]
        if other.numel() == 0:
            return None
        return redistributed_scores(ctx, other, self.redistribution, self.head_reduction).reshape(scores.shape)

    # --- A-F -------------------------------------------------------------------------------------------
    def modality_weights(self, ctx: LayerContext, scores: torch.Tensor) -> dict[Modality, float]:
        """W_m = S̄_m / Σ S̄, with S̄_m the statistic of the text queries' redistributed attention on m."""
        present = [k for k in (VIDEO, AUDIO) if bool(ctx.mask(k).any())]
        if len(present) < 2:
            return {k: 1.0 for k in present}
        text = scores if self.score_queries == "text" else redistributed_scores(
            ctx, ctx.rows("text"), self.redistribution, self.head_reduction)
        if text.ndim == 2:  # one priority per layer: the KV heads' scores averaged
            text = text.mean(0)
        reduce = {"mean_hat": torch.mean, "sum_hat": torch.sum}[self.focus_stat]
        stat = {k: float(reduce(text[ctx.mask(k)])) for k in present}
        total = sum(stat.values())
        if total <= 0:
            return {k: 1.0 / len(present) for k in present}
        return {k: v / total for k, v in stat.items()}

    def priorities(self, ctx: LayerContext, weights: dict, chosen: dict) -> tuple[Modality | None, Modality | None]:
        """(high, low) priority modality: A-F's heavier one; without A-F the one with more kept entries."""
        if len(chosen) < 2:
            return (next(iter(chosen), None), None)
        if weights:
            high = max(weights, key=weights.get)
        else:
            high = max(chosen, key=lambda k: chosen[k].shape[-1])
        return high, next(k for k in chosen if k != high)

    def split_budget(self, ctx: LayerContext, weights: dict, scores: torch.Tensor, present: list) -> dict[Modality, int]:
        """Per-modality slot counts k_m (sum = media slots), capped at each modality's token count."""
        slots = self.media_slots(ctx)
        counts = {k: int(ctx.mask(k).sum()) for k in present}
        if not present:
            return {}
        if self.budget_split == "joint" or not weights:
            media = ctx.mask(VIDEO, AUDIO)
            joint = scores if scores.ndim == 1 else scores.mean(0)
            top = joint.masked_fill(~media, float("-inf")).topk(min(slots, int(media.sum()))).indices
            return {k: int(ctx.mask(k)[top].sum()) for k in present}
        share = {k: weights[k] * (counts[k] if self.budget_split == "proportional_by_count" else 1) for k in present}
        total = sum(share.values()) or 1.0
        quota = {k: int(round(slots * share[k] / total)) for k in present[:-1]}
        quota[present[-1]] = max(0, slots - sum(quota.values()))
        quota = {k: min(counts[k], q) for k, q in quota.items()}
        return _give_overflow(self.floored(quota, counts, slots), counts, slots)

    def floored(self, quota: dict, counts: dict, slots: int) -> dict:
        """Raise each modality to `modality_floor` × its token-proportional share, taken from the others."""
        if self.modality_floor <= 0:
            return quota
        total = sum(counts.values()) or 1
        floor = {k: min(counts[k], int(self.modality_floor * slots * counts[k] / total)) for k in quota}
        out = dict(quota)
        for kind in quota:
            need = floor[kind] - out[kind]
            for other in sorted(out, key=lambda k: out[k] - floor[k], reverse=True):
                if need <= 0 or other == kind:
                    continue
                give = min(need, max(0, out[other] - floor[other]))
                out[other] -= give
                out[kind] += give
                need -= give
        return out

    def skeleton_share(self, ctx: LayerContext, kind: Modality, ranking: torch.Tensor) -> float:
        """The share of `kind`'s quota laid evenly in time: all of it when the ranking inside `kind` is flat
        (kurtosis below `flat_kurtosis_<kind>`: nothing stands out, the evidence is redundant), else `skeleton`."""
        threshold = self.flat_kurtosis_video if kind == VIDEO else self.flat_kurtosis_audio
        if threshold > 0 and ranking_kurtosis(ranking, ctx.mask(kind)) < threshold:
            return 1.0
        return self.skeleton

    def top_of(self, ctx: LayerContext, kind: Modality, scores: torch.Tensor, k: int,
               skeleton: float | None = None) -> torch.Tensor:
        """The k best-scored tokens of `kind` ([k], or [KV, k] per KV head), spread over time if `coverage`;
        a `skeleton` share of k (default: the field) is first laid evenly over the clip as `uniform` lays it."""
        skeleton = self.skeleton if skeleton is None else skeleton
        idx = ctx.mask(kind).nonzero().squeeze(1)
        shape = scores.shape[:-1]
        k = min(max(k, 0), idx.numel())
        base = idx[:0]
        if skeleton > 0 and k > 0:
            base = spread_in_time(ctx.layout, ctx.layout.mask(kind), round(skeleton * k)).to(idx.device)
            idx = idx[~torch.isin(idx, base)]
        rest = self.ranked(ctx, idx, scores, k - base.numel(), base)
        if not base.numel():
            return rest
        base = base if not shape else base[None].expand(*shape, -1)
        return torch.cat([base, rest], dim=-1).sort(dim=-1).values

    def ranked(self, ctx: LayerContext, idx: torch.Tensor, scores: torch.Tensor, k: int,
               taken: torch.Tensor | None = None) -> torch.Tensor:
        """The k best-scored of the candidates `idx` ([k] or [KV, k], sorted): by maximal marginal relevance
        against `taken` (already kept) if `diversity`, else by time bin if `coverage`, else a plain top-k."""
        shape = scores.shape[:-1]
        if k <= 0:
            return idx[:0] if not shape else idx[None, :0].expand(*shape, 0)
        k = min(k, idx.numel())
        if self.diversity > 0:
            return self.diverse(ctx, idx, scores, k, taken)
        if self.coverage == "none":
            return idx[scores[..., idx].topk(k, dim=-1).indices].sort(dim=-1).values
        bins = (ctx.layout.time_s.to(idx.device)[idx] / self.coverage_seconds).floor().long()
        _, group, sizes = bins.unique(return_inverse=True, return_counts=True)
        # Rank every token within its time bin by score, then keep each bin's share: one sort for all bins
        # (a loop of one topk per bin cost 2,400 calls per layer on a 10-minute clip).
        by_score = scores[..., idx].sort(dim=-1, descending=True, stable=True).indices          # [..., n]
        by_bin = group[by_score].sort(dim=-1, stable=True).indices                              # bins ascending
        order = by_score.gather(-1, by_bin)        # members grouped by bin, best score first within a bin
        starts = (sizes.cumsum(0) - sizes).repeat_interleave(sizes)
        rank = torch.arange(idx.numel(), device=idx.device) - starts
        if self.coverage == "salient_time":  # bins that stand out get more of the quota
            share = _bin_weights(scores[..., idx], group, len(sizes))
            quota = _weighted_quota(k, share, sizes)
        else:
            quota = _largest_remainder(k, sizes)
        chosen = order[..., rank < quota.repeat_interleave(sizes)]
        return idx[chosen].sort(dim=-1).values

    def diverse(self, ctx: LayerContext, idx: torch.Tensor, scores: torch.Tensor, k: int,
                taken: torch.Tensor | None) -> torch.Tensor:
        """k of the candidates `idx` by maximal marginal relevance on the layer's values (KV heads concatenated),
        redundancy counted against `taken` too; one pick per row of a per-KV-head ranking."""
        values = ctx.values[0].transpose(0, 1).flatten(1)                     # [L, KV·D]
        kept = values[taken] if taken is not None and taken.numel() else None
        rows = scores[None] if scores.ndim == 1 else scores
        picks = [idx[marginal_relevance_order(row[idx], values[idx], k, self.diversity, kept)].sort().values
                 for row in rows]
        return picks[0] if scores.ndim == 1 else torch.stack(picks)

    # --- C-C step 1 ------------------------------------------------------------------------------------
    def merge(self, ctx: LayerContext, keep: torch.Tensor, scores: torch.Tensor):
        """(keys, values, merged entries per modality, tokens per kept entry [KV, k] or None): the kept entries
        with the evicted media merged in, each entry weighed by the tokens it already stands for (`ctx.counts`)."""
        if self.merge_target == "none":
            return None, None, {}, None
        media = ctx.mask(VIDEO, AUDIO)
        labels = None if self.cross_modal_merge else ctx.modality
        if self.merge_target == "nearest_kept":
            keys, values, merged, counts = merge_counted(ctx.keys, ctx.values, keep, media, labels, self.merge_rule,
                                                         ctx.counts)
        else:
            keys, values, merged, counts = centroid_merge(ctx, keep, scores)
        names = {str(int(k)): k.label for k in (VIDEO, AUDIO)}
        return keys, values, {names.get(n, "media" if n == "all" else n): v for n, v in merged.items()}, counts

    # --- C-C step 2 ------------------------------------------------------------------------------------
    def calibrate(self, ctx, keep, keys, values, high, low, scores, counts=None):
        """Evict kept low-priority tokens whose mean key cosine to the kept high-priority keys is below τ.

        With a set per KV head, cosines are per head and every head drops the same number of entries
        (the mean over heads of the number below τ), its least similar ones, so eviction stays one gather.
        `counts` ([KV, k], tokens per kept entry after merging, or None) follow the surviving entries.
        """
        keys = keys if keys is not None else gather_entries(ctx.keys, keep)
        values = values if values is not None else gather_entries(ctx.values, keep)
        counts = counts if counts is not None else kept_counts(ctx.counts, keep, ctx.keys.shape[1])
        rows = keep[None] if keep.ndim == 1 else keep
        kv = keys.shape[1]
        cos = []
        for r, kept in enumerate(rows):  # one row for a shared set, one per KV head otherwise
            mod = ctx.modality[kept]
            heads = slice(None) if keep.ndim == 1 else slice(r, r + 1)
            cos.append(mean_cosine_to_anchors(keys[:, heads], (mod == int(low)).nonzero().squeeze(1),
                                              (mod == int(high)).nonzero().squeeze(1)))
        drop_n = round(sum(int(self.calibration_drop(c).sum()) for c in cos) / len(cos))
        survivors = []
        for kept, c in zip(rows, cos):
            slots = (ctx.modality[kept] == int(low)).nonzero().squeeze(1)
            alive = torch.ones(kept.numel(), dtype=torch.bool, device=kept.device)
            alive[slots[c.topk(min(drop_n, c.numel()), largest=False).indices]] = False
            survivors.append(alive)
        alive = torch.stack(survivors)
        all_c = torch.cat(cos)
        stats = {"evicted": drop_n, "low": low.label, "mean_cos": round(float(all_c.mean()), 4),
                 "cos_quantiles": [round(float(q), 4) for q in all_c.quantile(torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0],
                                                                                             device=all_c.device))]}
        if keep.ndim == 1:
            keep, keys, values = keep[alive[0]], keys[:, :, alive[0]], values[:, :, alive[0]]
            counts = counts[:, alive[0]]
        else:
            keep = keep[alive].view(kv, -1)
            keys = keys[0][alive].view(kv, -1, keys.shape[-1])[None]
            values = values[0][alive].view(kv, -1, values.shape[-1])[None]
            counts = counts[alive].view(kv, -1)
        if self.refill == "high" and drop_n:
            keep, keys, values, counts, stats["refilled"] = self.refill_high(ctx, keep, keys, values, high, scores,
                                                                             drop_n, counts)
        return keep, keys, values, counts, stats

    def calibration_drop(self, c: torch.Tensor) -> torch.Tensor:
        if self.tau_mode == "absolute":
            drop = c < self.tau
        else:
            drop = torch.zeros_like(c, dtype=torch.bool)
            n = int(self.tau * c.numel())
            if n:
                drop[c.topk(n, largest=False).indices] = True
        if self.min_keep_low > 0 and int((~drop).sum()) < self.min_keep_low:
            drop[c.topk(min(self.min_keep_low, c.numel())).indices] = False
        return drop

    @staticmethod
    def refill_high(ctx, keep, keys, values, high, scores, n, counts):
        """Give the slots freed by calibration to the next-best high-priority tokens (unmerged)."""
        rows = keep[None] if keep.ndim == 1 else keep
        score_rows = scores[None] if scores.ndim == 1 else scores
        own = ctx.counts if ctx.counts is not None else torch.ones(ctx.keys.shape[1], ctx.length, device=keep.device)
        new_keep, new_k, new_v, new_n, added = [], [], [], [], 0
        for r, kept in enumerate(rows):
            candidates = ctx.mask(high).clone()
            candidates[kept] = False
            idx = candidates.nonzero().squeeze(1)
            extra = idx[score_rows[r, idx].topk(min(n, idx.numel())).indices] if idx.numel() else idx
            added = int(extra.numel())
            heads = slice(None) if keep.ndim == 1 else slice(r, r + 1)
            order = torch.cat([kept, extra]).argsort()
            new_keep.append(torch.cat([kept, extra])[order])
            new_k.append(torch.cat([keys[:, heads], ctx.keys[:, heads].index_select(2, extra)], 2)[:, :, order])
            new_v.append(torch.cat([values[:, heads], ctx.values[:, heads].index_select(2, extra)], 2)[:, :, order])
            new_n.append(torch.cat([counts[heads], own[heads].index_select(1, extra)], 1)[:, order])
        if keep.ndim == 1:
            return new_keep[0], new_k[0], new_v[0], new_n[0], added
        return torch.stack(new_keep), torch.cat(new_k, 1), torch.cat(new_v, 1), torch.cat(new_n, 0), added


def centroid_merge(ctx: LayerContext, keep: torch.Tensor, scores: torch.Tensor):
    """C-C step 1 read literally ("merge the unimportant tokens of a modality by averaging"): per KV head,
    all non-selected tokens of a modality are averaged together with that modality's lowest-scored kept
    entry, which then holds their mean (one budget entry for the whole remainder of the modality). Entries
    are weighed by the tokens they already stand for (`ctx.counts`, a streamed cache); returns the counts too."""
    rows = keep[None].expand(ctx.keys.shape[1], -1) if keep.ndim == 1 else keep
    score_rows = scores[None].expand(rows.shape[0], -1) if scores.ndim == 1 else scores
    out_k, out_v, out_n, merged = [], [], [], {}
    for h, kept in enumerate(rows):
        k_h, v_h = ctx.keys[0, h].float(), ctx.values[0, h].float()
        w_h = ctx.counts[h].to(kept.device) if ctx.counts is not None else torch.ones(ctx.length, device=kept.device)
        slot_k, slot_v, count = k_h[kept].clone(), v_h[kept].clone(), w_h[kept].clone()
        is_kept = torch.zeros(ctx.length, dtype=torch.bool, device=kept.device)
        is_kept[kept] = True
        for kind in (VIDEO, AUDIO):
            mask = ctx.mask(kind)
            evicted = (mask & ~is_kept).nonzero().squeeze(1)
            slots = mask[kept].nonzero().squeeze(1)
            if evicted.numel() == 0 or slots.numel() == 0:
                continue
            s = slots[score_rows[h, kept[slots]].argmin()]
            w_e, total = w_h[evicted], count[s] + w_h[evicted].sum()
            slot_k[s] = (count[s] * slot_k[s] + (w_e[:, None] * k_h[evicted]).sum(0)) / total
            slot_v[s] = (count[s] * slot_v[s] + (w_e[:, None] * v_h[evicted]).sum(0)) / total
            count[s] = total
            merged[str(int(kind))] = merged.get(str(int(kind)), 0.0) + evicted.numel() / rows.shape[0]
        out_k.append(slot_k)
        out_v.append(slot_v)
        out_n.append(count)
    return (torch.stack(out_k)[None].to(ctx.keys.dtype), torch.stack(out_v)[None].to(ctx.values.dtype),
            {n: round(v, 2) for n, v in merged.items()}, torch.stack(out_n))


def _largest_remainder(k: int, sizes: torch.Tensor) -> torch.Tensor:
    """int64 [groups]: k slots split over groups in proportion to their sizes (largest-remainder rounding),
    capped at each group's size."""
    exact = k * sizes.float() / sizes.sum()
    share = exact.floor().long()
    share[(exact - share).argsort(descending=True)[: k - int(share.sum())]] += 1
    return torch.minimum(share, sizes)


def _bin_weights(scores: torch.Tensor, group: torch.Tensor, n_bins: int) -> torch.Tensor:
    """float [bins]: Σ exp(z) over each bin's tokens, z the token's standardised score (heads averaged,
    capped at 4σ): a bin of ordinary tokens weighs its size, a bin holding a standout weighs far more."""
    flat = scores.float().mean(0) if scores.ndim == 2 else scores.float()
    z = (flat - flat.mean()) / flat.std().clamp(min=1e-8) if flat.numel() > 1 else torch.zeros_like(flat)
    return torch.zeros(n_bins, device=flat.device).index_add_(0, group, z.clamp(max=4).exp())


def _weighted_quota(k: int, weights: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """int64 [bins]: k slots split in proportion to `weights` (largest remainder), capped at each bin's
    size; what a full bin cannot take goes to the others in proportion to their weights."""
    quota = torch.zeros_like(sizes)
    k = min(k, int(sizes.sum()))
    while int(quota.sum()) < k:
        room = sizes - quota
        w = torch.where(room > 0, weights, torch.zeros_like(weights))
        left = k - int(quota.sum())
        exact = left * w / w.sum()
        add = torch.minimum(exact.floor().long(), room)
        short = left - int(add.sum())
        if short > 0:  # the largest remainders among bins that still have room get one more
            frac = torch.where(room - add > 0, exact - exact.floor(), torch.full_like(exact, -1.0))
            add[frac.argsort(descending=True)[:short]] += 1
            add = torch.minimum(add, room)
        quota += add
    return quota


def ranking_kurtosis(ranking: torch.Tensor, mask: torch.Tensor) -> float:
    """E[z⁴] of the ranking over the tokens of `mask` (KV heads averaged first): 1.8 for an even spread, 3 for
    a Gaussian, large when a few tokens stand far out. 0 for fewer than 4 tokens (too few to tell)."""
    if int(mask.sum()) < 4:
        return 0.0
    flat = ranking if ranking.ndim == 1 else ranking.mean(0)
    z = standardised(flat, mask)[mask]
    return float((z ** 4).mean())


def _give_overflow(quota: dict, counts: dict, slots: int) -> dict:
    """Move slots a modality cannot use (fewer tokens than its quota) to the other one; fix rounding."""
    spare = slots - sum(quota.values())
    for kind in sorted(quota, key=lambda k: counts[k] - quota[k], reverse=True):
        take = max(0, min(spare, counts[kind] - quota[kind]))
        quota[kind] += take
        spare -= take
    return quota
