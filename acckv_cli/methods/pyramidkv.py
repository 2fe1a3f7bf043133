"""`pyramidkv`: SnapKV scores with per-layer budgets shrinking linearly with depth (Cai et al., arXiv 2406.02069)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from acckv_cli.methods.base import LayerContext
from acckv_cli.methods.budget import media_slots
from acckv_cli.methods.registry import register
from acckv_cli.methods.snapkv import SnapKV


@register
@dataclass
class PyramidKV(SnapKV):
    """PyramidKV in the prefill-once setting (acckv-method.md §10.6): SnapKV selection, pyramid budgets.

    Scores and selection are SnapKV's (fp32 [L], one set for all KV heads; see `SnapKV`); only the number
    of cache entries per layer differs. With B = the uniform budget (`ctx.budget.tokens(L)`), W =
    `window_size`, N layers and layer index ℓ (kvpress's formula, from KVCache-Factory):

        min = B / beta;   max = 2·B − min;   if max ≥ L − W: max = L − W, min = 2·B − max
        budget_ℓ = max − ℓ·(max − min)/(N − 1)

    so the layer budgets fall linearly with depth and average to B. Deviations from kvpress, all needed
    because protected text is always kept here and counts against the budget:
      * kvpress falls back to the uniform budget unless `min ≥ W`; with β = 20 that is every budget below
        20·W = 1280 entries, i.e. nearly every AV prompt, so that fallback is not applied. The uniform
        fallback remains only where the cap inverts the pyramid (`max < min`), for N = 1, or when B ≥ L.
      * every layer budget is clamped to [P, L] (P = protected tokens). Layers raised to P are paid for
        by shrinking the others' media share (b − P) by one common factor, so the pyramid stays monotone
        and the mean still equals B (±1 per layer from rounding). B < P raises BudgetError, as everywhere.

    beta: ratio between the largest and smallest media share of a layer before capping (paper: 20).
    """

    name = "pyramidkv"
    summary = "SnapKV scoring with budgets shrinking linearly with depth (Cai et al. 2024)"
    paper = "arXiv 2406.02069"
    beta: float = 20.0

    def layer_budgets(self, length: int, protected: int, n_layers: int, uniform: int) -> torch.Tensor:
        """int64 [N]: every layer's budget for a prompt of `length` tokens with `protected` kept tokens."""
        media_slots(uniform, protected, length)  # BudgetError when even the uniform budget is too small
        if self.beta < 1:
            raise ValueError(f"pyramidkv beta must be ≥ 1, got {self.beta}")
        B = float(uniform)
        lo = B / self.beta
        hi = 2 * B - lo
        if hi >= length - self.window_size:
            hi = float(length - self.window_size)
            lo = 2 * B - hi
        if n_layers < 2 or uniform >= length or hi < lo:
            return torch.full((n_layers,), uniform, dtype=torch.long)
        depth = torch.arange(n_layers, dtype=torch.float64)
        budgets = (hi - depth * (hi - lo) / (n_layers - 1)).clamp(min=protected, max=length)
        share = budgets - protected
        excess = float(budgets.sum()) - n_layers * B
        if excess > 0 and float(share.sum()) > 0:
            budgets = protected + share * (1 - excess / float(share.sum()))
        return budgets.round().long().clamp(min=protected, max=length)

    def layer_budget(self, ctx: LayerContext) -> int:
        budgets = self.layer_budgets(ctx.length, int(ctx.protected.sum()), ctx.n_layers,
                                     ctx.budget.tokens(ctx.length))
        return int(budgets[ctx.layer_idx])
