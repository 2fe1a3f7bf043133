"""Attention probabilities for scoring, recomputed from a layer's queries (any attention backend).

sdpa never returns probabilities (qwen-omni-notes §8), and eager `output_attentions` costs O(H·L²)
memory. Methods therefore recompute only the query rows they need, in chunks, against the layer's cached
post-RoPE keys: memory O(H·chunk·L), never O(L²).

Shapes: hidden [1, L, hidden]; keys [1, KV, L, D]; cos/sin [1, L, D]; probabilities [H, q, L] in fp32.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

# Bytes of fp32 probabilities materialised per chunk of query rows.
CHUNK_BYTES = 64 * 2**20


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def project_queries(module, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                    rows: torch.Tensor) -> torch.Tensor:
    """Post-RoPE fp32 queries `[H, q, D]` of prompt rows `rows`, exactly as the attention module makes them."""
    h = hidden[0, rows]
    q = module.q_proj(h).view(rows.numel(), -1, module.head_dim).transpose(0, 1)  # [H, q, D]
    if hasattr(module, "q_norm"):  # Qwen3-Omni normalises queries before RoPE (notes pitfall 9)
        q = module.q_norm(q)
    c, s = cos[0, rows].unsqueeze(0), sin[0, rows].unsqueeze(0)
    return (q * c + rotate_half(q) * s).float()


def attention_rows(module, hidden: torch.Tensor, keys: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   rows: torch.Tensor, chunk_bytes: int = CHUNK_BYTES):
    """Yield `(row_chunk, probs [H, c, L])`: causal softmax attention of the given query rows, in chunks.

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
        q = project_queries(module, hidden, cos, sin, r)                     # [H, c, D]
        logits = q.reshape(kv, groups * r.numel(), D) @ k.transpose(1, 2)       # [KV, G*c, L]
        logits = logits.view(H, r.numel(), L) * module.scaling
        logits.masked_fill_(col[None, None, :] > r[None, :, None], float("-inf"))
        yield r, logits.softmax(dim=-1)


def accumulate_attention(module, hidden, keys, cos, sin, rows: torch.Tensor,
                         row_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_i w_i · A[h, i, :] over the query rows: fp32 `[H, L]` (w = 1 when `row_weight` is None)."""
    H = module.q_proj.out_features // module.head_dim
    total = torch.zeros(H, keys.shape[2], dtype=torch.float32, device=keys.device)
    for r, probs in attention_rows(module, hidden, keys, cos, sin, rows):
        if row_weight is not None:
            probs = probs * row_weight[r].to(probs)[None, :, None]
        total += probs.sum(dim=1)
    return total


def reduce_heads(scores: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """[H, L] → [L]: one score per token, so every KV head keeps the same tokens."""
    if how == "mean":
        return scores.mean(0)
    if how == "max":
        return scores.max(0).values
    raise ValueError(f"unknown head reduction {how!r} (choose mean or max)")


ATTENTION_NAME = "acckv_sdpa"


def acckv_sdpa(module, query, key, value, attention_mask, **kwargs):
    """sdpa that builds its causal mask from *its own layer's* key length.

    After compression the layers hold different numbers of slots, but transformers builds one mask for all
    layers from layer 0 (notes §9). Batch size 1 only (the compression context refuses larger batches).
    """
    q_len, k_len = query.shape[2], key.shape[2]
    kwargs.pop("is_causal", None)
    if q_len == k_len:  # prefill of an empty cache: plain causal attention, fast kernels
        return sdpa_attention_forward(module, query, key, value, None, is_causal=True, **kwargs)
    mask = None
    if q_len > 1:  # a multi-token chunk over a cache: query i sees keys [0, k_len - q_len + i]
        rows = torch.arange(q_len, device=query.device)[:, None] + (k_len - q_len)
        mask = (torch.arange(k_len, device=query.device)[None, :] <= rows)[None, None]
    return sdpa_attention_forward(module, query, key, value, mask, is_causal=False, **kwargs)


AttentionInterface.register(ATTENTION_NAME, acckv_sdpa)
