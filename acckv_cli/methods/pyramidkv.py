"""`pyramidkv`: SnapKV scores with per-layer budgets shrinking linearly with depth (Cai et al., arXiv 2406.02069)."""

from __future__ import annotations

from dataclasses import dataclass

from acckv_cli.lazy import torch

from acckv_cli.methods.base import LayerContext
from acckv_cli.methods.registry import register
from acckv_cli.methods.snapkv import SnapKV


@register
@dataclass
class PyramidKV(SnapKV):
    """PyramidKV in the prefill-once setting (Cai et al., arXiv 2406.02069): SnapKV selection, pyramid budgets.

    Scores and selection are SnapKV's (per KV head; see `SnapKV`); only the number of media entries per
    layer differs. With B = the uniform media budget (`ctx.budget.media_tokens(N_media)`), N layers and
    layer index ℓ, kvpress's `PyramidKVPress` schedule applied to the media (text is kept on top):

        min = B / beta;   max = 2·B − min;   if max ≥ N_media: max = N_media, min = 2·B − max
        media_ℓ = round(max − ℓ·(max − min)/(N − 1))

    so budgets fall linearly with depth and average to B. Two departures, both because the budget counts
    media only: kvpress's uniform fallback when `min < window` (true for nearly every AV budget) is not
    applied — the window's media are inside each layer's budget here — and `min` is at least one entry
    when B ≥ 1 (max = 2·B − 1), so no layer loses all its media unless the budget itself is 0. The
    uniform budget is used for N = 1, B ≥ N_media, or when the cap inverts the pyramid.

    beta: ratio between the largest and smallest media budget of a layer before capping (paper: 20).
    """

    name = "pyramidkv"
    summary = "SnapKV scoring with media budgets shrinking linearly with depth (Cai et al. 2024)"
    paper = "arXiv 2406.02069"
    cannot_stream = ("its per-layer budgets are a pyramid over the whole prompt's media, and a streamed layer "
                     "would size it from its own cache at every step, exceeding the cap")
    beta: float = 20.0

    def __post_init__(self):
        super().__post_init__()
        if self.beta < 1:
            raise ValueError(f"pyramidkv beta must be ≥ 1, got {self.beta}")

    def media_budgets(self, n_media: int, n_layers: int, uniform: int) -> torch.Tensor:
        """int64 [N]: every layer's media budget when the prompt has `n_media` media tokens."""
        return pyramid_budgets(n_media, n_layers, uniform, self.beta)

    def media_slots(self, ctx: LayerContext) -> int:
        budgets = self.media_budgets(ctx.n_media, ctx.n_layers, ctx.budget.media_tokens(ctx.n_media))
        return int(budgets[ctx.layer_idx])


def pyramid_budgets(n_media: int, n_layers: int, uniform: int, beta: float) -> torch.Tensor:
    """int64 [N]: PyramidKV's media budget per layer, falling linearly with depth and averaging to `uniform`
    (the schedule in `PyramidKV`'s docstring; AccKV's `layer_schedule=pyramid` uses it too)."""
    B = float(uniform)
    lo = max(B / beta, min(1.0, B))
    hi = 2 * B - lo
    if hi >= n_media:
        hi = float(n_media)
        lo = 2 * B - hi
    if n_layers < 2 or uniform >= n_media or hi < lo:
        return torch.full((n_layers,), uniform, dtype=torch.long)
    return torch.tensor([round(hi - layer * (hi - lo) / (n_layers - 1)) for layer in range(n_layers)],
                        dtype=torch.long).clamp(min=0, max=n_media)
