"""Baselines on a tiny random Qwen2.5-Omni thinker, and each method against an independent reference.

The references (`tests/references.py`) are written from the published algorithms and their authors' code
(kvpress, KVCache-Factory, H2O, LOOK-M, FastV), independently of `acckv_cli.methods`; here they receive the
same attention matrix as the method (random hidden states and keys through a real attention module) and
must give the same kept sets (and merged entries).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import references
from acckv_cli.model.layout import Modality, build_layout, layout_for_inputs
from acckv_cli.methods import Budget, LayerContext, get_method
from acckv_cli.methods.acckv import AccKV, redistributed_scores
from acckv_cli.methods.attention import attention_rows
from acckv_cli.methods.taskfocus import question_focus
from acckv_cli.testing.tiny import TinySpec, build_tiny_thinker

N_LAYERS = 6  # enough depth for a pyramid and for several FastV layers after K = 2


@pytest.fixture(scope="module")
def clip():
    thinker, processor = build_tiny_thinker(TinySpec(text_layers=N_LAYERS))
    conv = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What instrument plays?"}]}]
    text = processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (8, 240, 320, 3), dtype=np.uint8)           # 4 s at 2 fps
    wav = (rng.standard_normal(64000) * 0.1).astype(np.float32)                 # 4 s at 16 kHz
    inputs = processor(text=text, videos=[frames], audio=[wav], load_audio_from_video=True,
                       audio_from_video_indices=[0], return_tensors="pt",
                       videos_kwargs={"fps": 2.0, "size": {"shortest_edge": 4 * 784, "longest_edge": 64 * 784},
                                      "cap_pixels_per_frame": True})
    layout = layout_for_inputs(thinker, processor, inputs, True)
    assert layout.counts()["audio"] > 0 and layout.counts()["video"] > 0
    return thinker, inputs, layout


def run(clip, method, budget, layout=None, new_tokens=1):
    """Compress one prefill; returns (per-layer records, captured (ctx tensors, LayerResult), generated ids, cache)."""
    thinker, inputs, default_layout = clip
    captured = []
    original = method.compress_layer

    def recording(ctx):
        result = original(ctx)
        captured.append(({"keys": ctx.keys.clone(), "values": ctx.values.clone(), "ctx": ctx}, result))
        return result

    method.compress_layer = recording  # instance attribute shadows the method for this run only
    with method(thinker, layout or default_layout, Budget(budget)) as comp:
        out = thinker.generate(**inputs, use_audio_in_video=True, max_new_tokens=new_tokens, do_sample=False,
                               return_dict_in_generate=True)
    return comp.layers, captured, out.sequences[0, -new_tokens:].tolist(), out.past_key_values


def protected_count(layout) -> int:
    return int(layout.protected_mask.sum())


def kept_by_modality(layout, keep) -> dict[str, int]:
    mod = layout.modality[keep.cpu()]
    return {"audio": int((mod == Modality.AUDIO).sum()), "video": int((mod == Modality.VIDEO).sum())}


# --- shared contract ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["pyramidkv", "lookm", "fastv", "taskfocus", "snapkv", "h2o"])
def test_contract_and_full_budget_matches_full(clip, name):
    thinker, inputs, layout = clip
    _, _, full_ids, _ = run(clip, get_method("full"), 1.0, new_tokens=3)
    layers, captured, ids, _ = run(clip, get_method(name), 1.0, new_tokens=3)
    assert ids == full_ids
    assert all(r["keep"].shape[-1] == len(layout) for r in layers)
    layers, captured, _, _ = run(clip, get_method(name), 0.5)
    protected = layout.protected_mask.nonzero().squeeze(1)
    for record, (_, result) in zip(layers, captured):
        keep = record["keep"]
        for row in (keep[None] if keep.ndim == 1 else keep):
            assert torch.equal(row, row.sort().values) and row.unique().numel() == row.numel()
            assert torch.isin(protected, row).all()
        json.dumps(result.stats)


# --- against the independent references, on random tensors -------------------------------------------

L_RANDOM = 96


def random_context(thinker, labels: list[int], budget: float, layer_idx: int = 0, n_layers: int = 1, seed: int = 0):
    """A LayerContext over random hidden states and keys, and its causal attention A [H, L, L] (fp32)."""
    gen = torch.Generator().manual_seed(seed)
    module = thinker.get_decoder().layers[0].self_attn
    L, kv, D = len(labels), module.config.num_key_value_heads, module.head_dim
    hidden = torch.randn(1, L, module.config.hidden_size, generator=gen)
    keys = torch.randn(1, kv, L, D, generator=gen)
    values = torch.randn(1, kv, L, D, generator=gen)
    cos, sin = torch.ones(1, L, D), torch.zeros(1, L, D)  # identity rotation: keys are random anyway
    positions = torch.arange(L)[None].expand(3, L)
    layout = build_layout(positions, torch.tensor(labels, dtype=torch.int8), 25.0, 1.0)
    ctx = LayerContext(layer_idx, n_layers, module, hidden, cos, sin, keys, values, layout, Budget(budget), {})
    with torch.no_grad():
        (_, attn), = list(attention_rows(module, hidden, keys, cos, sin, torch.arange(L)))
    return ctx, attn


ALL_MEDIA = [int(Modality.VIDEO)] * L_RANDOM  # no protected entry: the references' own setting


def kept_sets(result) -> torch.Tensor:
    keep = result.keep
    return keep[None] if keep.ndim == 1 else keep


@pytest.mark.parametrize("budget", [0.3, 0.5])
@pytest.mark.parametrize("head_reduction", ["kv_mean", "mean"])
def test_snapkv_equals_kvpress(tiny, budget, head_reduction):
    thinker, _ = tiny
    W = 16
    ctx, attn = random_context(thinker, ALL_MEDIA, budget)
    method = get_method("snapkv", window_size=W, head_reduction=head_reduction)
    result = method.compress_layer(ctx)
    n_keep = Budget(budget).media_tokens(L_RANDOM)
    n_kv = ctx.keys.shape[1] if head_reduction == "kv_mean" else 1
    expected = references.snapkv_keep(attn[:, -W:], n_keep, 5, W, n_kv_heads=n_kv)
    assert torch.equal(kept_sets(result), expected)


@pytest.mark.parametrize("budget, recent_share", [(0.3, 0.5), (0.5, 0.25)])
def test_h2o_equals_reference(tiny, budget, recent_share):
    thinker, _ = tiny
    ctx, attn = random_context(thinker, ALL_MEDIA, budget)
    result = get_method("h2o", recent_share=recent_share).compress_layer(ctx)
    slots = Budget(budget).media_tokens(L_RANDOM)
    recent = round(slots * recent_share)
    expected = references.h2o_keep(attn, slots - recent, recent, n_kv_heads=ctx.keys.shape[1])
    assert torch.equal(kept_sets(result), expected)


def test_streamingllm_equals_kvpress(tiny):
    thinker, _ = tiny
    ctx, _ = random_context(thinker, ALL_MEDIA, 0.25)
    result = get_method("streamingllm").compress_layer(ctx)
    assert torch.equal(result.keep, references.streamingllm_keep(L_RANDOM, 4, Budget(0.25).media_tokens(L_RANDOM)))


@pytest.mark.parametrize("n_media, ratio, n_layers", [(10000, 0.2, 28), (4000, 0.1, 36), (2000, 0.05, 28)])
def test_pyramidkv_schedule_equals_kvpress(n_media, ratio, n_layers):
    """kvpress's PyramidKVPress schedule on the media budget (no window to subtract: it is inside it)."""
    uniform = Budget(ratio).media_tokens(n_media)
    assert uniform / 20 >= 1  # where the project's one-entry floor does not bind
    ours = get_method("pyramidkv").media_budgets(n_media, n_layers, uniform)
    assert torch.equal(ours, references.pyramidkv_budgets(n_media, 0, ratio, n_layers, variant="kvpress"))


@pytest.mark.parametrize("rule", ["avg", "pivot", "weighted"])
def test_lookm_merges_equal_reference(tiny, rule):
    """Per KV head (one KV head for `weighted`, whose reference filter is shared across heads)."""
    thinker, _ = tiny
    ctx, attn = random_context(thinker, ALL_MEDIA, 0.3)
    if rule == "weighted":
        ctx.keys, ctx.values = ctx.keys[:, :1], ctx.values[:, :1]
    result = get_method("lookm", merge=rule, head_reduction="kv_mean").compress_layer(ctx)
    keep = kept_sets(result)
    exp_k, exp_v = references.lookm_merge(ctx.keys[0], ctx.values[0], keep, rule)
    torch.testing.assert_close(result.keys[0].double(), exp_k, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.values[0].double(), exp_v, atol=1e-5, rtol=1e-5)


def test_lookm_selection_per_kv_head_is_h2o_with_recent_media(tiny):
    thinker, _ = tiny
    ctx, attn = random_context(thinker, ALL_MEDIA, 0.4)
    result = get_method("lookm").compress_layer(ctx)
    slots = Budget(0.4).media_tokens(L_RANDOM)
    recent = round(slots * 0.5)
    assert torch.equal(kept_sets(result), references.h2o_keep(attn, slots - recent, recent, n_kv_heads=ctx.keys.shape[1]))


def test_fastv_kept_set_equals_reference(tiny):
    thinker, _ = tiny
    labels = [int(Modality.SYSTEM)] * 6 + ALL_MEDIA[:80] + [int(Modality.QUESTION)] * 10
    K = 2
    ctx, attn = random_context(thinker, labels, 0.25, layer_idx=K - 1, n_layers=4)
    get_method("fastv", ratio=0.75, mode="kv_emulate").compress_layer(ctx)
    media = torch.tensor(labels) == int(Modality.VIDEO)
    expected = references.fastv_keep(attn, media, K, R=0.75)
    assert torch.equal(ctx.shared["fastv_keep"], expected)


# --- AccKV against an independent reference ---------------------------------------------------------------

MIXED = ([int(Modality.SYSTEM)] * 6 + [int(Modality.DELIM)] * 2
         + ([int(Modality.VIDEO)] * 14 + [int(Modality.AUDIO)] * 8) * 3 + [int(Modality.DELIM)] * 2
         + [int(Modality.QUESTION)] * 8 + [int(Modality.DELIM), int(Modality.TEXT)])


def split_over_bins(k: int, sizes: list[int]) -> list[int]:
    """k slots over bins in proportion to their sizes, the leftover slots to the largest remainders."""
    exact = [k * n / sum(sizes) for n in sizes]
    share = [math.floor(x) for x in exact]
    order = sorted(range(len(sizes)), key=lambda i: exact[i] - share[i], reverse=True)
    for i in order[: k - sum(share)]:
        share[i] += 1
    return share


def z_scores(x: torch.Tensor) -> torch.Tensor:
    """(x − mean) / sample standard deviation (n − 1), in float64."""
    x = x.double()
    return (x - x.mean()) / math.sqrt(float(((x - x.mean()) ** 2).sum()) / (x.numel() - 1))


def reference_salience(keys: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """1 − cosine of each token's key to the mean unit key of the tokens `idx`, averaged over KV heads."""
    out = []
    for h in range(keys.shape[1]):
        k = keys[0, h, idx].double()
        unit = k / k.norm(dim=-1, keepdim=True)
        centre = unit.mean(0) / unit.mean(0).norm()
        out.append(1 - unit @ centre)
    return torch.stack(out).mean(0)


def evenly_in_time(layout, idx: torch.Tensor, k: int) -> list[int]:
    """k of `idx` at the middles of k equal strata of the (time, position) order."""
    order = sorted(idx.tolist(), key=lambda i: (float(layout.time_s[i]), i))
    return [order[(2 * i + 1) * len(order) // (2 * k)] for i in range(k)]


def acckv_reference(ctx, attn, budget: float, tau: float, merge: bool, coverage_s: float | None = None,
                    salience: float = 0.0, skeleton: float = 0.0, flat_kurtosis: dict | None = None, pooling: int = 1):
    """AccKV's kept set, written from the method description with plain tensor code:
    A-R over the text rows after the media (c_j = rows that see j), A-F weights = ratio of the per-token
    means, quotas k_m ∝ W_m·n_m (rounded, capped, overflow to the other), top-k_m per modality, merge of
    every other token of m into its most key-similar kept token of m (per KV head, mean), then calibration:
    drop kept low-priority tokens whose mean key cosine (over KV heads and high-priority anchors) < τ.
    With `skeleton`, round(skeleton·k_m) of m's slots first go to evenly spaced tokens of m; with `salience`,
    the rest are ranked by z(score) + salience·z(key salience), z over all tokens of m. With `flat_kurtosis`
    ({"video": κ_v, "audio": κ_a}), a modality whose ranking has mean(z⁴) below its κ has all its slots laid evenly.
    With `pooling` k > 1, each token's ranking is first the plain mean of the k tokens of its modality centred on it
    (missing neighbours at the ends count as 0)."""
    labels = ctx.layout.modality
    video, audio = labels == int(Modality.VIDEO), labels == int(Modality.AUDIO)
    media = video | audio
    last_media = int(media.nonzero().max())
    rows = torch.tensor([i for i in range(len(labels)) if i > last_media])
    s = references.accumulated_redistributed_scores(attn, rows, "visible_count").mean(0)    # [L]
    mean_v, mean_a = float(s[video].mean()), float(s[audio].mean())
    w = {"video": mean_v / (mean_v + mean_a), "audio": mean_a / (mean_v + mean_a)}
    n = {"video": int(video.sum()), "audio": int(audio.sum())}
    slots = Budget(budget).media_tokens(int(media.sum()))
    k_video = min(n["video"], round(slots * w["video"] * n["video"] / (w["video"] * n["video"] + w["audio"] * n["audio"])))
    k_audio = min(n["audio"], slots - k_video)
    k_video = min(n["video"], slots - k_audio)
    masks = {"video": video, "audio": audio}
    kept = [(~media).nonzero().squeeze(1)]
    for name, k in (("video", k_video), ("audio", k_audio)):
        idx = masks[name].nonzero().squeeze(1)
        rank = s.clone().double()
        if salience:
            rank[idx] = z_scores(s[idx]) + salience * z_scores(reference_salience(ctx.keys, idx))
        if pooling > 1:
            own = rank[idx].tolist()
            half = pooling // 2
            rank[idx] = torch.tensor([sum(own[j] for j in range(i - half, i + half + 1) if 0 <= j < len(own)) / pooling
                                      for i in range(len(own))], dtype=rank.dtype)
        share = skeleton
        threshold = (flat_kurtosis or {}).get(name, 0.0)
        if threshold and float((z_scores(rank[idx]) ** 4).mean()) < threshold:
            share = 1.0
        if share:
            base = evenly_in_time(ctx.layout, idx, round(share * k))
            kept.append(torch.tensor(base, dtype=torch.long))
            idx = torch.tensor([i for i in idx.tolist() if i not in base], dtype=torch.long)
            k -= len(base)
        s_m = rank
        if coverage_s is None:
            kept.append(idx[s_m[idx].topk(k).indices])
            continue
        bins = [int(math.floor(float(ctx.layout.time_s[i]) / coverage_s)) for i in idx.tolist()]
        values = sorted(set(bins))
        members = [[i for i, b in zip(idx.tolist(), bins) if b == v] for v in values]
        for group, share in zip(members, split_over_bins(k, [len(m) for m in members])):
            group = torch.tensor(group)
            kept.append(group[s_m[group].topk(share).indices])
    keep = torch.cat(kept).sort().values
    K, V = ctx.keys[0].double(), ctx.values[0].double()
    out_k, out_v = K[:, keep].clone(), V[:, keep].clone()
    if merge:
        count = torch.ones(K.shape[0], keep.numel(), dtype=torch.float64)
        for name, mask in masks.items():
            kept_m = [i for i, p in enumerate(keep.tolist()) if mask[p]]
            for h in range(K.shape[0]):
                for e in (mask & ~torch.isin(torch.arange(len(labels)), keep)).nonzero().squeeze(1).tolist():
                    sims = F.cosine_similarity(K[h, e][None], K[h, keep[kept_m]], dim=-1)
                    slot = kept_m[int(sims.argmax())]
                    out_k[h, slot] += K[h, e]
                    out_v[h, slot] += V[h, e]
                    count[h, slot] += 1
        out_k, out_v = out_k / count[..., None], out_v / count[..., None]
    high = max(w, key=w.get)
    low = "audio" if high == "video" else "video"
    is_high, is_low = masks[high][keep], masks[low][keep]
    cos = torch.stack([F.cosine_similarity(out_k[h, is_low][:, None], out_k[h, is_high][None], dim=-1).mean(1)
                       for h in range(K.shape[0])]).mean(0)
    survive = torch.ones(keep.numel(), dtype=torch.bool)
    survive[is_low.nonzero().squeeze(1)[cos < tau]] = False
    return keep[survive], out_k[:, survive], out_v[:, survive], high


class LowestScored(AccKV):
    """Plausible bug 1: keeps the lowest-scored tokens of each modality."""

    def top_of(self, ctx, kind, scores, k, skeleton=None):
        idx = ctx.mask(kind).nonzero().squeeze(1)
        return idx[scores[idx].topk(min(k, idx.numel()), largest=False).indices].sort().values


class EvictsMostSimilar(AccKV):
    """Plausible bug 2: calibration evicts the low-priority tokens most similar to the anchors."""

    def calibration_drop(self, c):
        return c >= self.tau


class InvertedWeights(AccKV):
    """Plausible bug 3: modality weights inverted (the lighter modality becomes the priority)."""

    def modality_weights(self, ctx, scores):
        return {k: 1.0 - w for k, w in super().modality_weights(ctx, scores).items()}


def check_acckv(thinker, method, merge: bool, seed: int, budget: float = 0.4, tau: float = 0.0,
                coverage_s: float | None = None):
    ctx, attn = random_context(thinker, MIXED, budget, seed=seed)
    result = method.compress_layer(ctx)
    keep, out_k, out_v, high = acckv_reference(ctx, attn, budget, tau, merge, coverage_s, method.salience,
                                               method.skeleton, {"video": method.flat_kurtosis_video,
                                                                 "audio": method.flat_kurtosis_audio}, method.pooling)
    assert result.stats["priority"] == high
    assert torch.equal(result.keep, keep)
    keys = result.keys if result.keys is not None else ctx.keys[:, :, result.keep]
    values = result.values if result.values is not None else ctx.values[:, :, result.keep]
    torch.testing.assert_close(keys[0].double(), out_k, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values[0].double(), out_v, atol=1e-5, rtol=1e-5)  # merged values, not only keys


@pytest.mark.parametrize("merge", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_acckv_equals_reference(tiny, merge, seed):
    """The paper's pipeline (no coverage, calibration on with an absolute τ), merge on and off."""
    thinker, _ = tiny
    params = dict(tau=0.0, tau_mode="absolute", calibration=True, coverage="none",
                  merge_target="nearest_kept" if merge else "none", salience=0.0, skeleton=0.0)
    check_acckv(thinker, AccKV(**params), merge, seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("coverage_s", [0.25, 0.5])
def test_acckv_time_coverage_equals_reference(tiny, seed, coverage_s):
    """`coverage=time`: each modality's quota spread over time bins by token count, top-scored in each bin."""
    thinker, _ = tiny
    params = dict(tau=0.0, tau_mode="absolute", calibration=True, coverage="time", coverage_seconds=coverage_s,
                  merge_target="nearest_kept", salience=0.0, skeleton=0.0)
    check_acckv(thinker, AccKV(**params), True, seed, coverage_s=coverage_s)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("salience,skeleton", [(2.0, 0.0), (0.0, 0.5), (2.0, 0.5)])
def test_acckv_salience_and_skeleton_equal_reference(tiny, seed, salience, skeleton):
    """Round 4's additions (the defaults: salience 2, skeleton 0.5, 1-s time bins) against plain code."""
    thinker, _ = tiny
    params = dict(tau=0.0, tau_mode="absolute", calibration=True, coverage="time", coverage_seconds=1.0,
                  merge_target="nearest_kept", salience=salience, skeleton=skeleton)
    check_acckv(thinker, AccKV(**params), True, seed, coverage_s=1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("audio,video", [(100.0, 0.0), (0.0, 100.0), (3.5, 13.0)])
def test_acckv_flat_kurtosis_equals_reference(tiny, seed, audio, video):
    """Round 8's flat-kurtosis skeleton: a modality whose ranking has nothing standing out is laid evenly
    (100: always; 3.5 / 13: as the ranking's kurtosis says) against plain code."""
    thinker, _ = tiny
    params = dict(tau=0.0, tau_mode="absolute", calibration=True, coverage="time", coverage_seconds=1.0,
                  merge_target="nearest_kept", salience=2.0, skeleton=0.5, flat_kurtosis_audio=audio,
                  flat_kurtosis_video=video)
    check_acckv(thinker, AccKV(**params), True, seed, coverage_s=1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("pooling", [1, 3, 5])
@pytest.mark.parametrize("kurtosis", [(3.5, 13.0), (0.0, 0.0)])
def test_acckv_pooling_equals_reference(tiny, seed, pooling, kurtosis):
    """Round 9's pooled ranking (the default: 3) with the rest of the defaults, against plain code; with the
    flat-kurtosis rule off too, since on these random contexts it may lay every quota evenly."""
    thinker, _ = tiny
    params = dict(tau=0.0, tau_mode="absolute", calibration=True, coverage="time", coverage_seconds=1.0,
                  merge_target="nearest_kept", salience=2.0, skeleton=0.5, pooling=pooling,
                  flat_kurtosis_audio=kurtosis[0], flat_kurtosis_video=kurtosis[1])
    check_acckv(thinker, AccKV(**params), True, seed, coverage_s=1.0)


class PoolingSkipped(AccKV):
    """Plausible bug 5: the pooled ranking computed and then not used."""

    def pooled(self, ctx, ranking, present):
        return ranking


def test_skipping_the_pooling_fails_the_reference(tiny):
    thinker, _ = tiny
    failures = 0
    for seed in range(3):
        try:
            check_acckv(thinker, PoolingSkipped(tau=0.0, tau_mode="absolute", calibration=True, coverage="none",
                                                merge_target="none", salience=2.0, skeleton=0.0, pooling=5,
                                                flat_kurtosis_audio=0.0, flat_kurtosis_video=0.0), False, seed)
        except AssertionError:
            failures += 1
    assert failures > 0


class SalienceInverted(AccKV):
    """Plausible bug 4: the majority's keys ranked as salient (the salience term's sign flipped)."""

    def with_salience(self, ctx, scores, present):
        self.salience = -self.salience
        try:
            return super().with_salience(ctx, scores, present)
        finally:
            self.salience = -self.salience


@pytest.mark.parametrize("mutant,salience", [(LowestScored, 0.0), (EvictsMostSimilar, 0.0), (InvertedWeights, 0.0),
                                              (SalienceInverted, 2.0)])
def test_plausible_acckv_bugs_fail_the_reference(tiny, mutant, salience):
    """Each bug, applied alone, must be caught by the reference comparison on at least one seed."""
    thinker, _ = tiny
    failures = 0
    for seed in range(3):
        try:
            # kurtosis rule off: on these random contexts it lays every quota evenly, and then no ranking matters
            check_acckv(thinker, mutant(tau=0.0, tau_mode="absolute", calibration=True, coverage="none",
                                        merge_target="none", salience=salience, skeleton=0.0, flat_kurtosis_audio=0.0,
                                        flat_kurtosis_video=0.0), False, seed)
        except AssertionError:
            failures += 1
    assert failures > 0


def test_acckv_uniform_attention_gives_equal_scores():
    """A-R: with uniform attention every key scores 1 for any set of summed rows (`visible_count`)."""
    from test_methods import MatrixContext

    n = 12
    uniform = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
    for rows in (torch.arange(n), torch.tensor([9, 10, 11]), torch.tensor([4])):
        s = redistributed_scores(MatrixContext(uniform[None]), rows, "visible_count", "mean")
        visible = torch.arange(n) <= int(rows.max())
        assert torch.allclose(s[visible], torch.ones(int(visible.sum())))


# --- pyramidkv on the model ---------------------------------------------------------------------------

def media_count(layout) -> int:
    return int(layout.media_mask.sum())


@pytest.mark.parametrize("budget", [0.05, 0.2, 0.35, 0.5])
def test_pyramidkv_budgets_decrease_and_average_to_uniform(clip, budget):
    _, _, layout = clip
    n_media = media_count(layout)
    uniform = Budget(budget).media_tokens(n_media)
    layers, _, _, cache = run(clip, get_method("pyramidkv"), budget)
    budgets = [r["media_budget"] for r in layers]
    assert all(a >= b for a, b in zip(budgets, budgets[1:])) and budgets[0] > budgets[-1]
    assert abs(sum(budgets) / N_LAYERS - uniform) <= 1
    assert min(budgets) > 0 and max(budgets) <= n_media  # no layer loses all its media
    P = protected_count(layout)
    assert [cache.layers[i].keys.shape[2] for i in range(N_LAYERS)] == [P + b for b in budgets]


# --- fastv ----------------------------------------------------------------------------------------------

def test_fastv_prune_keeps_the_budget_in_every_layer(clip):
    _, _, layout = clip
    P, n_media = protected_count(layout), media_count(layout)
    layers, _, _, cache = run(clip, get_method("fastv"), 0.2)
    kept = P + Budget(0.2).media_tokens(n_media)
    assert [cache.layers[i].keys.shape[2] for i in range(N_LAYERS)] == [kept] * N_LAYERS
    shared = layers[-1]["keep"]
    assert all(torch.equal(r["keep"], shared) for r in layers)


_FASTV_MASK: dict[int, torch.Tensor] = {}


def fastv_masked_sdpa(module, query, key, value, attention_mask, **kwargs):
    """Reference for prune mode: full-length prefill where layers ≥ K hide the dropped tokens from every
    query (their own rows are never read), and later tokens see only the survivors in every layer."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    kwargs.pop("is_causal", None)
    q_len, k_len = query.shape[2], key.shape[2]
    visible = torch.ones(q_len, k_len, dtype=torch.bool)
    keep = _FASTV_MASK.get(module.layer_idx)
    if keep is not None:
        visible[:, :keep.numel()] = keep
    causal = torch.arange(k_len)[None, :] <= torch.arange(q_len)[:, None] + (k_len - q_len)
    return sdpa_attention_forward(module, query, key, value, (visible & causal)[None, None], is_causal=False, **kwargs)


def test_fastv_prune_equals_masked_reference(clip):
    """Layers ≥ K never attend to the dropped media during prefill; decoding sees the survivors only."""
    from transformers import AttentionInterface
    from acckv_cli.methods.attention import per_layer_attention

    thinker, inputs, layout = clip
    AttentionInterface.register("acckv_test_fastv", fastv_masked_sdpa)
    layers, _, _, _ = run(clip, get_method("fastv"), 0.2)
    keep = torch.zeros(len(layout), dtype=torch.bool)
    keep[layers[-1]["keep"]] = True
    with per_layer_attention(thinker):
        out = thinker.generate(**inputs, use_audio_in_video=True, max_new_tokens=3, do_sample=False,
                               return_dict_in_generate=True, output_logits=True, min_new_tokens=3)
    config = thinker.get_decoder().layers[0].self_attn.config
    _FASTV_MASK.clear()
    saved, config._attn_implementation = config._attn_implementation, "acckv_test_fastv"
    try:
        # prefill: layers ≥ K masked; decode: every layer masked (layers < K were cut after the prefill)
        _FASTV_MASK.update({i: keep for i in range(2, N_LAYERS)})
        first = thinker(**inputs, use_audio_in_video=True, use_cache=True)
        _FASTV_MASK.update({i: keep for i in range(N_LAYERS)})
    finally:
        config._attn_implementation = saved
    with get_method("fastv")(thinker, layout, Budget(0.2)):
        pruned = thinker.generate(**inputs, use_audio_in_video=True, max_new_tokens=1, do_sample=False,
                                  return_dict_in_generate=True, output_logits=True)
    assert torch.allclose(pruned.logits[0][0], first.logits[0, -1], atol=1e-5)
    assert not torch.allclose(pruned.logits[0][0], out.logits[0][0], atol=1e-4)  # the pruning is visible


def test_fastv_kv_emulate_mismatch_and_explicit_ratio(clip):
    _, _, layout = clip
    L, P, K = len(layout), protected_count(layout), 2
    layers, _, _, _ = run(clip, get_method("fastv", mode="kv_emulate"), 0.2)  # K full layers exceed 6 × 20 %
    assert [r["keep"].numel() for r in layers] == [L] * K + [P] * (N_LAYERS - K)
    assert all(r["budget_mismatch"] for r in layers)
    layers, _, _, _ = run(clip, get_method("fastv", ratio=0.5, mode="kv_emulate"), 0.2)
    n_media = L - P
    assert [r["keep"].numel() for r in layers[K:]] == [P + round(n_media * 0.5)] * (N_LAYERS - K)
    with pytest.raises(ValueError):
        get_method("fastv", mode="bogus")


# --- taskfocus ------------------------------------------------------------------------------------------

def test_taskfocus_keywords():
    assert question_focus("What instrument plays?") == Modality.AUDIO
    assert question_focus("What colour is the square?") == Modality.VIDEO
    assert question_focus("Who is SPEAKING?") == Modality.VIDEO  # whole words only
    assert question_focus("What do you hear?") == Modality.AUDIO
    assert question_focus("Which instrument is it?") == Modality.AUDIO
    for word in ("hear", "sound", "sounds", "listen", "music", "voice", "say", "said", "speak", "noise",
                 "instrument", "play", "plays", "playing", "sing"):
        assert question_focus(f"Is there a {word.upper()} here?") == Modality.AUDIO, word
    assert question_focus("") == Modality.VIDEO


@pytest.mark.parametrize("question,focus", [("What instrument plays?", "audio"),
                                            ("What colour is the square?", "video")])
def test_taskfocus_splits_slots(clip, question, focus):
    _, _, layout = clip
    layout = dataclasses.replace(layout, extras={"question": question})
    other = "video" if focus == "audio" else "audio"
    budget = 0.2
    slots = Budget(budget).media_tokens(media_count(layout))
    layers, captured, _, _ = run(clip, get_method("taskfocus"), budget, layout=layout)
    for record, (inp, result) in zip(layers, captured):
        assert result.stats["priority"] == focus
        kept = kept_by_modality(layout, record["keep"])
        assert kept[focus] == round(0.8 * slots) and kept[focus] + kept[other] == slots
        # within the focus modality: the top tokens by the reference A-R score (text rows, visible_count) of the
        # layer's attention probabilities (one prefill forward: every row is in ctx.hidden)
        ctx = inp["ctx"]
        with torch.no_grad():
            (_, attn), = list(attention_rows(ctx.module, ctx.hidden, inp["keys"], ctx.cos, ctx.sin,
                                             torch.arange(ctx.length)))
        rows = torch.arange(int(layout.media_mask.nonzero().max()) + 1, len(layout))
        scores = references.accumulated_redistributed_scores(attn, rows, "visible_count").mean(0)
        idx = layout.mask(Modality[focus.upper()]).nonzero().squeeze(1)
        best = idx[scores[idx].topk(kept[focus]).indices].sort().values
        assert torch.equal(record["keep"][torch.isin(record["keep"], idx)], best)


def test_taskfocus_caps_and_overflow(clip):
    _, _, layout = clip
    layout = dataclasses.replace(layout, extras={"question": "What instrument plays?"})
    counts = layout.counts()
    slots = Budget(0.5).media_tokens(media_count(layout))
    assert round(0.8 * slots) > counts["audio"]  # the audio share overflows to video
    layers, _, _, _ = run(clip, get_method("taskfocus"), 0.5, layout=layout)
    kept = kept_by_modality(layout, layers[0]["keep"])
    assert kept == {"audio": counts["audio"], "video": slots - counts["audio"]}
    layers, _, _, _ = run(clip, get_method("taskfocus", focus="video"), 0.2, layout=layout)
    assert layers[0]["priority"] == "video"


# --- selection without attention: uniform, oracle, divprune ----------------------------------------------

from acckv_cli.errors import UsageError  # noqa: E402
from acckv_cli.methods import divprune as divprune_mod, uniform as uniform_mod  # noqa: E402
from acckv_cli.methods.evidence import as_spans, evidence_mask, union  # noqa: E402
from acckv_cli.model.layout import TokenLayout  # noqa: E402

TEXT_KINDS = {"system": Modality.SYSTEM, "question": Modality.QUESTION}


def hand_layout(seconds: int = 6, cells: int = 6, fps_pairs: float = 1.0) -> TokenLayout:
    """A Qwen2.5-Omni-shaped prompt written by hand: 5 system tokens; per 2-s chunk the grid cells of its two
    frame pairs (pair g at g·fps_pairs s, cells in raster order) then its 50 audio tokens (one per 40 ms);
    4 question tokens."""
    kinds, times, pairs = ["system"] * 5, [None] * 5, [-1] * 5
    for chunk in range(seconds // 2):
        for g in (2 * chunk, 2 * chunk + 1):
            kinds += ["video"] * cells
            times += [g * fps_pairs] * cells
            pairs += [g] * cells
        kinds += ["audio"] * 50
        times += [round(2 * chunk + j * 0.04, 2) for j in range(50)]
        pairs += [-1] * 50
    kinds += ["question"] * 4
    times += [None] * 4
    pairs += [-1] * 4
    label = {"video": Modality.VIDEO, "audio": Modality.AUDIO, **TEXT_KINDS}
    L = len(kinds)
    cell = torch.tensor([i % cells if p >= 0 else -1 for i, p in enumerate(pairs)], dtype=torch.int32)
    return TokenLayout(torch.tensor([int(label[k]) for k in kinds], dtype=torch.int8),
                       torch.tensor([float("nan") if t is None else t for t in times], dtype=torch.float32),
                       torch.tensor(pairs, dtype=torch.int32), cell, cell, torch.arange(L)[None].expand(3, L).clone())


def layout_context(layout: TokenLayout, budget: float, seed: int = 0, kv: int = 2, dim: int = 8, layer_idx: int = 0):
    """A LayerContext over `layout` with random keys and values [1, KV, L, D] (no attention is read)."""
    gen = torch.Generator().manual_seed(seed)
    L = len(layout)
    keys, values = torch.randn(1, kv, L, dim, generator=gen), torch.randn(1, kv, L, dim, generator=gen)
    return LayerContext(layer_idx, 2, None, torch.zeros(1, L, 4), torch.ones(1, L, dim), torch.zeros(1, L, dim),
                        keys, values, layout, Budget(budget), {})


def kinds_and_times(layout: TokenLayout, candidates=None) -> tuple[list[str], list[float]]:
    """Per token: "video"/"audio" if a candidate (default: every media token), else "text"; and its time."""
    names = {int(Modality.VIDEO): "video", int(Modality.AUDIO): "audio"}
    mod = layout.modality.tolist()
    cand = [True] * len(mod) if candidates is None else candidates
    kinds = [names.get(m, "text") if c else "text" for m, c in zip(mod, cand)]
    return kinds, [0.0 if math.isnan(t) else t for t in layout.time_s.tolist()]


def with_text(layout: TokenLayout, media_kept: list[int]) -> torch.Tensor:
    return torch.tensor(sorted(layout.protected_mask.nonzero().squeeze(1).tolist() + media_kept))


@pytest.mark.parametrize("budget", [0.03, 0.1, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("cells", [1, 6, 7])
def test_uniform_equals_reference(budget, cells):
    layout = hand_layout(cells=cells)
    ctx = layout_context(layout, budget)
    result = get_method("uniform").compress_layer(ctx)
    kinds, times = kinds_and_times(layout)
    expected = references.uniform_keep(times, kinds, Budget(budget).media_tokens(ctx.n_media))
    assert torch.equal(result.keep, with_text(layout, expected))


def test_uniform_spreads_over_the_clip_by_modality():
    """10 % of a 6-s clip: every second keeps audio, every frame pair video, shares follow the token counts."""
    layout = hand_layout(cells=10)
    keep = get_method("uniform").compress_layer(layout_context(layout, 0.1)).keep
    kept = torch.zeros(len(layout), dtype=torch.bool)
    kept[keep] = True
    for kind in (Modality.VIDEO, Modality.AUDIO):
        times = layout.time_s[kept & layout.mask(kind)]
        assert set(times.floor().long().tolist()) == set(range(6)), kind
    # 21 slots over 60 video and 150 audio tokens: 6 and 15
    assert int((kept & layout.mask(Modality.VIDEO)).sum()) == 6 and int((kept & layout.mask(Modality.AUDIO)).sum()) == 15


def first_in_time(layout, candidates, k):
    """Plausible bug: the first k candidates in time (a 'sink' prior), not spread over the clip."""
    idx = candidates.nonzero().squeeze(1)
    return idx[torch.sort(layout.time_s[idx], stable=True).indices[:k]].sort().values


def one_pool(layout, candidates, k):
    """Plausible bug: evenly spaced over all media at once, ignoring the per-modality quotas."""
    idx = candidates.nonzero().squeeze(1)
    order = idx[torch.sort(layout.time_s[idx], stable=True).indices]
    return order[(2 * torch.arange(k) + 1) * idx.numel() // (2 * k)].sort().values


@pytest.mark.parametrize("mutant", [first_in_time, one_pool])
def test_plausible_uniform_bugs_fail_the_reference(monkeypatch, mutant):
    monkeypatch.setattr(uniform_mod, "spread_in_time", mutant)
    with pytest.raises(AssertionError):
        for budget in (0.1, 0.25):
            test_uniform_equals_reference(budget, 6)


def test_evidence_spans_and_tokens_inside():
    assert as_spans(None) == as_spans("") == as_spans([]) == ()
    assert as_spans([1, 2]) == as_spans("[1, 2]") == as_spans("1-2") == ((1.0, 2.0),)
    assert as_spans([[1, 2], [3, 4.5]]) == as_spans("1-2+3-4.5") == ((1.0, 2.0), (3.0, 4.5))
    for bad in ([2, 1], [[1]], "x", [[1, "a"]], 3):
        with pytest.raises(ValueError):
            as_spans(bad)
    assert union(((3.0, 4.0),), ((1.0, 2.0), (1.5, 3.0))) == ((1.0, 4.0),)
    layout = hand_layout(cells=2)
    inside = evidence_mask(layout, ((2.3, 2.7),))
    t, video, audio = layout.time_s, layout.mask(Modality.VIDEO), layout.mask(Modality.AUDIO)
    # a video token covers its frame pair [g, g + 1); an audio token [t, t + 0.04)
    assert torch.equal(inside & video, video & (t == 2.0))
    assert torch.equal(inside & audio, audio & (t > 2.26) & (t < 2.7))
    assert int((inside & audio).sum()) == 11
    edge = evidence_mask(layout, ((2.0, 3.0),))  # ends where pair 3 starts: pair 3 is outside
    assert torch.equal(edge & video, video & (t == 2.0))


@pytest.mark.parametrize("budget", [0.05, 0.2, 0.5])
def test_oracle_keeps_the_evidence_then_fills_evenly(budget):
    layout = hand_layout(cells=6)
    spans = ((2.3, 2.7), (4.5, 4.6))
    ctx = layout_context(layout, budget)
    keep = get_method("oracle", evidence=spans).compress_layer(ctx).keep
    t, video, audio = layout.time_s, layout.mask(Modality.VIDEO), layout.mask(Modality.AUDIO)
    evidence = (video & ((t == 2.0) | (t == 4.0))) | (audio & (((t > 2.26) & (t < 2.7)) | ((t > 4.46) & (t < 4.6))))
    slots = Budget(budget).media_tokens(ctx.n_media)
    n_e = int(evidence.sum())
    assert n_e == 12 + 11 + 3
    if n_e <= slots:  # every evidence entry, then the rest evenly in time over the other media
        kinds, times = kinds_and_times(layout, (~evidence).tolist())
        fill = references.uniform_keep(times, kinds, slots - n_e)
        assert torch.equal(keep, with_text(layout, sorted(evidence.nonzero().squeeze(1).tolist() + fill)))
    else:  # more evidence than slots: an even-in-time subset of the evidence
        kinds, times = kinds_and_times(layout, evidence.tolist())
        assert torch.equal(keep, with_text(layout, references.uniform_keep(times, kinds, slots)))
    with pytest.raises(UsageError, match="evidence"):
        get_method("oracle").compress_layer(ctx)


def feature_rows(ctx, source: str = "values") -> torch.Tensor:
    """[N, KV·D]: the media rows of the layer's values (or keys), KV heads side by side."""
    media = (~ctx.layout.protected_mask).nonzero().squeeze(1)
    tensor = ctx.values if source == "values" else ctx.keys
    return torch.cat([tensor[0, h, media] for h in range(tensor.shape[1])], dim=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", [0.1, 0.4])
@pytest.mark.parametrize("features", ["values", "keys"])
def test_divprune_equals_reference(seed, budget, features):
    layout = hand_layout(cells=6)
    ctx = layout_context(layout, budget, seed=seed, kv=2, dim=16)
    result = get_method("divprune", features=features).compress_layer(ctx)
    media = (~layout.protected_mask).nonzero().squeeze(1)
    order = references.divprune_order(feature_rows(ctx, features), Budget(budget).media_tokens(ctx.n_media))
    assert torch.equal(result.keep, with_text(layout, media[order].tolist()))
    picked, distance = divprune_mod.max_min_order(feature_rows(ctx, features), order.numel())
    assert torch.equal(picked, order)  # the same picks in the same order
    x = F.normalize(feature_rows(ctx, features).double()[order], dim=-1)
    pairwise = 1 - x @ x.T
    assert distance == pytest.approx(float(pairwise[~torch.eye(len(order), dtype=torch.bool)].min()), abs=1e-5)


def test_divprune_in_blocks_equals_reference(monkeypatch):
    """The first pick's nearest-neighbour distances computed in row blocks (long clips) change nothing."""
    monkeypatch.setattr(divprune_mod, "_BLOCK_ELEMENTS", 7 * 96)
    feats = torch.randn(96, 24, generator=torch.Generator().manual_seed(5))
    assert torch.equal(divprune_mod.max_min_order(feats, 30)[0], references.divprune_order(feats, 30))


def test_divprune_keeps_one_of_each_cluster():
    """Five tight clusters of 20 tokens: five picks are one per cluster (a least-diverse pick would not)."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 32, generator=gen)
    feats = (centres.repeat_interleave(20, 0) + 0.01 * torch.randn(100, 32, generator=gen))
    picked, distance = divprune_mod.max_min_order(feats, 5)
    assert sorted((picked // 20).tolist()) == [0, 1, 2, 3, 4] and distance > 0.3


def least_diverse(features, k):
    """Plausible bug: the greedy inverted (argmin), keeping near-duplicates."""
    x = F.normalize(features.float(), dim=-1)
    d = 1 - x @ x.T
    picked = [int((d + torch.eye(len(x)) * 9).min(0).values.argmin())]
    while len(picked) < k:
        gap = d[picked].min(0).values
        gap[picked] = float("inf")
        picked.append(int(gap.argmin()))
    return torch.tensor(picked), 0.0


def test_least_diverse_selection_fails_the_reference(monkeypatch):
    monkeypatch.setattr(divprune_mod, "max_min_order", least_diverse)
    with pytest.raises(AssertionError):
        test_divprune_equals_reference(0, 0.1, "values")
    with pytest.raises(AssertionError):
        test_divprune_keeps_one_of_each_cluster_via_method()


def test_divprune_keeps_one_of_each_cluster_via_method():
    """The same property through the method: 4 clusters of media values, 4 slots → one media entry each."""
    layout = hand_layout(seconds=2, cells=5)  # 10 video + 50 audio tokens
    ctx = layout_context(layout, 4)
    media = (~layout.protected_mask).nonzero().squeeze(1)
    gen = torch.Generator().manual_seed(1)
    centres = torch.randn(4, 2, 8, generator=gen)
    ctx.values[0][:, media] = (centres[torch.arange(media.numel()) % 4].transpose(0, 1)
                               + 0.01 * torch.randn(2, media.numel(), 8, generator=gen))
    kept = get_method("divprune").compress_layer(ctx).keep
    kept_media = [int((media == i).nonzero()) for i in kept.tolist() if i in media.tolist()]
    assert sorted(i % 4 for i in kept_media) == [0, 1, 2, 3]


def test_divprune_layer_zero_set_is_kept_in_every_layer(clip):
    """Default (the reference's pruning before the LLM): layer 0's values choose, every layer keeps that set;
    per_layer=true lets each layer choose on its own values."""
    layers, captured, _, _ = run(clip, get_method("divprune"), 0.3)
    first = captured[0][0]
    _, _, layout = clip
    media = (~layout.protected_mask).nonzero().squeeze(1)
    feats = torch.cat([first["values"][0, h, media] for h in range(first["values"].shape[1])], dim=1)
    order = references.divprune_order(feats, Budget(0.3).media_tokens(media.numel()))
    expected = with_text(layout, media[order].tolist())
    assert all(torch.equal(r["keep"], expected) for r in layers)
    layers, _, _, _ = run(clip, get_method("divprune", per_layer=True), 0.3)
    assert not all(torch.equal(r["keep"], expected) for r in layers[1:])
