"""`pyramidkv`: SnapKV scores with per-layer budgets shrinking linearly with depth (Cai et al., arXiv 2406.02069)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from acckv_cli.methods.base import LayerContext
from acckv_cli.methods.registry import register
from acckv_cli.methods.snapkv import SnapKV


@register
@dataclass
class PyramidKV(SnapKV):
    """PyramidKV in the prefill-once setting (Cai et al., arXiv 2406.02069): SnapKV selection, pyramid budgets.

    Scores and selection are SnapKV's (see `SnapKV`); only the number of media entries per layer differs.
    With B = the uniform media budget (`ctx.budget.media_tokens(N_media)`), N layers and layer index ℓ
    (KVCache-Factory's schedule, applied to the media share because text is always kept on top):

        min = B / beta;   max = 2·B − min;   if max > N_media: max = N_media, min = 2·B − max
        media_ℓ = round(max − ℓ·(max − min)/(N − 1))

    so the budgets fall linearly with depth and average to B. The uniform budget is used for N = 1, when
    B ≥ N_media, or when the cap inverts the pyramid (`max < min`).

    beta: ratio between the largest and smallest media budget of a layer before capping (paper: 20).
    """

    name = "pyramidkv"
    summary = "SnapKV scoring with budgets shrinking linearly with depth (Cai et al. 2024)"
    paper = "arXiv 2406.02069"
    beta: float = 20.0

    def __post_init__(self):
        if self.beta < 1:
            raise ValueError(f"pyramidkv beta must be ≥ 1, got {self.beta}")

    def media_budgets(self, n_media: int, n_layers: int, uniform: int) -> torch.Tensor:
        """int64 [N]: every layer's media budget when the prompt has `n_media` media tokens."""
        B = float(uniform)
        lo = B / self.beta
        hi = 2 * B - lo
        if hi > n_media:
            hi = float(n_media)
            lo = 2 * B - hi
        if n_layers < 2 or uniform >= n_media or hi < lo:
            return torch.full((n_layers,), uniform, dtype=torch.long)
        depth = torch.arange(n_layers, dtype=torch.float64)
        return (hi - depth * (hi - lo) / (n_layers - 1)).round().long().clamp(min=0, max=n_media)

    def media_slots(self, ctx: LayerContext) -> int:
        budgets = self.media_budgets(ctx.n_media, ctx.n_layers, ctx.budget.media_tokens(ctx.n_media))
        return int(budgets[ctx.layer_idx])
