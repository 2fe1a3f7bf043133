"""Self-checks of tests/references.py on small random tensors (no model, no acckv_cli)."""

from __future__ import annotations

import doctest

import pytest
import torch

import references as R

torch.set_num_threads(1)


def causal_probs(H: int, L: int, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(H, L, L, generator=g, dtype=torch.float64) * scale
    logits = logits.masked_fill(torch.triu(torch.ones(L, L, dtype=torch.bool), 1), float("-inf"))
    return logits.softmax(-1)


def uniform_causal(L: int) -> torch.Tensor:
    return torch.tril(torch.ones(L, L, dtype=torch.float64)) / torch.arange(1, L + 1, dtype=torch.float64)[:, None]


def test_docstring_examples():
    assert doctest.testmod(R).failed == 0


# --- A-R --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows", [None, [0], [5], [3, 17, 29], list(range(20, 30)), [29]])
def test_redistribution_uniform_attention_scores_one_for_any_rows(rows):
    L = 30
    s = R.accumulated_redistributed_scores(uniform_causal(L), rows)
    last = L - 1 if rows is None else max(rows)
    torch.testing.assert_close(s[: last + 1], torch.ones(last + 1, dtype=torch.float64))
    assert bool((s[last + 1:] == 0).all())


def test_redistribution_modes():
    L = 24
    A = causal_probs(3, L)
    # all rows: paper == visible_count; column_mean == kvpress ObservedAttention (column sum / (n − j))
    torch.testing.assert_close(R.accumulated_redistributed_scores(A, None, "paper"),
                               R.accumulated_redistributed_scores(A, None, "visible_count"))
    col = A.sum(-2) / torch.arange(L, 0, -1, dtype=torch.float64)
    torch.testing.assert_close(R.accumulated_redistributed_scores(A, None, "column_mean"), col)
    torch.testing.assert_close(R.accumulated_redistributed_scores(A, None, "none"), A.sum(-2))
    # a restricted row set: paper divides by n − j, a recency prior on uniform attention
    s = R.accumulated_redistributed_scores(uniform_causal(L), list(range(20, 24)), "paper")
    assert bool((s[1:20] > s[:19]).all())
    # leading dims: per head equals head by head
    rows = [4, 9, 23]
    per_head = torch.stack([R.accumulated_redistributed_scores(A[h], rows) for h in range(3)])
    torch.testing.assert_close(R.accumulated_redistributed_scores(A, rows), per_head)


# --- SnapKV -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant,pooling", [("kvpress", "avg"), ("factory_query_head", "max"),
                                             ("factory_kv_head", "avg"), ("factory_kv_head", "max")])
def test_snapkv_window_always_kept(variant, pooling):
    H, KV, L, W, k = 8, 2, 100, 16, 40
    A = causal_probs(H, L, seed=1)
    keep = R.snapkv_keep(A[:, -W:], k, 5, W, n_kv_heads=KV, pooling=pooling, variant=variant)
    heads = H if variant == "factory_query_head" else KV
    assert keep.shape == (heads, k) and keep.dtype == torch.long
    assert bool((keep[:, 1:] > keep[:, :-1]).all())                        # sorted, distinct
    assert bool(torch.isin(torch.arange(L - W, L), keep[0]).all())
    assert all(bool(torch.isin(torch.arange(L - W, L), row).all()) for row in keep)


def test_snapkv_kvpress_scores_by_hand():
    H, KV, L, W = 4, 2, 30, 6
    A = causal_probs(H, L, seed=2)
    s = R.snapkv_scores(A[:, -W:], 5, n_kv_heads=KV)
    mean = A[:, -W:, : L - W].mean(1)                                       # [H, L−W]
    padded = torch.nn.functional.pad(mean, (2, 2))
    pooled = torch.stack([padded[:, j:j + 5].sum(1) / 5 for j in range(L - W)], 1)   # zeros count (include_pad)
    torch.testing.assert_close(s, pooled.view(KV, H // KV, L - W).mean(1))
    # group heads differ in their own sets (factory_query_head) but share one per KV head (kvpress)
    per_q = R.snapkv_keep(A[:, -W:], 12, 5, W, variant="factory_query_head")
    per_kv = R.snapkv_keep(A[:, -W:], 12, 5, W, n_kv_heads=KV)
    assert per_q.shape[0] == H and per_kv.shape[0] == KV


def test_snapkv_refuses_budget_below_window():
    A = causal_probs(2, 40)
    with pytest.raises(ValueError):
        R.snapkv_keep(A[:, -8:], 5, 5, 8, n_kv_heads=2)


# --- PyramidKV --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("L,rho,W,N", [(20000, 0.1, 64, 28), (8000, 0.2, 8, 36), (4096, 0.5, 64, 32)])
def test_pyramidkv_kvpress_decreasing_and_mean_uniform(L, rho, W, N):
    b = R.pyramidkv_budgets(L, W, rho, N)
    assert b.dtype == torch.long and b.shape == (N,)
    assert bool((b[1:] <= b[:-1]).all()) and b[0] > b[-1]
    assert float(b.double().mean()) == pytest.approx(L * rho, abs=0.5)
    assert int(b.min()) >= W


def test_pyramidkv_kvpress_falls_back_to_uniform_below_beta_window():
    # B = 1000 < β·W = 1280: min = B/β = 50 < W → uniform
    b = R.pyramidkv_budgets(10000, 64, 0.1, 28)
    assert b.tolist() == [1000] * 28
    # the same budget with an 8-token window is a pyramid
    assert len(set(R.pyramidkv_budgets(10000, 8, 0.1, 28).tolist())) > 1


def test_pyramidkv_factory_pyramid_on_non_window_part():
    L, W, N, C = 8000, 8, 32, 1600
    b = R.pyramidkv_budgets(L, W, C, N, variant="factory")
    assert bool((b[1:] <= b[:-1]).all()) and b[0] > b[-1]
    assert C <= float(b.double().mean()) <= C + (N - 1) / 2                 # floored `steps` → mean ≥ C
    lo = (C - W) // 20
    assert int(b[0]) == 2 * (C - W) - lo + W                                 # window added on top of max
    # short prompts: uniform (L < 2(C − W)) and no compression (L < C)
    assert R.pyramidkv_budgets(3000, W, C, N, variant="factory").tolist() == [C] * N
    assert R.pyramidkv_budgets(1500, W, C, N, variant="factory").tolist() == [1500] * N


# --- H2O --------------------------------------------------------------------------------------------------

def test_h2o_per_head_sets_differ_and_recent_kept():
    H, L, hh, rc = 6, 80, 10, 8
    A = causal_probs(H, L, seed=3)
    keep = R.h2o_keep(A, hh, rc)
    assert keep.shape == (H, hh + rc)
    assert len({tuple(row.tolist()) for row in keep}) > 1                    # per-head selection
    assert all(bool(torch.isin(torch.arange(L - rc, L), row).all()) for row in keep)
    # heavy hitters = top column sums over all queries (unnormalised) among [0, L − rc)
    col = A.sum(1)
    for h in range(H):
        heavy = keep[h][keep[h] < L - rc]
        assert set(heavy.tolist()) == set(col[h, : L - rc].topk(hh).indices.tolist())


def test_h2o_gqa_reduction_and_sinks():
    H, KV, L = 8, 2, 60
    A = causal_probs(H, L, seed=4)
    keep = R.h2o_keep(A, 6, 6, n_kv_heads=KV)
    assert keep.shape == (KV, 12)
    forced = R.h2o_keep(A, 6, 6, n_sink_forced=4)
    assert all(bool(torch.isin(torch.arange(4), row).all()) for row in forced)
    assert R.h2o_keep(A, 40, 20).shape == (H, L)                              # L ≤ hh + recent: keep all


# --- StreamingLLM -----------------------------------------------------------------------------------------

def test_streamingllm_keep():
    assert R.streamingllm_keep(20, 4, 10).tolist() == [0, 1, 2, 3, 14, 15, 16, 17, 18, 19]
    assert R.streamingllm_keep(20, 4, 30).tolist() == list(range(20))
    assert R.streamingllm_keep(20, 4, 3).tolist() == [0, 1, 2]


# --- LOOK-M -----------------------------------------------------------------------------------------------

def lookm_case(seed=5, H=4, L=100, D=8):
    g = torch.Generator().manual_seed(seed)
    A = causal_probs(H, L, seed=seed)
    keys = torch.randn(H, L, D, generator=g, dtype=torch.float64)
    values = torch.randn(H, L, D, generator=g, dtype=torch.float64)
    is_text = torch.ones(L, dtype=torch.bool)
    is_text[10:80] = False                                                   # 10 text, 70 image, 20 text
    return A, keys, values, is_text


def test_lookm_keep_text_prior():
    A, _, _, is_text = lookm_case()
    L = is_text.numel()
    keep = R.lookm_keep(A, is_text, 0.2, 0.1)
    hh, rc = 20, 10
    n_text_outside = int(is_text[: L - rc].sum())                            # 20 text tokens outside the window
    assert bool(keep[:, is_text].all())                                      # text always kept
    assert bool(keep[:, L - rc:].all())
    n_img = hh - n_text_outside
    assert (keep[:, ~is_text].sum(1) == n_img).all()                         # hh slots go to text first
    assert (keep.sum(1) == keep.sum(1)[0]).all()
    # the kept images are the top column sums among images, per head
    col = A.sum(1)
    img = (~is_text).nonzero().squeeze(1)
    for h in range(A.shape[0]):
        best = img[col[h, img].topk(n_img).indices]
        assert bool(keep[h, best].all())


def test_lookm_avg_merge_identity_on_identical_vectors():
    H, L, D = 3, 12, 4
    keys = torch.randn(H, 1, D, dtype=torch.float64).expand(H, L, D).clone()
    values = torch.randn(H, 1, D, dtype=torch.float64).expand(H, L, D).clone()
    keep = torch.zeros(H, L, dtype=torch.bool)
    keep[:, ::3] = True
    for mode in ("avg", "pivot", "weighted"):   # weighted too: cosine 1 → weight 1, every entry passes the filter
        mk, mv = R.lookm_merge(keys, values, keep, mode)
        torch.testing.assert_close(mk, keys[:, ::3])
        torch.testing.assert_close(mv, values[:, ::3])


def test_lookm_merge_arithmetic_and_modes_differ():
    A, keys, values, is_text = lookm_case()
    keep = R.lookm_keep(A, is_text, 0.2, 0.1)
    avg_k, avg_v = R.lookm_merge(keys, values, keep, "avg")
    piv_k, piv_v = R.lookm_merge(keys, values, keep, "pivot")
    w_k, _ = R.lookm_merge(keys, values, keep, "weighted")
    assert not torch.allclose(avg_k, piv_k) and not torch.allclose(avg_k, w_k)
    # by hand for head 0: targets by key cosine over all kept entries
    h = 0
    kept = keep[h].nonzero().squeeze(1)
    ev = (~keep[h]).nonzero().squeeze(1)
    kn = torch.nn.functional.normalize(keys[h], dim=-1)
    tgt = (kn[ev] @ kn[kept].T).argmax(1)
    for slot in range(kept.numel()):
        src = ev[tgt == slot]
        n = src.numel()
        kt, vt = keys[h, kept[slot]], values[h, kept[slot]]
        torch.testing.assert_close(avg_k[h, slot], (kt + keys[h, src].sum(0)) / (1 + n))
        torch.testing.assert_close(piv_k[h, slot], (kt + ((keys[h, src] + kt) / 2).sum(0)) / (1 + n))
        torch.testing.assert_close(piv_v[h, slot], (vt + ((values[h, src] + vt) / 2).sum(0)) / (1 + n))
        if n == 1:
            torch.testing.assert_close(piv_k[h, slot], 0.75 * kt + 0.25 * keys[h, src[0]])


def test_lookm_reference_quirks_only_change_avg():
    A, keys, values, is_text = lookm_case(seed=6)
    keep = R.lookm_keep(A, is_text, 0.2, 0.1)
    quirky, _ = R.lookm_merge(keys, values, keep, "avg", reference_quirks=True)
    plain, _ = R.lookm_merge(keys, values, keep, "avg")
    assert not torch.allclose(quirky, plain)
    for mode in ("pivot", "weighted"):
        a, _ = R.lookm_merge(keys, values, keep, mode, reference_quirks=True)
        b, _ = R.lookm_merge(keys, values, keep, mode)
        torch.testing.assert_close(a, b)


# --- FastV ------------------------------------------------------------------------------------------------

def test_fastv_keep():
    H, L = 4, 50
    A = causal_probs(H, L, seed=7)
    keep = R.fastv_keep(A, (5, 45), K=2, R=0.5)
    assert keep.numel() == 5 + 20 + 5
    assert bool(torch.isin(torch.arange(5), keep).all()) and bool(torch.isin(torch.arange(45, 50), keep).all())
    row = A[:, -1].mean(0)
    assert set(keep[(keep >= 5) & (keep < 45)].tolist()) == set((row[5:45].topk(20).indices + 5).tolist())
    # the last row alone gives the same set; a mask gives the same set as the range
    assert torch.equal(R.fastv_keep(A[:, -1], (5, 45)), keep)
    mask = torch.zeros(L, dtype=torch.bool)
    mask[5:45] = True
    assert torch.equal(R.fastv_keep(A, mask), keep)
    layers = R.fastv_layer_keep(L, keep, K=2, n_layers=4)
    assert [t.numel() for t in layers] == [L, L, 30, 30]
    with pytest.raises(ValueError):
        R.fastv_keep(A, (5, 45), K=0)
