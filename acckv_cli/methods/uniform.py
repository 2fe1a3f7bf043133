"""`uniform`: media entries evenly spaced in time, each modality in proportion to its token count.

The selection a reader expects from "keep 10 % of the clip" with no scoring at all: the same set in every
layer and every KV head, spread over the whole clip. It is the baseline that coverage arguments (AccKV's
`coverage=time`, the `oracle`'s fill) are measured against, and deterministic where `random` is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from acckv_cli.lazy import torch

from acckv_cli.model.layout import MEDIA, TokenLayout
from acckv_cli.methods.base import CompressionMethod, LayerContext, LayerResult
from acckv_cli.methods.registry import register


def proportional_quotas(k: int, counts: list[int]) -> list[int]:
    """k slots over groups in proportion to their sizes, by largest remainder, in exact integer arithmetic.

    Group g first gets ⌊k·n_g / N⌋; the slots left go one each to the groups with the largest remainders
    k·n_g mod N, a tie to the group listed first (callers list video before audio). Never more than n_g.
    """
    total = sum(counts)
    if total == 0 or k <= 0:
        return [0] * len(counts)
    k = min(k, total)
    quota = [k * n // total for n in counts]
    by_remainder = sorted(range(len(counts)), key=lambda g: (-(k * counts[g] % total), g))
    for g in by_remainder[: k - sum(quota)]:
        quota[g] += 1
    return quota


def spread_in_time(layout: TokenLayout, candidates: torch.Tensor, k: int) -> torch.Tensor:
    """int64 [min(k, #candidates)], sorted: k of the `candidates` (bool [L], media) evenly spaced in time.

    Per modality m (n_m candidates, quota k_m from `proportional_quotas`): m's candidates are ordered by
    (time, prompt position) — the position breaks the ties of tokens that share a time (a frame pair's grid
    cells, in raster order) — and the tokens at ranks ⌊(2i + 1)·n_m / (2·k_m)⌋, i = 0 … k_m − 1, are kept:
    the middle of each of k_m equal strata of that order. Distinct because n_m / k_m ≥ 1; since a modality's
    tokens are evenly dense in time (25 audio tokens a second, one grid per frame pair), even in rank is
    even in time.
    """
    candidates = candidates.cpu()
    groups = [candidates & layout.mask(kind) for kind in MEDIA]
    quotas = proportional_quotas(k, [int(g.sum()) for g in groups])
    chosen = [torch.zeros(0, dtype=torch.long)]
    for group, k_m in zip(groups, quotas):
        if k_m == 0:
            continue
        idx = group.nonzero().squeeze(1)                                    # ascending prompt positions
        order = idx[torch.sort(layout.time_s[idx], stable=True).indices]    # by time, then position
        n_m = idx.numel()
        ranks = (2 * torch.arange(k_m) + 1) * n_m // (2 * k_m)
        chosen.append(order[ranks])
    return torch.cat(chosen).sort().values


@register
@dataclass
class Uniform(CompressionMethod):
    """Even coverage of the clip, no scores: protected text plus `spread_in_time(media, budget)`.

    No paper: the evenly-spaced sampling that video-LLM pipelines apply to frames, applied to cache
    entries. Tensors: only the layout (modality and time of each of the L entries); keep [P + k] is one
    set shared by every KV head and, as the layout is the same in every layer, by every layer. Ties and
    rounding are stated in `proportional_quotas` and `spread_in_time`.
    """

    name = "uniform"
    summary = "media evenly spaced in time, per modality in proportion to its tokens (no scores)"

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        media = ctx.layout.media_mask
        chosen = spread_in_time(ctx.layout, media, self.media_slots(ctx))
        keep = torch.cat([(~media).nonzero().squeeze(1), chosen]).sort().values
        return LayerResult(keep.to(ctx.keys.device))
