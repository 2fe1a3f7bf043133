"""KV merging and key-cosine calibration, shared by LOOK-M and AccKV.

Shapes: keys/values [1, KV, L, D] (post-RoPE keys, as cached). Index tensors are prompt indices; a kept
set is [k] (shared by every KV head) or [KV, k] (one per KV head). Merging averages post-RoPE keys
directly, as LOOK-M does; nothing is re-rotated (re-rotation would break the 3-D mRoPE alignment).
"""

from __future__ import annotations

from acckv_cli.lazy import functional as F, torch

# fp32 similarity entries materialised per chunk of evicted tokens.
SIM_CHUNK_ELEMENTS = 16 * 2**20
MERGE_RULES = ("avg", "pivot", "weighted")


def nearest_targets(keys: torch.Tensor, sources: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """For each KV head, the index (into `targets`) of the most key-cosine-similar target of every source.

    Returns int64 [KV, n_sources]. Computed in chunks of sources so memory stays O(KV·chunk·n_targets).
    Only the targets are normalised: a source's norm scales its row of similarities by a positive
    constant, which never changes the row's arg-max. `max(-1).indices` (first maximum, like `argmax`)
    is used because it is ~3× faster than `argmax` on CPU.
    """
    return _nearest(keys[0], sources, targets)[0]


def _nearest(k: torch.Tensor, sources: torch.Tensor, targets: torch.Tensor, with_cosine: bool = False):
    """k [KV, L, D] → (target index [KV, s], cosine [KV, s] or None)."""
    tgt = F.normalize(k[:, targets].float(), dim=-1)   # [KV, t, D]
    tgt_t = tgt.transpose(1, 2)
    per_chunk = max(1, SIM_CHUNK_ELEMENTS // max(1, tgt.shape[0] * tgt.shape[1]))
    index, cosine = [], []
    for start in range(0, sources.numel(), per_chunk):
        src = k[:, sources[start:start + per_chunk]].float()    # [KV, c, D]
        if with_cosine:
            src = F.normalize(src, dim=-1)
        best = torch.bmm(src, tgt_t).max(dim=-1)
        index.append(best.indices)
        cosine.append(best.values)
    if not index:
        empty = torch.zeros(k.shape[0], 0, device=k.device)
        return empty.long(), (empty if with_cosine else None)
    return torch.cat(index, 1), (torch.cat(cosine, 1) if with_cosine else None)


def merge_into_kept(keys: torch.Tensor, values: torch.Tensor, keep: torch.Tensor, candidates: torch.Tensor,
                    labels: torch.Tensor | None = None, rule: str = "avg"):
    """Gather the kept entries and merge every evicted candidate into its most key-similar kept entry.

    keep:       [k] or [KV, k] sorted prompt indices (shared, or one set per KV head)
    candidates: bool [L], the entries that are merged when evicted (e.g. the media); others just go
    labels:     int [L] or None; when given, an entry only merges into kept entries with its label (AccKV's
                same-modality merge); entries with no kept entry of their label are evicted unmerged
    rule:       LOOK-M's merges, per KV head, target t(e) = most cosine-similar kept key, n_t entries:
                avg       k'_t = (k_t + Σ k_e) / (1 + n_t)
                pivot     k'_t = (k_t + Σ (k_e + k_t)/2) / (1 + n_t)      (one merged entry: ¾ k_t + ¼ k_e)
                weighted  k'_t = (k_t + Σ_{e∈F} c_e k_e) / (1 + |F ∩ S_t|), c_e the cosine to the target and
                          F the evicted entries whose c_e is at least the head's mean c_e (the rest are
                          dropped); the project filters per KV head, LOOK-M per slot over heads
                Values follow the keys' targets with the same arithmetic.
    Returns (keys [1, KV, k, D], values [1, KV, k, D], merged entries per label value or "all", mean over heads).
    `merge_counted` is the same merge for entries that already stand for several tokens (a streamed cache).
    """
    keys, values, merged, _ = merge_counted(keys, values, keep, candidates, labels, rule)
    return keys, values, merged


def merge_counted(keys: torch.Tensor, values: torch.Tensor, keep: torch.Tensor, candidates: torch.Tensor,
                  labels: torch.Tensor | None = None, rule: str = "avg", counts: torch.Tensor | None = None):
    """`merge_into_kept` where entry j already stands for w_j prompt tokens (`counts` [KV, L] fp32, None = 1).

    Every term of a rule is weighted by its entry's count and the denominator is the sum of the weights, so
    with `avg` a slot is the plain mean of every token it ever absorbed, however many steps merged into it:
    k'_t = (w_t k_t + Σ w_e k_e) / (w_t + Σ w_e); `pivot` weighs each (k_e + k_t)/2 by w_e, `weighted` each
    c_e k_e by w_e. With every count 1 this is exactly `merge_into_kept` (one-shot runs are unchanged).
    Without counts a streamed cache, which merges again after every step, would give a slot's latest
    absorbed entries as much weight as all its earlier ones together.
    Returns (keys, values, merged stats, counts [KV, k] fp32: tokens each kept entry now stands for).
    """
    if rule not in MERGE_RULES:
        raise ValueError(f"unknown merge rule {rule!r} (choose from {', '.join(MERGE_RULES)})")
    kv, L = keys.shape[1], keys.shape[2]
    rows = keep[None].expand(kv, -1) if keep.ndim == 1 else keep
    out_k, out_v, out_n = [], [], []
    merged: dict[str, float] = {}
    for h in range(kv):
        k_h, v_h, kept = keys[0, h].float(), values[0, h].float(), rows[h]
        w_h = counts[h].to(keys.device, torch.float32) if counts is not None else torch.ones(L, device=keys.device)
        own_k, own_v = k_h[kept], v_h[kept]
        count = w_h[kept].clone()
        slot_k, slot_v = own_k * count[:, None], own_v * count[:, None]   # weighted sums, divided at the end
        is_kept = torch.zeros(L, dtype=torch.bool, device=keys.device)
        is_kept[kept] = True
        evicted_all = candidates & ~is_kept
        groups = [("all", evicted_all, torch.arange(kept.numel(), device=keys.device))] if labels is None else [
            (str(int(lab)), evicted_all & (labels == lab), (labels[kept] == lab).nonzero().squeeze(1))
            for lab in labels[evicted_all].unique()]
        for name, evicted, slots in groups:
            evicted = evicted.nonzero().squeeze(1)
            if evicted.numel() == 0 or slots.numel() == 0:
                merged.setdefault(name, 0.0)
                continue
            target, cos = _nearest(k_h[None], evicted, kept[slots], with_cosine=rule == "weighted")
            target = slots[target[0]]
            src_k, src_v, src_w = k_h[evicted], v_h[evicted], w_h[evicted]
            if rule == "pivot":
                src_k = (src_k + own_k[target]) / 2
                src_v = (src_v + own_v[target]) / 2
            elif rule == "weighted":
                c = cos[0]
                use = c >= c.mean()
                target, src_w = target[use], src_w[use]
                src_k, src_v = src_k[use] * c[use, None], src_v[use] * c[use, None]
            slot_k.index_add_(0, target, src_k * src_w[:, None])
            slot_v.index_add_(0, target, src_v * src_w[:, None])
            count.index_add_(0, target, src_w)
            merged[name] = merged.get(name, 0.0) + int(target.numel()) / kv
        out_k.append(slot_k / count[:, None])
        out_v.append(slot_v / count[:, None])
        out_n.append(count)
    return (torch.stack(out_k)[None].to(keys.dtype), torch.stack(out_v)[None].to(values.dtype),
            {name: round(n, 2) for name, n in merged.items()}, torch.stack(out_n))


def kept_counts(counts: torch.Tensor | None, keep: torch.Tensor, kv: int) -> torch.Tensor:
    """Tokens each kept entry stands for, [KV, k] fp32: `counts` [KV, L] (None: 1 each) at `keep` ([k] or [KV, k])."""
    rows = keep[None].expand(kv, -1) if keep.ndim == 1 else keep
    if counts is None:
        return torch.ones(rows.shape, device=keep.device)
    return counts.to(keep.device).gather(1, rows)


def mean_cosine_to_anchors(keys: torch.Tensor, candidates: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """c_t = mean over heads of (1/|H|) Σ_h cos(K_t, K_h): fp32 [n_candidates].

    Uses the identity mean_h cos(k_t, k_h) = k̂_t · mean_h k̂_h, so the cost is O((|L| + |H|)·D) per head.
    """
    k = F.normalize(keys[0].float(), dim=-1)             # [KV, n, D]
    centre = k[:, anchors].mean(dim=1, keepdim=True)      # [KV, 1, D]
    return (k[:, candidates] * centre).sum(-1).mean(0)
