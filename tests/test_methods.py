"""Correctness of the compression framework and of every method on the tiny thinkers.

The reference for eviction is the *full* cache with an attention mask that hides exactly the evicted
prompt entries of each layer; compressed generation must match it (logits within 1e-5). That also
checks decode positions: they would be off if computed from the physical (compressed) cache length.
The central test and the budget contract run on both families (Qwen2.5-Omni and Qwen3-Omni: MoE
decoder, q/k norms before RoPE, float positions).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from acckv_cli.model.layout import Modality
from acckv_cli.methods import METHODS, Budget, BudgetError, CompressionError, get_method
from acckv_cli.methods.acckv import redistributed_scores
from acckv_cli.methods.base import gather_entries, kept_mask
from conftest import FAMILIES, METHOD_PARAMS, build_method, family_fixtures

# acckv merges by default (C-C step 1; get_method("acckv", merge_target="none") only evicts); fastv's default
# prune mode changes the prefill itself (tests/test_baselines.py has its own reference for it)
MERGING = {"lookm", "acckv", "fastv"}
EVICTION_ONLY = sorted(set(METHODS) - MERGING)
KEY_MASKS: dict[int, torch.Tensor] = {}


def masked_sdpa(module, query, key, value, attention_mask, **kwargs):
    """Full-cache attention that hides the prompt entries evicted in this layer, per KV head (test reference)."""
    kwargs.pop("is_causal", None)
    q_len, k_len = query.shape[2], key.shape[2]
    if q_len == k_len:
        return sdpa_attention_forward(module, query, key, value, None, is_causal=True, **kwargs)
    prompt_keep = KEY_MASKS[module.layer_idx]                  # [KV or 1, L]
    groups = query.shape[1] // prompt_keep.shape[0]            # query heads per row of the mask
    visible = torch.ones(query.shape[1], k_len, dtype=torch.bool)
    visible[:, : prompt_keep.shape[1]] = prompt_keep.repeat_interleave(groups, dim=0)
    return sdpa_attention_forward(module, query, key, value, visible[None, :, None, :], is_causal=False, **kwargs)


AttentionInterface.register("acckv_test_masked", masked_sdpa)


@contextlib.contextmanager
def attention_impl(thinker, name):
    config = thinker.get_decoder().layers[0].self_attn.config
    saved = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = saved


def compressed_run(thinker, prompt, method, budget=Budget(0.2), max_new_tokens=4):
    with method(thinker, prompt.layout, budget) as run:
        out = prompt.generate(thinker, max_new_tokens=max_new_tokens)
    return run, out


def masked_reference(thinker, prompt, run, max_new_tokens=4):
    KEY_MASKS.clear()
    for record in run.layers:
        KEY_MASKS[record["layer"]] = kept_mask(record["keep"], len(prompt.layout))
    with attention_impl(thinker, "acckv_test_masked"):
        return prompt.generate(thinker, max_new_tokens=max_new_tokens)


def assert_same_logits(a, b, atol=1e-5):
    assert len(a.logits) == len(b.logits)
    for step, (x, y) in enumerate(zip(a.logits, b.logits)):
        assert torch.allclose(x, y, atol=atol, rtol=0), f"step {step}: max diff {(x - y).abs().max():.2e}"


EVICTION_VARIANTS = [(name, METHOD_PARAMS.get(name, {})) for name in EVICTION_ONLY] + [
    ("acckv", {"merge_target": "none"}), ("acckv", {"merge_target": "none", "head_reduction": "kv_mean"}),
    ("acckv", {"merge_target": "none", "coverage": "time", "score_queries": "all"}),
    ("snapkv", {"head_reduction": "mean"}), ("h2o", {"head_reduction": "kv_max"}), ("fastv", {"mode": "kv_emulate"}),
    ("divprune", {"features": "keys", "per_layer": True})]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name, params", EVICTION_VARIANTS)
def test_eviction_equals_masked_full_cache(request, family, name, params):
    lm, av_prompt = family_fixtures(request, family)
    thinker = lm.thinker
    run, out = compressed_run(thinker, av_prompt, get_method(name, **params), Budget(0.3))
    ref = masked_reference(thinker, av_prompt, run)
    assert_same_logits(out, ref)
    if name != "full":  # the comparison is meaningful: compression changed the decode-step logits
        full = av_prompt.generate(thinker)  # (step 0 comes from the uncompressed prefill itself)
        assert not torch.allclose(out.logits[1], full.logits[1], atol=1e-5)


def test_reference_detects_wrong_decode_positions(tiny, av_prompt):
    """A decode step positioned from the physical cache length gives different logits (pitfall 5)."""
    thinker, _ = tiny
    run, out = compressed_run(thinker, av_prompt, get_method("random"), Budget(0.3), max_new_tokens=1)
    cache = out.cache
    next_token = out.sequences[:, -1:]
    physical = cache.get_seq_length()
    wrong = torch.full((4, 1, 1), physical)  # what a 1-D, cache-length-based loop would use
    pos3 = thinker.get_rope_index(av_prompt.inputs["input_ids"], None, av_prompt.inputs["video_grid_thw"],
                                  None, True, av_prompt.inputs["feature_attention_mask"].sum(-1),
                                  av_prompt.inputs["video_second_per_grid"])[0]
    right = torch.cat([torch.tensor([[[len(av_prompt.layout)]]]), pos3.max(-1, keepdim=True).values + 1])
    with attention_impl(thinker, "acckv_sdpa"):
        good = thinker(input_ids=next_token, cache=cache, position_ids=right, use_cache=True).logits
        for layer in cache.layers:  # undo the appended step before the second call
            layer.keys, layer.values = layer.keys[:, :, :-1], layer.values[:, :, :-1]
        bad = thinker(input_ids=next_token, cache=cache, position_ids=wrong, use_cache=True).logits
    ref = masked_reference(thinker, av_prompt, run, max_new_tokens=2)
    assert torch.allclose(good[0, -1], ref.logits[1][0], atol=1e-5)
    assert not torch.allclose(bad[0, -1], ref.logits[1][0], atol=1e-3)


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("prompt_name", ["av_prompt", "video_prompt", "audio_prompt", "q3_av_prompt"])
def test_budget_and_protection(request, name, prompt_name):
    thinker, _ = request.getfixturevalue("tiny_q3" if prompt_name.startswith("q3") else "tiny")
    prompt = request.getfixturevalue(prompt_name)
    budget = Budget(0.5)
    run, out = compressed_run(thinker, prompt, build_method(name), budget, max_new_tokens=1)
    protected = prompt.layout.protected_mask.nonzero().squeeze(1)
    for record, layer in zip(sorted(run.layers, key=lambda r: r["layer"]), out.cache.layers):
        keep = record["keep"]
        for row in (keep[None] if keep.ndim == 1 else keep):  # one set, or one per KV head
            assert torch.equal(row, row.sort().values) and row.unique().numel() == row.numel()
            assert set(protected.tolist()) <= set(row.tolist()), "text tokens must never be evicted"
        # every method keeps exactly its budget, AccKV included (calibration, the only step that evicts below
        # it, is off by default); `full` keeps every entry
        assert keep.shape[-1] == (len(prompt.layout) if name == "full" else record["budget"])
        assert record["budget"] == len(protected) + record["media_budget"]
        assert layer.keys.shape[2] == keep.shape[-1]  # eviction is real: the tensors shrank
        assert record["kv_bytes_after"] == layer.keys.nbytes + layer.values.nbytes
    n_media = int(prompt.layout.media_mask.sum())
    if name not in ("full", "fastv", "pyramidkv"):  # those vary the budget by layer on purpose
        assert all(r["media_budget"] == round(0.5 * n_media) for r in run.layers)


@pytest.mark.parametrize("name", ["h2o", "snapkv", "random", "streamingllm"])
def test_kept_entries_are_the_top_scored(tiny, av_prompt, name):
    """For pure top-k selections, every kept media entry scores at least as high as every evicted one."""
    thinker, _ = tiny
    params = {"h2o": {"recent_share": 0.0}, "snapkv": {"window_size": 1}}.get(name, {})
    method = get_method(name, **params)
    scores = {}
    original = method.score

    def spy(ctx):
        scores[ctx.layer_idx] = original(ctx)
        return scores[ctx.layer_idx]

    object.__setattr__(method, "score", spy)
    run, _ = compressed_run(thinker, av_prompt, method, Budget(0.3), max_new_tokens=1)
    media = av_prompt.layout.media_mask
    for record in run.layers:
        kept = kept_mask(record["keep"], len(media))
        s = scores[record["layer"]]
        s = s[None] if s.ndim == 1 else s              # one set, or one per KV head
        for head_kept, head_scores in zip(kept, s):
            assert head_scores[head_kept & media].min() >= head_scores[~head_kept & media].max()


def test_hooks_are_removed_and_model_is_unchanged(tiny, av_prompt):
    from acckv_cli.testing.tiny import build_tiny_thinker

    thinker, _ = tiny
    config = thinker.get_decoder().layers[0].self_attn.config
    before = config._attn_implementation
    with pytest.raises(RuntimeError):
        with get_method("acckv")(thinker, av_prompt.layout, Budget(0.2)):
            raise RuntimeError("boom")  # hooks must go even when the body fails
    compressed_run(thinker, av_prompt, get_method("acckv"))
    assert config._attn_implementation == before
    assert all(not layer.self_attn._forward_hooks for layer in thinker.get_decoder().layers)
    fresh, _ = build_tiny_thinker()
    a, b = av_prompt.generate(thinker), av_prompt.generate(fresh)
    assert torch.equal(a.sequences, b.sequences)
    assert all(torch.equal(x, y) for x, y in zip(a.logits, b.logits))


def test_kept_keys_are_not_rerotated(tiny, av_prompt):
    """Pitfall 8: eviction keeps the cached post-RoPE keys bit for bit."""
    thinker, _ = tiny
    full = av_prompt.generate(thinker, max_new_tokens=1).cache
    run, out = compressed_run(thinker, av_prompt, get_method("snapkv"), max_new_tokens=1)
    for record, layer, ref in zip(run.layers, out.cache.layers, full.layers):
        assert record["keep"].ndim == 2  # snapkv keeps a set per KV head
        assert torch.equal(layer.keys, gather_entries(ref.keys, record["keep"]))


def test_full_budget_acckv_without_calibration_is_exact(tiny, av_prompt):
    thinker, _ = tiny
    _, out = compressed_run(thinker, av_prompt, get_method("acckv", calibration=False), Budget(1.0))
    ref = av_prompt.generate(thinker)
    assert torch.equal(out.sequences, ref.sequences)
    assert_same_logits(out, ref, atol=1e-6)


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"full"}))
def test_a_budget_of_a_few_media_tokens_keeps_all_text(tiny, audio_prompt, name):
    """Budgets count media only: even 2 media entries on a 4-s audio prompt leave every text entry."""
    thinker, _ = tiny
    run, _ = compressed_run(thinker, audio_prompt, build_method(name), Budget(2), max_new_tokens=1)
    layout = audio_prompt.layout
    for record in run.layers:
        kept = torch.zeros(len(layout), dtype=torch.bool)
        kept[record["keep"]] = True
        assert kept[layout.protected_mask].all()
        if name not in ("fastv", "pyramidkv"):  # fastv keeps its first layers whole; pyramidkv averages 2
            assert int((kept & layout.media_mask).sum()) <= 2


def test_budget_parsing():
    assert Budget.parse("0.2").media_tokens(100) == 20 and Budget.parse("20%").media_tokens(100) == 20
    assert Budget.parse("160").media_tokens(1000) == 160 and Budget.parse("160").media_tokens(100) == 100
    for bad in ("0", "-1", "abc", "1.5", "nan"):
        with pytest.raises(BudgetError):
            Budget.parse(bad)


def test_batches_are_refused(tiny, av_prompt):
    """Pitfall 4: padded batches need rebuilt masks; we refuse them instead of being silently wrong."""
    thinker, _ = tiny
    inputs = {k: (torch.cat([v, v]) if k in ("input_ids", "attention_mask") else v)
              for k, v in av_prompt.inputs.items()}
    inputs["pixel_values_videos"] = torch.cat([av_prompt.inputs["pixel_values_videos"]] * 2)
    inputs["video_grid_thw"] = torch.cat([av_prompt.inputs["video_grid_thw"]] * 2)
    inputs["video_second_per_grid"] = torch.cat([av_prompt.inputs["video_second_per_grid"]] * 2)
    inputs["input_features"] = torch.cat([av_prompt.inputs["input_features"]] * 2)
    inputs["feature_attention_mask"] = torch.cat([av_prompt.inputs["feature_attention_mask"]] * 2)
    with pytest.raises(CompressionError, match="batch size 1"):
        with get_method("snapkv")(thinker, av_prompt.layout, Budget(0.2)):
            thinker.generate(**inputs, use_audio_in_video=True, max_new_tokens=1)


# --- AccKV internals ----------------------------------------------------------------------------------

class MatrixContext:
    """A stand-in LayerContext whose attention is an explicit [H, n, n] matrix."""

    def __init__(self, attention: torch.Tensor):
        self.A = attention
        self.length = attention.shape[-1]
        self.keys = torch.zeros(1, 1, self.length, 1)

    def reduce(self, scores, how):
        return scores.mean(0)

    def accumulate(self, rows, weighting="none"):
        A = self.A[:, rows]
        if weighting == "position":
            A = A * (rows.float() + 1)[None, :, None]
        return A.sum(1)


def test_redistribution_removes_positional_bias_for_uniform_attention():
    n = 12
    uniform = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
    ctx = MatrixContext(uniform[None])
    s = redistributed_scores(ctx, torch.arange(n), "paper", "mean")
    assert torch.allclose(s, torch.ones(n))
    raw = redistributed_scores(ctx, torch.arange(n), "none", "mean")
    assert raw[0] > raw[-1] * 2  # without A-R early keys dominate


def acckv_reference_merge(keys, values, keep, groups):
    """Plain-loop reference of same-modality nearest-kept averaging, per KV head."""
    K, V = keys[0].float(), values[0].float()
    out_k, out_v = K[:, keep].clone(), V[:, keep].clone()
    count = torch.ones(K.shape[0], keep.numel())
    position = {int(p): i for i, p in enumerate(keep)}
    for kept, evicted in groups:
        for h in range(K.shape[0]):
            for e in evicted.tolist():
                sims = F.cosine_similarity(K[h, e][None], K[h, kept], dim=-1)
                slot = position[int(kept[int(sims.argmax())])]
                out_k[h, slot] += K[h, e]
                out_v[h, slot] += V[h, e]
                count[h, slot] += 1
    return out_k / count[..., None], out_v / count[..., None]


def test_acckv_merge_matches_tensor_reference(tiny, av_prompt):
    thinker, _ = tiny
    full = av_prompt.generate(thinker, max_new_tokens=1).cache
    run, out = compressed_run(thinker, av_prompt, get_method("acckv", calibration=False, merge_target="nearest_kept"),
                              Budget(0.3), 1)
    lay = av_prompt.layout
    for record, layer, ref in zip(run.layers, out.cache.layers, full.layers):
        keep = record["keep"]
        kept = torch.zeros(len(lay), dtype=torch.bool)
        kept[keep] = True
        groups = [((lay.mask(m) & kept).nonzero().squeeze(1), (lay.mask(m) & ~kept).nonzero().squeeze(1))
                  for m in (Modality.VIDEO, Modality.AUDIO)]
        exp_k, exp_v = acckv_reference_merge(ref.keys, ref.values, keep, groups)
        assert torch.allclose(layer.keys[0], exp_k, atol=1e-5)
        assert torch.allclose(layer.values[0], exp_v, atol=1e-5)
        assert sum(record["merged"].values()) == int(lay.media_mask.sum()) - int((lay.media_mask & kept).sum())


def test_acckv_calibration_matches_tensor_reference(tiny, av_prompt):
    """Low-priority entries survive iff their mean key cosine to the kept high-priority keys ≥ τ."""
    thinker, _ = tiny
    lay = av_prompt.layout
    tau = 0.0
    no_calib, out0 = compressed_run(thinker, av_prompt, get_method("acckv", calibration=False), Budget(0.3), 1)
    calib, _ = compressed_run(thinker, av_prompt, get_method("acckv", calibration=True, tau=tau, tau_mode="absolute"), Budget(0.3), 1)
    for r0, r1, layer in zip(no_calib.layers, calib.layers, out0.cache.layers):
        high, low = Modality[r0["priority"].upper()], next(m for m in (Modality.VIDEO, Modality.AUDIO)
                                                            if m.label != r0["priority"])
        keep = r0["keep"]
        is_high, is_low = lay.mask(high)[keep], lay.mask(low)[keep]
        K = layer.keys[0].float()
        cos = torch.stack([F.cosine_similarity(K[h, is_low][:, None], K[h, is_high][None], dim=-1).mean(1)
                           for h in range(K.shape[0])]).mean(0)
        expected = torch.cat([keep[~is_low], keep[is_low][cos >= tau]]).sort().values
        assert torch.equal(r1["keep"], expected)
        assert r1["calibration"]["evicted"] == int((cos < tau).sum())


def test_acckv_keeps_budget_split_by_modality_weights(tiny, av_prompt):
    thinker, _ = tiny
    run, _ = compressed_run(thinker, av_prompt, get_method("acckv", calibration=False), Budget(0.3), 1)
    for record in run.layers:
        w = record["weights"]
        assert abs(sum(w.values()) - 1) < 1e-3  # (priority and quotas against eager attention: test below)
        assert sum(record["quota"].values()) == record["media_budget"]


def test_cross_modal_merge_switch_mixes_modalities(tiny, av_prompt):
    thinker, _ = tiny
    method = get_method("acckv", cross_modal_merge=True, merge_target="nearest_kept", calibration=False)
    run, _ = compressed_run(thinker, av_prompt, method, Budget(0.3), 1)
    assert all(set(r["merged"]) == {"media"} for r in run.layers)


def test_attention_recompute_matches_eager(tiny, av_prompt):
    """Pitfall 3: sdpa returns no probabilities; our recompute equals eager's, for any query rows."""
    from acckv_cli.methods.attention import attention_rows

    thinker, _ = tiny
    captured = {}

    def grab(module, args, kwargs, output):
        captured.setdefault(module.layer_idx, (kwargs["hidden_states"], kwargs["position_embeddings"],
                                               kwargs["cache"].layers[module.layer_idx].keys.clone(), output[1]))

    handles = [l.self_attn.register_forward_hook(grab, with_kwargs=True) for l in thinker.get_decoder().layers]
    try:
        with attention_impl(thinker, "eager"):
            thinker(**av_prompt.inputs, use_audio_in_video=True, output_attentions=True, use_cache=True)
    finally:
        for h in handles:
            h.remove()
    hidden, (cos, sin), keys, eager = captured[1]
    rows = torch.tensor([3, 100, len(av_prompt.layout) - 1])
    module = thinker.get_decoder().layers[1].self_attn
    (r, probs), = list(attention_rows(module, hidden, keys, cos, sin, rows))
    assert torch.allclose(probs, eager[0][:, rows].float(), atol=1e-6)


def test_acckv_focus_weights_priority_and_quotas_from_eager_attention():
    """A-F on the demo model, against an independent computation: eager attention probabilities of the full
    prefill (eviction in layer l happens after layer l's attention, so the compressed prefill sees the same),
    the reference A-R over the text rows after the media (`references.accumulated_redistributed_scores`),
    W_m = mean score of m / Σ, priority = the heavier modality, quota k_m ∝ W_m·n_m, and each modality's kept
    count (read from the layout) equal to its quota.

    Catches: inverted weights (the lighter modality as priority), weights from all rows or from the raw
    attention instead of the A-R scores of the text rows, quotas ignoring the token counts, or a priority
    that is not the weights' argmax (the earlier test compared the method's priority with its own weights)."""
    import references
    from acckv_cli.media.decode import decode
    from acckv_cli.model.load import load_model
    from conftest import Prompt
    from pathlib import Path

    lm = load_model()
    clip = Path(__file__).resolve().parent.parent / "samples" / "flute_red_circle.mp4"
    prompt = Prompt(lm, decode(clip), "What instrument plays?")
    thinker, layout, budget = lm.thinker, prompt.layout, Budget(0.2)
    with torch.no_grad(), attention_impl(thinker, "eager"):
        eager = thinker(**prompt.inputs, use_audio_in_video=prompt.use_audio_in_video, output_attentions=True)
    # the paper's quotas (no floor under them: modality_floor has its own test in test_salience.py)
    run, _ = compressed_run(thinker, prompt, get_method("acckv", modality_floor=0.0), budget, max_new_tokens=1)
    video, audio = layout.mask(Modality.VIDEO), layout.mask(Modality.AUDIO)
    rows = torch.arange(int(layout.media_mask.nonzero().max()) + 1, len(layout))
    slots = budget.media_tokens(int(layout.media_mask.sum()))
    n = {"video": int(video.sum()), "audio": int(audio.sum())}
    for record in sorted(run.layers, key=lambda r: r["layer"]):
        s = references.accumulated_redistributed_scores(eager.attentions[record["layer"]][0], rows).mean(0)
        mean = {"video": float(s[video].mean()), "audio": float(s[audio].mean())}
        w = {k: v / sum(mean.values()) for k, v in mean.items()}
        assert record["weights"] == pytest.approx(w, abs=2e-4), record["layer"]
        assert record["priority"] == max(w, key=w.get)
        k_video = round(slots * w["video"] * n["video"] / (w["video"] * n["video"] + w["audio"] * n["audio"]))
        kept = layout.modality[record["keep"]]
        assert record["quota"] == {"video": k_video, "audio": slots - k_video}
        assert int((kept == int(Modality.VIDEO)).sum()) == k_video
        assert int((kept == int(Modality.AUDIO)).sum()) == slots - k_video
    assert max(abs(r["weights"]["video"] - 0.5) for r in run.layers) > 0.05  # the weights are not a tie


def acckv_kept_sets(thinker, prompt, **params) -> list[torch.Tensor]:
    # no flat-kurtosis skeleton: a modality laid evenly would not move with the scores these tests compare
    params = {"flat_kurtosis_audio": 0.0, "flat_kurtosis_video": 0.0, **params}
    run, _ = compressed_run(thinker, prompt, get_method("acckv", merge_target="none", **params), Budget(0.2), 1)
    return [r["keep"] for r in sorted(run.layers, key=lambda r: r["layer"])]


@pytest.mark.parametrize("coverage", ["time", "none"])
def test_redistribution_changes_the_selection_only_where_rows_see_different_keys(tiny, av_prompt, coverage):
    """A-R's divisor c_j (the scored rows that can see key j) is the same for every media key when every
    scored row comes after the media, so it can only change the selection when the rows include media
    queries. Here, per layer, `redistribution=visible_count` against `none`:

    * rows = all, or a 80-row window reaching into the media: the kept sets differ in every layer;
    * rows = the last row only (after the media): c_j = 1 and one row weight, so the kept sets are
      identical in every layer — while the paper's literal c_j = n − j (a recency prior) still moves them.

    Under the default `score_queries=text` the rows are all after the media: A-R reduces to weighting each
    text row by its position (i + 1), which moved the kept set of one layer in three here (docs/acckv-choices.md).
    Catches: A-R ignored (no change with all rows), or a divisor counting rows that were not scored (c_j =
    n − j with one row: the sets would move)."""
    thinker, _ = tiny
    for rows in ("all", "window:80"):
        ar = acckv_kept_sets(thinker, av_prompt, score_queries=rows, coverage=coverage)
        raw = acckv_kept_sets(thinker, av_prompt, score_queries=rows, coverage=coverage, redistribution="none")
        assert all(not torch.equal(a, b) for a, b in zip(ar, raw)), rows
    one = dict(score_queries="window:1", coverage=coverage)
    ar = acckv_kept_sets(thinker, av_prompt, **one)
    raw = acckv_kept_sets(thinker, av_prompt, **one, redistribution="none")
    paper = acckv_kept_sets(thinker, av_prompt, **one, redistribution="paper")
    assert all(torch.equal(a, b) for a, b in zip(ar, raw))
    assert any(not torch.equal(a, b) for a, b in zip(paper, raw))
