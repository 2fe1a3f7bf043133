"""Relevance with diversity: greedy maximal marginal relevance over a modality's candidates.

Why: with a 5 % quota, AccKV's ranked share picks the best-ranked token of every 1-s bin, so a bin of silence
gets a slot as surely as the bin that holds a brief sound, and a global top-k (no bins) spends the whole share
on the one event that stands out most (round 4: twice the evidence kept, fewer questions right). Order,
alignment and "which instrument plays when …" questions need *each* event kept, once. Maximal marginal relevance
(Carbonell & Goldstein, SIGIR 1998) trades the two: pick, one at a time,

    argmax_j  gain_j − weight · max(0, max_{s ∈ S} cos(x_j, x_s))

where S holds what is already kept (the skeleton's even share, then each pick), so a token that repeats a
kept one — the rest of the same drum hit, more silence — loses to the best token of something not yet kept.
DivPrune (arXiv 2503.02175) is the weight → ∞ end of it with no gain; SEATS (arXiv 2605.20035) likewise
combines attention with diversity. Features are the layer's values, KV heads concatenated, as `divprune`
uses them: no RoPE in them, so similarity is content, not nearness in time.

Tensor shapes: gain [N] fp32 (the ranking of the candidates), features [N, d], taken [M, d] → int64 [k]
positions into the candidates, in the order picked.
"""

from __future__ import annotations

from acckv_cli.lazy import functional as F, torch


def marginal_relevance_order(gain: torch.Tensor, features: torch.Tensor, k: int, weight: float,
                             taken: torch.Tensor | None = None) -> torch.Tensor:
    """The k candidates picked greedily by gain − weight · (largest positive cosine to anything kept)."""
    n = gain.shape[0]
    k = min(max(k, 0), n)
    x = F.normalize(features.float(), dim=-1)
    closest = torch.zeros(n, device=x.device)                  # max(0, max cos to the kept set)
    if taken is not None and taken.shape[0]:
        closest = (x @ F.normalize(taken.float(), dim=-1).T).max(dim=1).values.clamp(min=0)
    value = gain.float().to(x.device).clone()
    picked = torch.empty(k, dtype=torch.long, device=x.device)
    for i in range(k):
        picked[i] = (value - weight * closest).argmax()
        closest = torch.maximum(closest, (x @ x[picked[i]]).clamp(min=0))
        value[picked[i]] = float("-inf")                       # never picked twice
    return picked
