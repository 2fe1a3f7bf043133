"""`random`: keep a uniformly random subset of the media tokens (a sanity lower bound)."""

from __future__ import annotations

from dataclasses import dataclass

from acckv_cli.lazy import torch

from acckv_cli.methods.base import LayerContext, ScorerMethod
from acckv_cli.methods.registry import register


@register
@dataclass
class Random(ScorerMethod):
    """Random eviction (docs/acckv-method.md). The same set in every KV head of a layer.

    seed:                  reproducibility.
    per_layer_independent: draw a new subset in each layer (True) or one subset shared by all layers.
    """

    name = "random"
    summary = "random media tokens, same set in every head (lower bound)"
    seed: int = 0
    per_layer_independent: bool = True

    def score(self, ctx: LayerContext) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed + (ctx.layer_idx if self.per_layer_independent else 0))
        return torch.rand(ctx.length, generator=gen).to(ctx.keys.device)
