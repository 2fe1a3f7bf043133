"""KV merging and key-cosine calibration, shared by LOOK-M and AccKV. Vectorised over KV heads.

Shapes: keys/values [1, KV, L, D] (post-RoPE keys, as cached). Index tensors are prompt indices.
Merging averages post-RoPE keys directly, as LOOK-M does; nothing is re-rotated (qwen-omni-notes §6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# fp32 similarity entries materialised per chunk of evicted tokens.
SIM_CHUNK_ELEMENTS = 16 * 2**20


def nearest_targets(keys: torch.Tensor, sources: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """For each KV head, the index (into `targets`) of the most key-cosine-similar target of every source.

    Returns int64 [KV, n_sources]. Computed in chunks of sources so memory stays O(KV·chunk·n_targets).
    Only the targets are normalised: a source's norm scales its row of similarities by a positive
    constant, which never changes the row's arg-max. `max(-1).indices` (first maximum, like `argmax`)
    is used because it is ~3× faster than `argmax` on CPU (issue #6).
    """
    k = keys[0]                                        # [KV, L, D]
    tgt = F.normalize(k[:, targets].float(), dim=-1)   # [KV, t, D]
    tgt_t = tgt.transpose(1, 2)
    per_chunk = max(1, SIM_CHUNK_ELEMENTS // max(1, tgt.shape[0] * tgt.shape[1]))
    out = []
    for start in range(0, sources.numel(), per_chunk):
        src = k[:, sources[start:start + per_chunk]].float()    # [KV, c, D]
        out.append(torch.bmm(src, tgt_t).max(dim=-1).indices)
    return torch.cat(out, dim=1) if out else torch.zeros(k.shape[0], 0, dtype=torch.long, device=k.device)


def merge_mean(keys: torch.Tensor, values: torch.Tensor, keep: torch.Tensor, groups: list[tuple[torch.Tensor, torch.Tensor]],
               nearest: list[torch.Tensor | None] | None = None):
    """Gather the kept entries and average every evicted entry into its nearest kept entry of its group.

    keep:   sorted prompt indices of all kept entries [k]
    groups: (kept, evicted) prompt-index pairs; each evicted entry merges only into kept entries of its
            own group (so audio never merges into video unless the caller puts them in one group).
    nearest: optional, per group, `nearest_targets(keys, evicted, kept)` already computed by the caller
            (LOOK-M needs it for its statistics too), so it is not computed twice.
    Returns (keys [1, KV, k, D], values [1, KV, k, D], merged entries per group [list of int]).
    A kept slot becomes the mean of itself and all entries assigned to it (LOOK-M "avg"), per KV head.
    """
    out_k, out_v = keys.index_select(2, keep).float(), values.index_select(2, keep).float()
    count = torch.ones(keys.shape[1], keep.numel(), device=keys.device)
    merged = []
    for i, (kept, evicted) in enumerate(groups):
        merged.append(int(evicted.numel()) if kept.numel() else 0)
        if kept.numel() == 0 or evicted.numel() == 0:
            continue
        target = nearest[i] if nearest is not None and nearest[i] is not None else nearest_targets(keys, evicted, kept)
        slot = torch.searchsorted(keep, kept)[target]  # [KV, e] slots in keep
        index = slot[None, :, :, None].expand(1, -1, -1, keys.shape[-1])
        out_k.scatter_add_(2, index, keys.index_select(2, evicted).float())
        out_v.scatter_add_(2, index, values.index_select(2, evicted).float())
        count.scatter_add_(1, slot, torch.ones_like(slot, dtype=count.dtype))
    scale = count[None, :, :, None]
    return (out_k / scale).to(keys.dtype), (out_v / scale).to(values.dtype), merged


def mean_cosine_to_anchors(keys: torch.Tensor, candidates: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """c_t = mean over heads of (1/|H|) Σ_h cos(K_t, K_h): fp32 [n_candidates].

    Uses the identity mean_h cos(k_t, k_h) = k̂_t · mean_h k̂_h, so the cost is O((|L| + |H|)·D) per head.
    """
    k = F.normalize(keys[0].float(), dim=-1)             # [KV, n, D]
    centre = k[:, anchors].mean(dim=1, keepdim=True)      # [KV, 1, D]
    return (k[:, candidates] * centre).sum(-1).mean(0)
