"""`divprune`: keep the most diverse media entries — greedy max–min cosine distance (DivPrune).

Alvar, Singh, Akbari, Zhang, "DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models",
arXiv 2503.02175 (CVPR 2025); reference code vbdi/divprune@799e2d9, LLaVA/llava/model/llava_arch.py
(`DivPrune`, `pairwise_cosine_similarity`, and the `LAYER_INDEX == 0` branch of
`prepare_inputs_labels_for_multimodal`). The paper states pruning as the Max–Min Diversity Problem —
choose the subset whose smallest pairwise distance is largest — and solves it greedily:

  d(i, j) = 1 − cos(x_i, x_j) over the visual tokens' features x [N, d];
  first pick: the token whose nearest other token is farthest, argmax_j min_{i≠j} d(i, j);
  then, until k are chosen: argmax_j min_{s ∈ S} d(s, j) (the token farthest from everything kept).

Ties go to the lowest index (torch.argmax, as the reference). The reference builds the N × N matrix; here
the first pick is computed in row blocks and the greedy keeps one running distance per token, O(N²·d)
time once and O(k·N·d) after, O(N) memory beyond a block — a 10-minute clip has ~10⁵ media tokens.

In a KV cache, which features: the paper selects once, on the projected visual embeddings at the LLM's
input (LAYER_INDEX = 0), and the pruned tokens are gone from every layer. The closest a cache offers is
layer 0's **values**: v = W_v·RMSNorm(x) + b, a linear image of exactly those input embeddings, with no
position in it. Layer 0's keys are the same kind of projection but cached after (m)RoPE, which rotates
identical content at different times and places apart, so their cosine distance rewards spreading in time
and space as much as content (a positional prior the paper does not have; `features=keys` keeps it as a
variant). The KV heads are concatenated (d = KV·D), the whole value vector, rather than averaged: heads
are different subspaces. Default, as the reference: select on layer 0, keep that set in every layer and
every KV head (`per_layer=true` selects on each layer's own features instead). No per-modality quotas:
the paper selects over one pool of tokens, and audio and video are one pool here; cosine distance ignores
the two modalities' different norms. In a streamed cache, layer 0 reselects over its cached and new
entries at every step and the deeper layers, which hold the same entries, follow it.
"""

from __future__ import annotations

from dataclasses import dataclass

from acckv_cli.lazy import functional as F, torch

from acckv_cli.methods.base import CompressionMethod, LayerContext, LayerResult
from acckv_cli.methods.registry import register

FEATURES = ("values", "keys")
_BLOCK_ELEMENTS = 1 << 26  # one block of the similarity matrix: 256 MB in fp32


def max_min_order(features: torch.Tensor, k: int) -> tuple[torch.Tensor, float]:
    """(int64 [min(k, N)] indices in the order picked, the kept set's smallest pairwise cosine distance).

    features: [N, d], any float dtype (computed in fp32). See the module docstring for the rule.
    """
    n = features.shape[0]
    k = min(k, n)
    device = features.device
    if k <= 0:
        return torch.zeros(0, dtype=torch.long, device=device), 0.0
    x = F.normalize(features.float(), dim=-1)                       # [N, d]
    nearest = torch.full((n,), float("inf"), device=device)         # distance to the nearest other token
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, n, block):
        sim = x[start:start + block] @ x.T                          # [b, N]
        rows = torch.arange(sim.shape[0], device=device)
        sim[rows, start + rows] = float("-inf")                     # not its own neighbour
        nearest[start:start + sim.shape[0]] = 1 - sim.max(dim=1).values
    picked = torch.empty(k, dtype=torch.long, device=device)
    picked[0] = nearest.argmax()
    gap = 1 - x @ x[picked[0]]                                      # [N] distance to the kept set
    gap[picked[0]] = float("-inf")                                  # a kept token is never picked again
    objective = torch.tensor(float("inf"), device=device)
    for i in range(1, k):
        picked[i] = gap.argmax()
        objective = torch.minimum(objective, gap[picked[i]])
        gap = torch.minimum(gap, 1 - x @ x[picked[i]])
        gap[picked[i]] = float("-inf")
    return picked, (float(objective) if k > 1 else 0.0)


@register
@dataclass
class DivPrune(CompressionMethod):
    """DivPrune's greedy max–min selection over the media entries (module docstring: features, layer).

    features:  `values` (default) or `keys` of the selecting layer, [1, KV, L, D] → media rows [N, KV·D].
    per_layer: False (default, the reference): layer 0 selects, every layer keeps that set;
               True: every layer selects on its own features.
    keep: protected text plus the layer's media slots, one set [P + k] for every KV head. Stats:
    `min_distance`, the kept set's smallest pairwise cosine distance (the objective the greedy maximises).
    """

    name = "divprune"
    summary = "max-min cosine diversity over the media, layer-0 values (DivPrune, CVPR 2025)"
    paper = "arXiv 2503.02175"
    features: str = "values"
    per_layer: bool = False

    choices = {"features": FEATURES}

    def __post_init__(self):
        self.check_choices()

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        chosen, distance = self.selection(ctx)
        protected = ctx.protected.nonzero().squeeze(1)
        keep = torch.cat([protected, chosen.to(protected.device)]).sort().values
        return LayerResult(keep, stats={"min_distance": round(distance, 4)})

    def selection(self, ctx: LayerContext) -> tuple[torch.Tensor, float]:
        """(kept media indices, objective): this layer's own, or the set layer 0 chose in this forward."""
        if self.per_layer:
            return self.diverse(ctx)
        step = (ctx.offset, ctx.length)  # every layer of one forward holds the same entries
        cached = ctx.shared.get("divprune")
        if ctx.layer_idx == 0 or cached is None or cached[0] != step:
            cached = (step, *self.diverse(ctx))
            ctx.shared["divprune"] = cached
        return cached[1], cached[2]

    def diverse(self, ctx: LayerContext) -> tuple[torch.Tensor, float]:
        media = (~ctx.protected).nonzero().squeeze(1)                            # [N]
        source = ctx.values if self.features == "values" else ctx.keys          # [1, KV, L, D]
        feats = source[0].index_select(1, media).transpose(0, 1).flatten(1)     # [N, KV·D]
        order, distance = max_min_order(feats, self.media_slots(ctx))
        return media[order], distance
