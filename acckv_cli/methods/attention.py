"""Attention probabilities for scoring, recomputed from a layer's queries (any attention backend).

sdpa never returns probabilities (docs/qwen-omni-plumbing.md), and eager `output_attentions` costs O(H·L²)
memory. Methods therefore recompute only the query rows they need, in chunks, against the layer's cached
post-RoPE keys: memory O(H·chunk·L), never O(L²).

Shapes: hidden [1, L, hidden]; keys [1, KV, L, D]; cos/sin [1, L, D]; probabilities [H, q, L] in fp32.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from acckv_cli.methods.vocab import HEAD_REDUCTIONS, WEIGHTINGS  # noqa: F401  (defined torch-free, used here)

# Bytes of fp32 probabilities materialised per chunk of query rows.
CHUNK_BYTES = 64 * 2**20


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def project_queries(module, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                    rows: torch.Tensor) -> torch.Tensor:
    """Post-RoPE fp32 queries `[H, q, D]` of rows `rows` of `hidden`, exactly as the attention module makes them.

    `rows` index `hidden`, `cos` and `sin` (the rows of the current forward), not the whole prompt.
    """
    h = hidden[0, rows]
    q = module.q_proj(h).view(rows.numel(), -1, module.head_dim).transpose(0, 1)  # [H, q, D]
    if hasattr(module, "q_norm"):  # Qwen3-Omni normalises queries before RoPE (docs/qwen-omni-plumbing.md)
        q = module.q_norm(q)
    c, s = cos[0, rows].unsqueeze(0), sin[0, rows].unsqueeze(0)
    return (q * c + rotate_half(q) * s).float()


def attention_rows(module, hidden: torch.Tensor, keys: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   rows: torch.Tensor, chunk_bytes: int = CHUNK_BYTES, offset: int = 0):
    """Yield `(row_chunk, probs [H, c, L])`: causal softmax attention of the given prompt rows, in chunks.

    `rows` are prompt indices ≥ `offset`, where `offset` is the prompt index of `hidden`'s first row.
    Grouped-query attention is handled by viewing the H query heads as [KV, G] instead of repeating keys.
    """
    kv, L, D = keys.shape[1], keys.shape[2], keys.shape[3]
    H = module.q_proj.out_features // module.head_dim
    groups = H // kv
    k = keys[0].float()  # [KV, L, D]
    per_chunk = max(1, chunk_bytes // (4 * H * L))
    col = torch.arange(L, device=keys.device)
    for start in range(0, rows.numel(), per_chunk):
        r = rows[start:start + per_chunk]
        q = project_queries(module, hidden, cos, sin, r - offset)            # [H, c, D]
        logits = q.reshape(kv, groups * r.numel(), D) @ k.transpose(1, 2)       # [KV, G*c, L]
        logits = logits.view(H, r.numel(), L) * module.scaling
        logits.masked_fill_(col[None, None, :] > r[None, :, None], float("-inf"))
        yield r, logits.softmax(dim=-1)




def row_weights(rows: torch.Tensor, weighting: str) -> torch.Tensor | None:
    """Per-row weight of an accumulation: `none` (1) or `position` (i + 1, A-R's relative-to-uniform factor)."""
    if weighting == "none":
        return None
    if weighting == "position":
        return rows.float() + 1
    raise ValueError(f"unknown row weighting {weighting!r} (choose from {', '.join(WEIGHTINGS)})")


def accumulate_attention(module, hidden, keys, cos, sin, rows: torch.Tensor, weighting: str = "none",
                         offset: int = 0, chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """Σ_i w_i · A[h, i, :] over the prompt rows `rows` of the current forward: fp32 `[H, L]`.

    `rows` are prompt indices ≥ `offset` (the prompt index of `hidden`'s first row); w_i per `weighting`.
    """
    rows = rows.to(keys.device).sort().values
    return accumulate_queries(lambda r: project_queries(module, hidden, cos, sin, r - offset), rows, keys,
                              module, weighting, chunk_bytes)


@torch.no_grad()
def accumulate_queries(queries, rows: torch.Tensor, keys: torch.Tensor, module, weighting: str = "none",
                       chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """Σ_i w_i · softmax(q_i·K[:i+1]ᵀ·scale) over sorted prompt rows: fp32 `[H, L]`.

    `queries(r)` returns the post-RoPE fp32 queries `[H, c, D]` of the sorted prompt rows `r`, so the rows
    may come from the current forward or from queries recorded in an earlier prefill segment.

    Same numbers as summing `attention_rows`, computed with less work (the hot path of H2O, LOOK-M and
    A-R over all queries):
      * each chunk only computes the key columns it can see (`[0, last row]`), which halves the work for
        all-query scoring; only the chunk's own diagonal block needs the causal mask;
      * queries are scaled before the product (an `[H, c, D]` multiply instead of `[H, c, L]`);
      * the softmax is exponentiated in place and its normalisation and the (weighted) sum over the rows
        are one batched mat-vec `(w / Σ_j e_ij) · E`;
      * chunks grow while the visible width is small, keeping `H · rows · width · 4 ≤ chunk_bytes`.
    Memory O(H·chunk·L) (never L²); no Python loop over rows or heads.
    """
    kv, L, D = keys.shape[1], keys.shape[2], keys.shape[3]
    H = module.q_proj.out_features // module.head_dim
    groups = H // kv
    total = torch.zeros(H, L, dtype=torch.float32, device=keys.device)
    if rows.numel() == 0:
        return total
    weight = row_weights(rows, weighting)
    k = keys[0].float()  # [KV, L, D]
    width = (rows + 1).tolist()                       # visible key columns of each row (once, not per row)
    limit = max(1, chunk_bytes // (4 * H))            # rows × width allowed per chunk
    n, start = len(width), 0
    while start < n:
        lo, hi = 1, n - start                         # largest c with c · width[start + c − 1] ≤ limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if mid * width[start + mid - 1] <= limit:
                lo = mid
            else:
                hi = mid - 1
        stop = start + lo
        r = rows[start:stop]
        c, cols, first = r.numel(), width[stop - 1], width[start] - 1
        q = queries(r) * module.scaling                                           # [H, c, D]
        e = torch.bmm(q.reshape(kv, groups * c, D), k[:, :cols].transpose(1, 2)).view(H, c, cols)
        if first < cols - 1:  # causal mask on the chunk's diagonal block only
            col = torch.arange(first, cols, device=keys.device)
            e[:, :, first:].masked_fill_(col[None, None, :] > r[None, :, None], float("-inf"))
        e.sub_(e.amax(dim=-1, keepdim=True)).exp_()
        coef = e.sum(dim=-1).reciprocal_()                                        # [H, c]
        if weight is not None:
            coef.mul_(weight[start:stop][None, :])
        total[:, :cols] += torch.bmm(coef.unsqueeze(1), e).squeeze(1)
        start = stop
    return total




def reduce_heads(scores: torch.Tensor, how: str = "mean", n_kv: int = 1) -> torch.Tensor:
    """Per-query-head scores [H, L] → the granularity of selection.

    `mean` / `max` over all H heads → [L]: one set shared by every KV head.
    `kv_mean` / `kv_max` over the G = H / n_kv query heads of each KV head → [KV, L]: a set per KV head
    (kvpress's granularity for grouped-query attention; query head h belongs to KV head h // G).
    """
    if how in ("kv_mean", "kv_max"):
        grouped = scores.view(n_kv, scores.shape[0] // n_kv, *scores.shape[1:])
        return grouped.mean(1) if how == "kv_mean" else grouped.max(1).values
    if how == "mean":
        return scores.mean(0)
    if how == "max":
        return scores.max(0).values
    raise ValueError(f"unknown head reduction {how!r} (choose from {', '.join(HEAD_REDUCTIONS)})")


ATTENTION_NAME = "acckv_sdpa"


def acckv_sdpa(module, query, key, value, attention_mask, **kwargs):
    """sdpa that builds its causal mask from *its own layer's* key length.

    After compression the layers hold different numbers of slots, but transformers builds one mask for all
    layers from layer 0 (docs/qwen-omni-plumbing.md). Batch size 1 only (the compression context refuses larger batches).
    """
    q_len, k_len = query.shape[2], key.shape[2]
    kwargs.pop("is_causal", None)
    if q_len == k_len:  # prefill of an empty cache: plain causal attention, fast kernels
        return sdpa_attention_forward(module, query, key, value, None, is_causal=True, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if q_len == 1 and groups > 1 and query.shape[0] == 1 and not kwargs.get("output_attentions"):
        # Decode: the G query heads of a KV head attend as G queries of that head (no mask needed), which
        # on CPU is ~3× faster at 16k keys than sdpa's `enable_gqa` (issue #6); same numbers.
        b, h, _, d = query.shape
        out = torch.nn.functional.scaled_dot_product_attention(
            query.reshape(b, h // groups, groups, d), key, value, dropout_p=kwargs.get("dropout", 0.0),
            scale=kwargs.get("scaling"))
        return out.reshape(b, h, 1, value.shape[-1]).transpose(1, 2).contiguous(), None
    mask = None
    if q_len > 1:  # a multi-token chunk over a cache: query i sees keys [0, k_len - q_len + i]
        rows = torch.arange(q_len, device=query.device)[:, None] + (k_len - q_len)
        mask = (torch.arange(k_len, device=query.device)[None, :] <= rows)[None, None]
    return sdpa_attention_forward(module, query, key, value, mask, is_causal=False, **kwargs)


AttentionInterface.register(ATTENTION_NAME, acckv_sdpa)


@contextlib.contextmanager
def per_layer_attention(thinker):
    """Run the text decoder with `acckv_sdpa` (per-layer cache lengths) inside the block; restore after.

    Compressed layers hold different numbers of entries, so every forward after a compression — the
    question, the assistant header, each decoded token — must use it. Nesting is safe (LIFO restore).
    """
    config = thinker.get_decoder().layers[0].self_attn.config  # shared by every decoder layer
    saved = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        config._attn_implementation = saved
