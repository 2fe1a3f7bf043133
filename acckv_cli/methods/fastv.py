"""`fastv`: drop the media tokens the last prompt token ignores, from layer K on (Chen et al., arXiv 2403.06764)."""

from __future__ import annotations

from dataclasses import dataclass

from acckv_cli.lazy import torch

from acckv_cli.model.families import family_of
from acckv_cli.model.layout import Modality
from acckv_cli.methods.vocab import HEAD_REDUCTIONS
from acckv_cli.methods.base import (CompressionError, CompressionMethod, LayerContext, LayerResult,
                                    keep_top)
from acckv_cli.methods.registry import register

SCORES_KEY = "fastv_scores"   # ctx.shared: fp32 [L], head-mean attention of the last prompt token at layer K−1
KEEP_KEY = "fastv_keep"       # ctx.shared: sorted prompt indices [k] that survive FastV
MODES = ("prune", "kv_emulate")


@register
@dataclass
class FastV(CompressionMethod):
    """FastV (pkunlp-icler/FastV's inplace mode): rank media by the last prompt token's attention at layer
    K−1 (averaged over heads, [L] fp32) and drop the rest for layers ≥ K.

    mode `prune` (default, the reference's behaviour): at the input of layer K the hidden states, the 3-D
    mRoPE cos/sin and the text positions are sliced to the kept tokens (survivors keep their original
    positions), so layers ≥ K never see the dropped tokens and cache only the survivors; this saves their
    prefill compute. Layers < K ran on the whole prompt; to compare at the same KV budget as every other
    method, their caches are then cut to the same kept set (the reference keeps them whole). The
    compressed part must be prefilled in one forward (the session does that under query-aware).
    Media kept = the media budget, in every layer.

    mode `kv_emulate`: full prefill, then the kept set applied to the KV of layers ≥ K only; layers < K keep
    everything and the media count of the others is matched so that the mean over layers equals the
    budget (K·N_media + (N − K)·m = N·B; `budget_mismatch` when impossible). Kept for comparison: the
    dropped tokens still shaped the deeper layers' keys and values.

    ratio: if set, keep round(N_media·(1 − ratio)) media (the paper's R = 50 %) instead of the budget.
    """

    name = "fastv"
    summary = "last-token attention at layer K−1 picks the media every layer ≥ K keeps; pruned in the prefill (Chen et al. 2024)"
    paper = "arXiv 2403.06764"
    k: int = 2
    ratio: float | None = None
    mode: str = "prune"
    head_reduction: str = "mean"

    choices = {"mode": MODES, "head_reduction": ("mean", "max")}

    def __post_init__(self):
        self.check_choices()
        if self.ratio is not None and not 0 <= self.ratio <= 1:
            raise ValueError(f"fastv ratio must lie in [0, 1], got {self.ratio}")
        if self.k < 1:
            raise ValueError(f"fastv k must be ≥ 1, got {self.k}")

    @property
    def single_forward(self) -> bool:  # type: ignore[override]
        return self.mode == "prune"

    def start_layer(self, n_layers: int) -> int:
        return max(1, min(self.k, n_layers - 1))

    def kept_media(self, n_media: int, n_layers: int, budget) -> tuple[int, bool]:
        """(media tokens kept by each pruned layer, whether the budget could not be matched)."""
        uniform = budget.media_tokens(n_media)
        if self.ratio is not None:
            return min(n_media, int(round(n_media * (1 - self.ratio)))), False
        if self.mode == "prune":
            return uniform, False
        K = self.start_layer(n_layers)
        if K >= n_layers:  # a single layer: nothing can be pruned
            return n_media, uniform < n_media
        m = round((n_layers * uniform - K * n_media) / (n_layers - K))
        return (0, True) if m < 0 else (min(n_media, m), False)

    def media_slots(self, ctx: LayerContext) -> int:
        n_media = int(ctx.layout.media_mask.sum())
        if self.mode == "kv_emulate" and ctx.layer_idx < self.start_layer(ctx.n_layers):
            return n_media
        return self.kept_media(n_media, ctx.n_layers, ctx.budget)[0]

    def layer_budget(self, ctx: LayerContext) -> int:
        return int(ctx.layout.protected_mask.sum()) + self.media_slots(ctx)

    def cached_length(self, layer_idx, n_layers, layout, budget) -> int:
        if self.mode == "prune" and layer_idx >= self.start_layer(n_layers):
            n_media = int(layout.media_mask.sum())
            return int(layout.protected_mask.sum()) + self.kept_media(n_media, n_layers, budget)[0]
        return len(layout)

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        K, N = self.start_layer(ctx.n_layers), ctx.n_layers
        n_media = int(ctx.layout.media_mask.sum())
        m, mismatch = self.kept_media(n_media, N, ctx.budget)
        stats = {"fastv_layer": K, "mode": self.mode, "media_kept": m if ctx.layer_idx >= K or self.mode == "prune"
                 else n_media, "budget_mismatch": mismatch}
        if ctx.layer_idx == K - 1:
            if self.mode == "prune" and ctx.offset:
                raise CompressionError("fastv prune mode needs the compressed part prefilled in one forward")
            rows = torch.tensor([ctx.length - 1], device=ctx.keys.device)
            scores = ctx.reduce(ctx.accumulate(rows), self.head_reduction)
            ctx.shared[KEEP_KEY] = keep_top(scores, ctx.protected, m)
        if ctx.layer_idx < K:  # pruned in `finish` (prune mode) or kept whole (kv_emulate)
            return LayerResult(torch.arange(ctx.length, device=ctx.keys.device), stats=stats)
        if KEEP_KEY not in ctx.shared:
            raise CompressionError(f"fastv needs layer {K - 1}'s attention before layer {ctx.layer_idx}")
        if self.mode == "prune":  # the cache already holds only the survivors
            return LayerResult(ctx.shared[KEEP_KEY], ctx.keys, ctx.values, stats)
        return LayerResult(ctx.shared[KEEP_KEY], stats=stats)

    # --- prune mode: slice the prefill at layer K's input, cut the earlier layers afterwards ------------
    def install(self, run) -> list:
        if self.mode != "prune":
            return []
        K = self.start_layer(len(run.decoder_layers))
        self._check_deepstack(run, K)

        def slice_inputs(module, args, kwargs):
            keep = run.shared.get(KEEP_KEY)
            hidden = args[0] if args else kwargs["hidden_states"]
            cos, sin = kwargs["position_embeddings"]
            if keep is None or cos.shape[1] != len(run.layout) or keep.numel() == cos.shape[1]:
                return None  # not the compressing forward, or nothing to drop
            if hidden.shape[1] == cos.shape[1]:  # layer K: drop the tokens from the hidden sequence
                hidden = hidden[:, keep]
            kwargs = dict(kwargs, position_embeddings=(cos[:, keep], sin[:, keep]))
            if kwargs.get("position_ids") is not None:
                kwargs["position_ids"] = kwargs["position_ids"][:, keep]
            if args:
                return (hidden, *args[1:]), kwargs
            return args, dict(kwargs, hidden_states=hidden)

        return [layer.register_forward_pre_hook(slice_inputs, with_kwargs=True)
                for layer in run.thinker.get_decoder().layers[K:]]

    @staticmethod
    def _check_deepstack(run, K: int) -> None:
        """Qwen3-Omni adds deepstack visual features to the video rows after its first text layers, with a
        mask over the whole prompt; dropping rows before those layers would break that addition."""
        depth = family_of(run.thinker).deepstack_layers(run.thinker)
        if K < depth and bool(run.layout.mask(Modality.VIDEO).any()):
            raise CompressionError(f"fastv prune mode drops tokens at layer {K}, but this model adds visual features "
                                   f"to layers 0-{depth - 1} (deepstack); use k >= {depth} or mode=kv_emulate")

    def finish(self, run, cache) -> None:
        """Prune mode: cut layers < K to the survivors too, so every layer holds the budget."""
        if self.mode != "prune" or cache is None or KEEP_KEY not in run.shared:
            return
        keep = run.shared[KEEP_KEY]
        for record in run.layers:
            if record["layer"] < self.start_layer(len(run.decoder_layers)):
                layer = cache.layers[record["layer"]]
                layer.keys = layer.keys.index_select(2, keep).contiguous()
                layer.values = layer.values.index_select(2, keep).contiguous()
                record.update(keep=keep.cpu(), kv_bytes_after=layer.keys.nbytes + layer.values.nbytes,
                              budget=int(keep.numel()))
