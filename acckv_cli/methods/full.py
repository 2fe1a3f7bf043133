"""`full`: no compression. The reference for accuracy and for 100 % retention."""

from __future__ import annotations

from dataclasses import dataclass

from acckv_cli.lazy import torch

from acckv_cli.methods.base import CompressionMethod, LayerContext, LayerResult
from acckv_cli.methods.registry import register


@register
@dataclass
class Full(CompressionMethod):
    """Keep every prompt entry. Budget is ignored; the report still shows per-layer statistics."""

    name = "full"
    summary = "no compression: the full KV cache (reference)"

    def media_slots(self, ctx: LayerContext) -> int:
        return ctx.n_media

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        return LayerResult(torch.arange(ctx.length, device=ctx.keys.device))
