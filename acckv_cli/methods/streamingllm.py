"""`streamingllm`: attention sinks plus the most recent tokens (Xiao et al., arXiv 2309.17453)."""

from __future__ import annotations

from dataclasses import dataclass

from acckv_cli.lazy import torch

from acckv_cli.methods.base import LayerContext, ScorerMethod
from acckv_cli.methods.registry import register


@register
@dataclass
class StreamingLLM(ScorerMethod):
    """Keep the first `n_sink` tokens and the most recent ones; evict the middle (kvpress's StreamingLLMPress; docs/acckv-method.md).

    Protected text is always kept, so in practice this keeps the media tokens nearest to the end of
    the AV block (the most recent seconds) plus any media among the first `n_sink` positions.
    Score: +inf for sinks, otherwise the position index (later = higher). Shape [L].
    """

    name = "streamingllm"
    summary = "attention sinks + most recent tokens (Xiao et al. 2023)"
    paper = "arXiv 2309.17453"
    n_sink: int = 4

    def score(self, ctx: LayerContext) -> torch.Tensor:
        scores = torch.arange(ctx.length, dtype=torch.float32, device=ctx.keys.device)
        scores[: self.n_sink] = float("inf")
        return scores
