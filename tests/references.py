"""Independent reference implementations of the baselines and of AccKV's Attention Redistribution.

Pure functions on plain tensors (only torch; nothing from `acckv_cli`). Each one is written from the
published algorithm and the authors' (or the canonical re-implementation's) code, which is cited by
repository, commit, file and line. No code is copied: these are re-derivations meant to be read next to
the cited lines. docs/reference-review.md compares them with `acckv_cli/methods/`.

Conventions (all functions):
  * attention probabilities are causal softmax rows: `A[h, i, j]` = weight of query i on key j, 0 for j > i;
    H = query heads. Scores are computed in float64 and returned as float64.
  * kept indices are int64 prompt positions sorted ascending, per head where the method is per head
    (`[heads, k]`), or one shared 1-D set `[k]` where the method keeps one set for all heads.
    (The references themselves keep the cache in top-k order in some places, e.g. kvpress; attention is
    invariant to the order of cached entries because keys are stored after RoPE, so sorted is equivalent.)
  * GQA: query head h belongs to KV head h // G, G = H / KV (the layout `repeat_kv` produces).
  * ties in top-k are broken by `torch.topk`, like the references (unspecified order); tests should use
    continuous random data.

Reference snapshots used (git commit ids of the repositories read):
  kvpress          NVIDIA/kvpress@8bb29b9c3078452a86d692f29123fa6c793e2b05
  KVCache-Factory  Zefan-Cai/KVCache-Factory@c97f9d706d63d1b56e980f8b81b2a924c21162b3
                   (and @7ee6be0, its last 2024 state, where the cache is always stored per query head)
  SnapKV           FasterDecoding/SnapKV@e216ddc84c5bd210378cbdbbba12ba02102aa640
  H2O              FMInference/H2O@ac75c2a8a9e76832b2a4139b9363373b56336bfb
  LOOK-M           SUSTechBruce/LOOK-M@ecf0f51a9c416c2d85e47faf2638502f01a6d748
  FastV            pkunlp-icler/FastV@d1659729b5bf1be225e99ee15783deeea80f63b1
  DivPrune         vbdi/divprune@799e2d950aa01ba7860907f5a6d86061f885dca6
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "group_reduce",
    "accumulated_attention",
    "snapkv_scores",
    "snapkv_keep",
    "pyramidkv_budgets",
    "h2o_keep",
    "streamingllm_keep",
    "lookm_keep",
    "lookm_merge",
    "fastv_keep",
    "fastv_layer_keep",
    "accumulated_redistributed_scores",
    "divprune_order",
    "uniform_keep",
]


# --------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------

def group_reduce(scores: torch.Tensor, n_kv_heads: int, how: str = "mean") -> torch.Tensor:
    """[H, ...] per-query-head scores → [KV, ...] per-KV-head scores (query head h → KV head h // G).

    `mean` is what kvpress does (snapkv_press.py:98-100, observed_attention_press.py:48) and the default of
    KVCache-Factory's opt-in kv_head layout (pyramidkv_utils.py:252-270, `gqa_score_agg='mean'`).
    """
    H = scores.shape[0]
    if H % n_kv_heads:
        raise ValueError(f"{H} query heads are not a multiple of {n_kv_heads} KV heads")
    grouped = scores.reshape(n_kv_heads, H // n_kv_heads, *scores.shape[1:])
    if how == "mean":
        return grouped.mean(1)
    if how == "max":
        return grouped.amax(1)
    if how == "sum":
        return grouped.sum(1)
    raise ValueError(f"unknown group reduction {how!r}")


def accumulated_attention(attn: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_{i ∈ rows} A[..., i, j]: float64 [..., L] (all rows when `rows` is None). H2O's column sum."""
    a = attn.double()
    if rows is not None:
        a = a[..., torch.as_tensor(rows, dtype=torch.long), :]
    return a.sum(-2)


def _sorted_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest entries of each row, sorted ascending: int64 [rows, k]."""
    return scores.topk(k, dim=-1).indices.sort(dim=-1).values


# --------------------------------------------------------------------------------------------------------
# SnapKV
# --------------------------------------------------------------------------------------------------------

def snapkv_scores(attn_window: torch.Tensor, kernel_size: int = 5, *, n_kv_heads: int | None = None,
                  pooling: str = "avg", variant: str = "kvpress") -> torch.Tensor:
    """SnapKV importance of the non-window keys: float64 `[KV, L − W]` (or `[H, L − W]`, see `variant`).

    attn_window: `[H, W, L]` causal softmax probabilities of the last W prompt queries (the observation
    window) over all L keys. Only the columns `[0, L − W)` are scored; the window itself is always kept.

    variant = "kvpress" (NVIDIA/kvpress@8bb29b9 kvpress/presses/snapkv_press.py, SnapKVPress.score):
      1. mean over the W window rows of the columns `[0, L−W)`   (l.89 / l.67 slice, l.95 mean)
      2. `avg_pool1d(kernel, stride 1, padding kernel//2)` along keys with PyTorch's default
         `count_include_pad=True`: zero padding outside `[0, L−W)` counts in the divisor, so the two
         first and two last non-window keys are pulled down (l.96). Window columns never enter the pool.
      3. mean over the G query heads of each KV head (l.98-100; SnapKV issue #22)   → `[KV, L−W]`
    variant = "factory_query_head" (Zefan-Cai/KVCache-Factory@c97f9d7 pyramidkv/pyramidkv_utils.py
      SnapKVCluster.update_kv l.509-525; identical to FasterDecoding/SnapKV@e216ddc
      snapkv/monkeypatch/snapkv_utils.py l.45-61): sum (not mean; same ranking) over the window rows, then
      pooling per *query head*. The cache is stored after `repeat_kv` (llama_model.py:173-174 →
      pyramidkv_utils.py:133-139; SnapKV llama_hijack_4_37.py:76-77), so every query head keeps its own
      set → `[H, L−W]`. KVCache-Factory's LongBench driver uses `pooling='maxpool'`, kernel 7, window 8
      (run_longbench.py:267-284); the cluster's own default is avgpool/5/64 (SnapKV's configs: maxpool/7/32).
    variant = "factory_kv_head" (opt-in `kv_cache_granularity='kv_head'`, _grouped_window_attn_cache
      l.273-298): sum over rows, group reduction (`mean`) *before* pooling, then pooling → `[KV, L−W]`.
      For avg pooling this equals the kvpress order of operations; for max pooling it does not.

    pooling: "avg" or "max" (max pooling pads with −inf, i.e. padding never wins).
    """
    H, W, L = attn_window.shape
    if not 0 < W < L:
        raise ValueError(f"window {W} must be shorter than the prompt {L}")
    s = attn_window[:, :, : L - W].double().mean(1)                 # [H, L−W]  (sum ≡ mean up to 1/W)

    def pool(x: torch.Tensor) -> torch.Tensor:
        if pooling == "avg":
            return F.avg_pool1d(x[:, None], kernel_size, stride=1, padding=kernel_size // 2,
                                count_include_pad=True)[:, 0]
        if pooling == "max":
            return F.max_pool1d(x[:, None], kernel_size, stride=1, padding=kernel_size // 2)[:, 0]
        raise ValueError(f"unknown pooling {pooling!r}")

    if variant == "kvpress":
        if n_kv_heads is None:
            raise ValueError("kvpress scores per KV head: give n_kv_heads")
        return group_reduce(pool(s), n_kv_heads, "mean")
    if variant == "factory_query_head":
        return pool(s)
    if variant == "factory_kv_head":
        if n_kv_heads is None:
            raise ValueError("the kv_head layout needs n_kv_heads")
        return pool(group_reduce(s, n_kv_heads, "mean"))
    raise ValueError(f"unknown snapkv variant {variant!r}")


def snapkv_keep(attn_window: torch.Tensor, n_keep: int, kernel_size: int = 5, window: int | None = 64, *,
                n_kv_heads: int | None = None, pooling: str = "avg", variant: str = "kvpress") -> torch.Tensor:
    """Kept prompt indices per KV head (per query head for `factory_query_head`): int64 `[KV, n_keep]`, sorted.

    attn_window: `[H, W, L]` probabilities of the last W queries (W must equal `window` unless window is None).
    n_keep: total cache entries kept per head, **window included** (kvpress: `int(L·(1 − ratio))`,
    scorer_press.py:94; KVCache-Factory: `max_capacity_prompt`).

    kvpress (snapkv_press.py:102-103 + scorer_press.py:93-100): the window columns are appended to the
    scores with value `scores.max() + 1` (a global max, over all heads), so a top-`n_keep` over all L keys
    per KV head always contains the whole window when `n_keep ≥ W`, plus the `n_keep − W` best non-window
    keys of that KV head. KVCache-Factory/SnapKV take top-`(n_keep − W)` of the non-window scores and
    concatenate the window explicitly (pyramidkv_utils.py:526-538; snapkv_utils.py:62-69) — same set.
    Differences between them are only in the scores (see `snapkv_scores`) and in granularity.
    With `n_keep < W` kvpress would keep an arbitrary part of the window (ties); refused here.
    Not modelled: KVCache-Factory/SnapKV skip compression entirely when L < max_capacity_prompt
    (pyramidkv_utils.py:506-507) — callers pass n_keep ≤ L.
    """
    H, W, L = attn_window.shape
    if window is not None and window != W:
        raise ValueError(f"attn_window has {W} window rows but window={window}")
    scores = snapkv_scores(attn_window, kernel_size, n_kv_heads=n_kv_heads, pooling=pooling, variant=variant)
    if n_keep >= L:
        return torch.arange(L).expand(scores.shape[0], L).clone()
    if n_keep < W:
        raise ValueError(f"n_keep={n_keep} is smaller than the window {W} (the references leave this undefined)")
    past = scores.topk(n_keep - W, dim=-1).indices                    # top of [0, L−W), per head
    win = torch.arange(L - W, L).expand(scores.shape[0], W)
    return torch.cat([past, win], dim=1).sort(dim=1).values


# --------------------------------------------------------------------------------------------------------
# PyramidKV
# --------------------------------------------------------------------------------------------------------

def pyramidkv_budgets(L: int, window: int, ratio_or_capacity: float, n_layers: int, beta: float = 20, *,
                      variant: str = "kvpress") -> torch.Tensor:
    """Per-layer cache sizes, **window included**, for a prompt of L tokens: int64 `[n_layers]`.

    ratio_or_capacity: ≤ 1 → keep ratio ρ (kvpress: ρ = 1 − compression_ratio); > 1 → total entries per
    layer C (KVCache-Factory's `max_capacity_prompt`). Layer ℓ = 0 is the first (largest) layer.

    variant = "kvpress" (NVIDIA/kvpress@8bb29b9 kvpress/presses/pyramidkv_press.py get_layer_budget l.47-84):
        B   = L·ρ (float; with a capacity C, B = C)                     l.70: cap = W + B
        min = B/β ;  max = 2B − min                                      l.72-73 (as (cap − W)/β, 2(cap − W) − min)
        if max ≥ L − W:  max = L − W ;  min = 2B − max                   l.75-77
        if not (L ≥ max ≥ min ≥ W):  every layer gets round(B)          l.79-81  (uniform fallback)
        budget_ℓ = round(max − ℓ·(max − min)/(N − 1))                    l.83-84 (Python round: half to even)
      The budget is the *total* kept per KV head (it is the top-k size over scores that include the padded
      window, l.104-105), so kvpress puts the pyramid on the total and its mean is B (± rounding). The
      fallback fires unless min ≥ W, i.e. B ≥ β·W (1280 entries at β = 20, W = 64).
    variant = "factory" (Zefan-Cai/KVCache-Factory@c97f9d7 pyramidkv/pyramidkv_utils.py
      PyramidKVCluster.update_kv l.348-438; same arithmetic in @7ee6be0 l.205-215):
        min = (C − W) // β ;  max = 2(C − W) − min                       l.360-361 (integer //)
        if max ≥ L − W:  max = L − W ;  min = 2(C − W) − max            l.364-366
        steps = (max − min) // (N − 1) ;  cap_ℓ = max − ℓ·steps        l.369-370
        L < C              → no compression, L entries                   l.373-374
        L < 2(C − W)       → uniform: top-(C − W) + window = C           l.375-406 (l.393)
        otherwise          → top-cap_ℓ + window = cap_ℓ + W              l.407-438 (l.425)
      Here the pyramid applies to the **non-window** part; the W window entries are added to every layer.
      With C = ρ·L the mean is C + (a little, because `steps` is floored), never below C.
      KVCache-Factory's driver converts a ratio with C = round(L·ρ) (run_longbench.py:262-263).
    For N = 1 both would divide by zero; the uniform budget is returned.
    """
    if ratio_or_capacity <= 0:
        raise ValueError("ratio_or_capacity must be positive")
    W, N = window, n_layers
    if variant == "kvpress":
        B = L * ratio_or_capacity if ratio_or_capacity <= 1 else float(ratio_or_capacity)
        lo = B / beta
        hi = 2 * B - lo
        if hi >= L - W:
            hi = L - W
            lo = 2 * B - hi
        if N < 2 or not (L >= hi >= lo >= W):
            return torch.full((N,), round(B), dtype=torch.long)
        steps = (hi - lo) / (N - 1)
        return torch.tensor([round(hi - layer * steps) for layer in range(N)], dtype=torch.long)
    if variant == "factory":
        C = round(L * ratio_or_capacity) if ratio_or_capacity <= 1 else int(ratio_or_capacity)
        if C - W <= 0:
            raise ValueError("KVCache-Factory asserts max_capacity_prompt > window_size")
        if L < C:
            return torch.full((N,), L, dtype=torch.long)
        if L < 2 * (C - W) or N < 2:
            return torch.full((N,), C, dtype=torch.long)
        lo = int((C - W) // beta)
        hi = 2 * (C - W) - lo
        if hi >= L - W:
            hi = L - W
            lo = 2 * (C - W) - hi
        steps = (hi - lo) // (N - 1)
        return torch.tensor([hi - layer * steps + W for layer in range(N)], dtype=torch.long)
    raise ValueError(f"unknown pyramidkv variant {variant!r}")


# --------------------------------------------------------------------------------------------------------
# H2O
# --------------------------------------------------------------------------------------------------------

def h2o_keep(attn_all: torch.Tensor, hh_size: int, recent_size: int, *, n_kv_heads: int | None = None,
             group: str = "mean", n_sink_forced: int = 0) -> torch.Tensor:
    """H2O prefill-time selection per head: int64 `[heads, hh_size + recent_size]`, sorted.

    attn_all: `[H, L, L]` causal probabilities of all prompt queries.

    FMInference/H2O@ac75c2a h2o_hf/utils_real_drop/modify_llama.py, H2OKVCache_LayerWise (the real-eviction
    version): after the prefill forward, `_update_hh_score` (l.317-326) sets
    `hh_score[h, j] = Σ_b Σ_i A[b, h, i, j]` — the plain column sum over **all** prompt queries, per
    attention head, **not normalised** by the number of queries that see j. `__call__` (l.258-287): if
    L ≤ hh + recent nothing is evicted; else keep the top-`hh_size` of `hh_score[:, :L − recent]` (sorted,
    l.271-273) plus the last `recent_size` positions (l.276). Decoding then accumulates each new row and
    evicts one entry per step (l.289-315); the prefill-once setting stops after this first selection.
    The code is MHA-only: it indexes the [B, KV, L, D] cache with an [H, L] mask (l.279-283), which only
    works when H = KV. `n_kv_heads` ports it to GQA by reducing the scores over each group first
    (`group`, as kvpress ObservedAttentionPress l.48 and KVCache-Factory's kv_head path l.887-888 do);
    without it the result is per query head (KVCache-Factory's default: the cache is stored after
    repeat_kv, so every query head keeps its own set, pyramidkv_utils.py:830-860).

    LOOK-M's `h2o` mode (SUSTechBruce/LOOK-M@ecf0f51 .../kv_token_merge/modify_llama.py
    H2OKVCache_LayerWise l.852-904) is the same selection with hh = int(L·hh_ratio),
    recent = int(L·recent_ratio) (l.853-856; scripts: 0.1 and 0.1) and runs only at prefill
    (H2OLlamaAttention_drop.forward l.1417-1418: `q_len != 1`). Its merge modes without text prior
    (avg_merge, pivot_merge, weighted_merge) additionally force positions 0-3 into the heavy set by setting
    their score to +inf (l.284, l.482, l.584): `n_sink_forced=4`.
    The original simulated H2O (h2o_hf/utils_hh/modify_llama.py l.122-163) uses int(ratio·L) budgets and
    masks attention instead of dropping entries; its recent mask covers L+1 columns, so prompt position
    L − recent is neither recent nor a candidate (an off-by-one not reproduced here).
    """
    H, L, L2 = attn_all.shape
    if L != L2:
        raise ValueError("attn_all must be [H, L, L]")
    if L <= hh_size + recent_size:
        heads = H if n_kv_heads is None else n_kv_heads
        return torch.arange(L).expand(heads, L).clone()
    scores = accumulated_attention(attn_all)                                      # [H, L]
    if n_kv_heads is not None:
        scores = group_reduce(scores, n_kv_heads, group)
    cand = scores[:, : L - recent_size].clone()
    if n_sink_forced:
        cand[:, :n_sink_forced] = float("inf")
    heavy = cand.topk(hh_size, dim=-1).indices if hh_size > 0 else cand[:, :0].long()
    recent = torch.arange(L - recent_size, L).expand(scores.shape[0], recent_size)
    return torch.cat([heavy, recent], dim=1).sort(dim=1).values


# --------------------------------------------------------------------------------------------------------
# StreamingLLM
# --------------------------------------------------------------------------------------------------------

def streamingllm_keep(L: int, n_sink: int, n_keep: int) -> torch.Tensor:
    """First `n_sink` positions + the last `n_keep − n_sink`: int64 `[min(n_keep, L)]`, sorted, all heads alike.

    NVIDIA/kvpress@8bb29b9 kvpress/presses/streaming_llm_press.py l.48-54: scores are 1 except
    `[n_sink, n_sink + n_pruned)` with `n_pruned = L − n_keep`, then top-`n_keep`. KVCache-Factory@c97f9d7
    StreamingLLMKVCluster l.930-942 keeps `arange(C − W)` of the non-window part plus the window, with
    W = C − 4 in its driver (run_longbench.py:269-270) — the same set with n_sink = 4.
    The paper also re-numbers positions inside the cache (kvpress: only with KeyRerotationPress,
    streaming_llm_press.py:22); in a prefill-once compression of post-RoPE keys nothing is re-rotated.
    With n_keep ≤ n_sink the references are ambiguous (ties in kvpress); the first n_keep are returned.
    """
    if n_keep >= L:
        return torch.arange(L)
    if n_keep <= n_sink:
        return torch.arange(n_keep)
    return torch.cat([torch.arange(n_sink), torch.arange(L - (n_keep - n_sink), L)])


# --------------------------------------------------------------------------------------------------------
# LOOK-M
# --------------------------------------------------------------------------------------------------------

def lookm_keep(attn_all: torch.Tensor, is_text: torch.Tensor, hh_ratio: float = 0.1, recent_ratio: float = 0.1,
               *, n_kv_heads: int | None = None) -> torch.Tensor:
    """LOOK-M text-prior selection: bool mask `[heads, L]` of kept entries (same count in every head).

    SUSTechBruce/LOOK-M@ecf0f51 LLaVA-mix_merge_v1/llava/model/kv_token_merge/modify_llama.py,
    TextPivotMerge_LayerWise.__call__ l.659-696 (identical selection in TextAVGMerge l.358-396 and
    TextWeightedMerge l.754-792); run once at prefill (l.1417-1418):
      hh = int(L·hh_ratio), recent = int(L·recent_ratio)                      l.661-663 (scripts: 0.1/0.1)
      score[h, j] = Σ_i A[h, i, j] (all prompt queries, per head, unnormalised)  l.715-725
      image positions and the last `recent` positions get −65516 added        l.679-687
      top-hh over positions [0, L − recent) → text tokens rank above every image token, images among
        themselves by score                                                   l.688-689
      kept = (score ≥ 0 after zeroing the top-hh and the recent window)       l.691-693
           = every text token (always, even beyond hh) ∪ top-hh ∪ last `recent` positions.
    So text is always kept, the hh slots are consumed by the text outside the recent window first, and the
    images get max(0, hh − #text outside the window) heavy slots; the recent window is positional over
    *all* tokens (it covers the trailing text too).
    Precision quirk not reproduced: the offset is added in the attention dtype (bf16 under the released
    autocast, workers/model_workers.py:97), where −65516 + s rounds to −65536 for every s < 128, so image
    heavy hitters are effectively chosen by top-k tie order, not by attention. Here the intended order
    (text first, then images by score, float64) is used.
    is_text: bool `[L]`, True for non-image (here: non-AV) tokens. `n_kv_heads`: reduce the per-query-head
    scores by group mean first (the reference model, LLaVA-1.5/Llama-2, is MHA: heads = KV heads).
    """
    H, L, _ = attn_all.shape
    heads = H if n_kv_heads is None else n_kv_heads
    hh, recent = int(L * hh_ratio), int(L * recent_ratio)
    if L <= hh + recent:
        return torch.ones(heads, L, dtype=torch.bool)
    scores = accumulated_attention(attn_all)
    if n_kv_heads is not None:
        scores = group_reduce(scores, n_kv_heads, "mean")
    is_text = is_text.bool()
    rank = torch.where(is_text, scores + scores.max() + 1, scores)            # text before any image
    keep = torch.zeros(heads, L, dtype=torch.bool)
    if hh > 0:
        keep.scatter_(1, rank[:, : L - recent].topk(hh, dim=-1).indices, True)
    if recent > 0:
        keep[:, L - recent:] = True
    keep |= is_text[None, :]
    return keep


def lookm_merge(keys: torch.Tensor, values: torch.Tensor, keep_per_head: torch.Tensor, mode: str = "avg", *,
                reference_quirks: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """LOOK-M merge compensation per head: merged `(keys, values)` `[heads, k, D]` float64, kept in position order.

    keys/values: `[heads, L, D]` (post-RoPE keys as cached); keep_per_head: bool `[heads, L]` with the same
    count k in every head (or int64 `[heads, k]`). Heads are independent (LOOK-M runs on MHA LLaVA, so
    "per head" = per KV head; for GQA pass the KV heads).

    Common part (SUSTechBruce/LOOK-M@ecf0f51 .../kv_token_merge/modify_llama.py, text-prior classes
    l.400-403 avg, l.700-702 pivot, l.796-799 weighted): per head, the evicted entries E (ascending
    positions) and the kept entries K (ascending positions) are compared by **key cosine similarity**;
    every evicted e goes to t(e) = argmax_t cos(k_e, k_t) over **all** kept entries (text, image, recent),
    m(e) = that max cosine. Values follow the key-derived targets. Let S_t = {e : t(e) = t}, n_t = |S_t|.

      avg      (l.411-413)  k'_t = (k_t + Σ_{e∈S_t} k_e) / (1 + n_t)       (scatter_reduce 'mean', include_self)
      pivot    (l.704-711)  p_e = (k_e + k_{t(e)}) / 2 ;  k'_t = (k_t + Σ_{e∈S_t} p_e) / (1 + n_t)
                            = (k_t·(1 + n_t/2) + ½·Σ_{e∈S_t} k_e) / (1 + n_t)
                            one evicted e: k'_t = ¾·k_t + ¼·k_e  (avg gives ½·k_t + ½·k_e). Same for v with v_t.
                            No filter: every evicted entry is merged.
      weighted (l.800-810)  filter F = {e : mean_heads m(e) ≥ mean_{heads, E} m} — computed on the e-th
                            evicted *slot* of each head (ordinal in its sorted E), shared by all heads;
                            k'_t = (k_t + Σ_{e∈S_t∩F} m(e)·k_e) / (1 + |S_t∩F|)
                            (the denominator counts entries, it is not 1 + Σ m, so merged slots shrink);
                            v'_t likewise with the same key cosines m(e). Evicted entries outside F are dropped.

    reference_quirks=True reproduces the released avg code literally (TextAVGMerge l.405-413 and
    AVGMerge l.507-515): the weighted-merge filter F is computed there too, the targets are those of the
    filtered entries, but the scattered sources are the first |F| evicted entries in position order
    (`src=k_hh_pruned`, unfiltered, with an index of length |F|: torch uses src[:, :|F|]). So the m-th
    filtered entry's target receives the m-th evicted entry. With quirks off, avg merges every evicted entry
    into its own target (the paper's averaged merging). Pivot and weighted have no such quirk.
    Numerics not reproduced: the code normalises with `k/‖k‖` (no epsilon; a zero key gives NaN) in bf16.
    """
    if mode not in ("avg", "pivot", "weighted"):
        raise ValueError(f"unknown LOOK-M merge {mode!r}")
    heads, L, D = keys.shape
    if keep_per_head.dtype == torch.bool:
        mask = keep_per_head
    else:
        mask = torch.zeros(heads, L, dtype=torch.bool)
        mask.scatter_(1, keep_per_head.long(), True)
    counts = mask.sum(1)
    if not bool((counts == counts[0]).all()):
        raise ValueError("every head must keep the same number of entries")
    k64, v64 = keys.double(), values.double()
    kept_idx = [mask[h].nonzero().squeeze(1) for h in range(heads)]
    ev_idx = [(~mask[h]).nonzero().squeeze(1) for h in range(heads)]
    out_k = torch.stack([k64[h, kept_idx[h]] for h in range(heads)])           # [heads, k, D]
    out_v = torch.stack([v64[h, kept_idx[h]] for h in range(heads)])
    n_ev = ev_idx[0].numel()
    if n_ev == 0:
        return out_k, out_v
    ev_k = torch.stack([k64[h, ev_idx[h]] for h in range(heads)])              # [heads, e, D]
    ev_v = torch.stack([v64[h, ev_idx[h]] for h in range(heads)])
    cos = F.normalize(ev_k, dim=-1) @ F.normalize(out_k, dim=-1).transpose(1, 2)  # [heads, e, k]
    best, target = cos.max(dim=-1)                                              # m(e), t(e)

    if mode == "pivot":
        src_k = (ev_k + torch.gather(out_k, 1, target[..., None].expand(-1, -1, D))) / 2
        src_v = (ev_v + torch.gather(out_v, 1, target[..., None].expand(-1, -1, D))) / 2
        tgt = target
    elif mode == "avg" and not reference_quirks:
        src_k, src_v, tgt = ev_k, ev_v, target
    else:  # weighted, or avg with the released code's filter
        passed = best.mean(0) >= best.mean()                                     # [e], shared by all heads
        tgt = target[:, passed]
        if mode == "weighted":
            w = best[:, passed, None]
            src_k, src_v = w * ev_k[:, passed], w * ev_v[:, passed]
        else:
            n_f = int(passed.sum())
            src_k, src_v = ev_k[:, :n_f], ev_v[:, :n_f]
    sum_k = out_k.clone().scatter_add_(1, tgt[..., None].expand(-1, -1, D), src_k)
    sum_v = out_v.clone().scatter_add_(1, tgt[..., None].expand(-1, -1, D), src_v)
    n = torch.ones(heads, out_k.shape[1], dtype=torch.float64).scatter_add_(
        1, tgt, torch.ones(tgt.shape, dtype=torch.float64))
    return sum_k / n[..., None], sum_v / n[..., None]


# --------------------------------------------------------------------------------------------------------
# FastV
# --------------------------------------------------------------------------------------------------------

def fastv_keep(attn_layer_k_minus_1: torch.Tensor, image_token_range, K: int = 2, R: float = 0.5) -> torch.Tensor:
    """Prompt positions that survive FastV's pruning at the input of layer K: int64 `[L']`, sorted, one set.

    attn_layer_k_minus_1: `[H, L, L]` causal probabilities of layer K − 1 (or just its last row, `[H, L]`).
    image_token_range: `(start, end)` of the contiguous image span (FastV's `SYS_LENGTH`,
    `SYS_LENGTH + IMAGE_TOKEN_LENGTH`), or a bool mask `[L]` of the visual tokens (generalisation for
    interleaved audio/video spans; the reference knows one span only).

    pkunlp-icler/FastV@d165972 src/transformers/src/transformers/models/llama/modeling_llama.py
    (LlamaModel.forward, `fast_v_inplace`, l.730-760) and the HF port
    src/FastV/llava-hf/transformers/src/transformers/models/llama/modeling_llama.py (fastv_forward l.1033-1108):
      a = mean over heads of layer K−1's attention, row of the **last prompt token**     l.740-742 / 1042-1044
      keep round(N_img·(1 − R)) image tokens with the largest a (HF port l.1048; the original takes an
        absolute count `fast_v_attention_rank`, l.746)
      keep every token before and after the image span; sort                          l.748-750 / 1050-1052
    Prune mode (what "inplace" does), at the input of layer K (l.736-760 / 1038-1063):
      * hidden_states = hidden_states[:, keep] — the dropped tokens leave the sequence for layers ≥ K, so
        survivors' hidden states in layers ≥ K are computed without them (unlike a KV-only emulation);
      * position_ids = keep — survivors keep their **original** positions (RoPE is not renumbered);
      * a fresh causal mask over the new length;
      * layers < K ran on the full sequence and (HF port with use_cache, l.1035-1036) keep their full KV
        cache of L entries; layers ≥ K cache only the L' survivors. Decoding tokens continue at position L.
      * layer K−1 is run with output_attentions=True to obtain the row (l.1105-1106); K ≥ 1 (assert l.725).
    The mask mode (l.764-808) instead masks the dropped image columns for layers ≥ K without removing
    tokens (no FLOPs saved); its K = 0 branch keeps a random subset.
    """
    if K < 1:
        raise ValueError("FastV asserts K > 0")
    a = attn_layer_k_minus_1.double()
    row = a[:, -1, :] if a.dim() == 3 else a                                    # [H, L]
    score = row.mean(0)                                                          # [L]
    L = score.numel()
    if isinstance(image_token_range, torch.Tensor):
        image = image_token_range.bool()
    else:
        start, end = image_token_range
        image = torch.zeros(L, dtype=torch.bool)
        image[start:end] = True
    img_idx = image.nonzero().squeeze(1)
    n_keep = round(img_idx.numel() * (1 - R))
    best = img_idx[score[img_idx].topk(n_keep).indices] if n_keep > 0 else img_idx[:0]
    return torch.cat([(~image).nonzero().squeeze(1), best]).sort().values


def fastv_layer_keep(L: int, keep: torch.Tensor, K: int, n_layers: int) -> list[torch.Tensor]:
    """Per-layer cached prompt positions under FastV prune mode: layers < K hold all L, layers ≥ K hold `keep`."""
    full = torch.arange(L)
    return [full if layer < K else keep for layer in range(n_layers)]


# --------------------------------------------------------------------------------------------------------
# AccKV Attention Redistribution
# --------------------------------------------------------------------------------------------------------

def accumulated_redistributed_scores(A: torch.Tensor, rows=None, mode: str = "visible_count") -> torch.Tensor:
    """AccKV A-R score s_j = Σ_{i ∈ rows} Â[i, j],  Â[i, j] = A[i, j]·(i + 1) / c_j:  float64 `[..., L]`.

    A: `[..., L, L]` causal probabilities (rows = queries i, columns = keys j, 0-indexed; any leading dims,
    e.g. heads). rows: query indices summed (default all L). AccKV (arXiv 2511.11106) gives
    Â = A·(i + 1)/(n − j): (i + 1)·A[i, j] is attention relative to uniform over the i + 1 visible keys and
    the divisor averages over the queries that see key j. Modes:
      visible_count  c_j = |{i ∈ rows : i ≥ j}|, weight i + 1 — exact for any row set (the default here)
      paper          c_j = n − j, weight i + 1 — equals visible_count when rows = all
      column_mean    c_j = n − j, weight 1 (kvpress ObservedAttentionPress, observed_attention_press.py:44-47)
      none           c_j = 1, weight 1 (raw H2O accumulation)
    Keys that no summed row can see (c_j = 0) score 0.

    Property: uniform attention A[i, j] = 1/(i + 1) gives s_j = 1 for every key that some summed row can
    see, whatever the row set (`paper` keeps n − j and so turns a restricted row set into a recency prior):

    >>> L = 6
    >>> A = torch.tril(torch.ones(L, L, dtype=torch.float64)) / torch.arange(1, L + 1)[:, None]
    >>> [round(x, 9) for x in accumulated_redistributed_scores(A, rows=torch.tensor([2, 5])).tolist()]
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    >>> [round(x, 9) for x in accumulated_redistributed_scores(A, rows=torch.tensor([3])).tolist()]
    [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    >>> [round(x, 3) for x in accumulated_redistributed_scores(A, rows=torch.tensor([3]), mode="paper").tolist()]
    [0.167, 0.2, 0.25, 0.333, 0.0, 0.0]
    """
    a = A.double()
    L = a.shape[-1]
    rows = torch.arange(L) if rows is None else torch.as_tensor(rows, dtype=torch.long).reshape(-1)
    i = rows.double()
    j = torch.arange(L)
    if mode in ("visible_count", "paper"):
        weighted = (a[..., rows, :] * (i + 1)[:, None]).sum(-2)
    elif mode in ("column_mean", "none"):
        weighted = a[..., rows, :].sum(-2)
    else:
        raise ValueError(f"unknown redistribution mode {mode!r}")
    if mode == "visible_count":
        c = (rows[:, None] >= j[None, :]).sum(0).double()
    elif mode in ("paper", "column_mean"):
        c = (L - j).double()
    else:
        c = torch.ones(L, dtype=torch.float64)
    return torch.where(c > 0, weighted / c.clamp(min=1), torch.zeros((), dtype=torch.float64))


# --------------------------------------------------------------------------------------------------------
# DivPrune
# --------------------------------------------------------------------------------------------------------

def divprune_order(features: torch.Tensor, k: int) -> torch.Tensor:
    """DivPrune's greedy Max–Min Diversity selection: int64 `[k]` token indices in the order picked.

    vbdi/divprune@799e2d9 LLaVA/llava/model/llava_arch.py: `pairwise_cosine_similarity` l.147-150 and
    `DivPrune` l.152-171, called on the visual embeddings at the LLM input when LAYER_INDEX == 0 (l.365-381):
      D = 1 − cos(x_i, x_j), the full N × N matrix (here float64)                          l.154-155
      pick 0: per column j the second-smallest entry of D[:, j] — the smallest is the token's own
              distance 0, so this is its nearest other token — and the argmax over j         l.165, 169
      pick i: per column j the minimum of D[s, j] over the picked rows s, argmax over j      l.163, 167, 169
    torch.argmax returns the first maximum: ties go to the lowest index. (Picked tokens score 0 and are not
    picked again unless every remaining token duplicates one of them; continuous data never does that.)
    """
    x = features.double()
    x = x / x.norm(dim=1, keepdim=True)
    D = 1.0 - x @ x.T
    picked = [int(D.sort(dim=0).values[1].argmax())]
    while len(picked) < k:
        picked.append(int(D[picked].min(dim=0).values.argmax()))
    return torch.tensor(picked, dtype=torch.long)


# --------------------------------------------------------------------------------------------------------
# uniform (no paper: the rule stated in acckv_cli/methods/uniform.py, re-derived with plain Python)
# --------------------------------------------------------------------------------------------------------

def uniform_keep(times: list[float], kinds: list[str], k: int) -> list[int]:
    """Sorted positions of k tokens evenly spaced in time, per kind in proportion to its count.

    times/kinds: one entry per candidate token (kinds "video" or "audio"; anything else is not a candidate).
    Quotas: k·n_m/N rounded down, the slots left to the largest fractional parts (exact fractions), a tie to
    video. Within kind m, its tokens sorted by (time, position) and the token at rank ⌊(i + ½)·n_m/k_m⌋ kept
    for i = 0 … k_m − 1 (the middle of each of k_m equal strata).
    """
    from fractions import Fraction

    groups = {m: [i for i, kind in enumerate(kinds) if kind == m] for m in ("video", "audio")}
    total = sum(len(g) for g in groups.values())
    k = min(k, total)
    exact = {m: Fraction(k * len(g), total) if total else Fraction(0) for m, g in groups.items()}
    quota = {m: int(e) for m, e in exact.items()}  # floor: e ≥ 0
    by_fraction = sorted(groups, key=lambda m: (-(exact[m] - quota[m]), ("video", "audio").index(m)))
    for m in by_fraction[: k - sum(quota.values())]:
        quota[m] += 1
    kept = []
    for m, members in groups.items():
        ordered = sorted(members, key=lambda i: (times[i], i))
        n = len(ordered)
        kept += [ordered[int(Fraction(2 * i + 1, 2) * n / quota[m])] for i in range(quota[m])]
    return sorted(kept)
