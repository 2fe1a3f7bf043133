"""`fastv`: drop the media tokens the last prompt token ignores, from layer K on (Chen et al., arXiv 2403.06764)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from acckv_cli.methods.attention import reduce_heads
from acckv_cli.methods.base import CompressionError, CompressionMethod, LayerContext, LayerResult, keep_top
from acckv_cli.methods.registry import register

SCORES_KEY = "fastv_scores"   # ctx.shared: fp32 [L], head-mean attention of the last prompt token at layer K−1
KEEP_KEY = "fastv_keep"       # ctx.shared: sorted prompt indices [k] kept by every layer ≥ K


@register
@dataclass
class FastV(CompressionMethod):
    """FastV, `kv_emulate` mode (acckv-method.md §10.8).

    At layer K−1 the attention row of the last prompt token, A[h, L−1, :] ([H, L], fp32), is averaged over
    heads ([L]) and stored in `ctx.shared`; layers are compressed in order 0, 1, 2, ..., so it is ready at
    layer K. Layers < K keep all L entries. Every layer ≥ K keeps the protected tokens plus the same top
    media tokens by that score (computed once at layer K, reused by the deeper layers).

    Media kept per layer ≥ K:
      ratio given:  round(N_media·(1 − ratio))  (the paper's R; 0.5 there).
      ratio None:   budget matching — the count m that makes the mean media retention over all N layers
                    equal the media budget B: K·N_media + (N − K)·m = N·B. When the K full layers alone
                    exceed N·B, layers ≥ K keep no media and the stats say `budget_mismatch`.
    K is clamped to [1, N − 1]. Protected text is kept on top, as for every method.

    mode: only `kv_emulate` (full prefill, then the kept set applied to the KV of every layer ≥ K) is
    implemented; `prune` (slicing hidden states at layer K's input, which saves prefill FLOPs) raises
    ValueError.
    """

    name = "fastv"
    summary = "last-token attention at layer K−1 picks one media set for all layers ≥ K (Chen et al. 2024)"
    paper = "arXiv 2403.06764"
    k: int = 2
    ratio: float | None = None
    mode: str = "kv_emulate"
    head_reduction: str = "mean"

    def __post_init__(self):
        if self.mode == "prune":
            raise ValueError("fastv mode 'prune' is not implemented; use mode=kv_emulate")
        if self.mode != "kv_emulate":
            raise ValueError(f"fastv mode must be kv_emulate (prune is not implemented), got {self.mode!r}")
        if self.ratio is not None and not 0 <= self.ratio <= 1:
            raise ValueError(f"fastv ratio must lie in [0, 1], got {self.ratio}")

    def start_layer(self, n_layers: int) -> int:
        return max(1, min(self.k, n_layers - 1))

    def plan(self, ctx: LayerContext) -> tuple[int, bool]:
        """(media tokens kept by each layer ≥ K, whether the budget could not be matched)."""
        n_media, N = ctx.n_media, ctx.n_layers
        uniform = ctx.budget.media_tokens(n_media)
        if self.ratio is not None:
            return min(n_media, int(round(n_media * (1 - self.ratio)))), False
        K = self.start_layer(N)
        if K >= N:  # a single layer: nothing can be pruned
            return n_media, uniform < n_media
        m = round((N * uniform - K * n_media) / (N - K))
        if m < 0:
            return 0, True
        return min(n_media, m), False

    def media_slots(self, ctx: LayerContext) -> int:
        if ctx.layer_idx < self.start_layer(ctx.n_layers):
            return ctx.n_media
        return self.plan(ctx)[0]

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        K = self.start_layer(ctx.n_layers)
        n_media, mismatch = self.plan(ctx)
        P, L, N = int(ctx.protected.sum()), ctx.length, ctx.n_layers
        kept_media = n_media if ctx.layer_idx >= K else L - P
        mean_media = (min(K, N) * (L - P) + max(0, N - K) * n_media) / N
        stats = {"fastv_layer": K, "media_kept": kept_media, "mean_media_kept": round(mean_media, 2),
                 "target_media": ctx.budget.media_tokens(L - P), "budget_mismatch": mismatch}
        if ctx.layer_idx == K - 1:
            rows = torch.tensor([L - 1], device=ctx.keys.device)
            ctx.shared[SCORES_KEY] = reduce_heads(ctx.accumulate(rows), self.head_reduction)
        if ctx.layer_idx < K:
            return LayerResult(torch.arange(L, device=ctx.keys.device), stats=stats)
        if KEEP_KEY not in ctx.shared:
            if SCORES_KEY not in ctx.shared:
                raise CompressionError(f"fastv needs layer {K - 1}'s attention before layer {ctx.layer_idx}")
            ctx.shared[KEEP_KEY] = keep_top(ctx.shared[SCORES_KEY], ctx.protected, n_media)
        return LayerResult(ctx.shared[KEEP_KEY], stats=stats)
