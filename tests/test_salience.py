"""Key salience (methods/salience.py) and AccKV's use of it: the ranking term and the salient time bins.
Each test fails if its ordering is inverted (the majority ranked above the standout, the quiet bin given
the slots)."""

from __future__ import annotations

import pytest
import torch

from acckv_cli.methods import acckv as acckv_mod, get_method
from acckv_cli.methods.acckv import _weighted_quota
from acckv_cli.methods.salience import key_salience, standardised
from acckv_cli.methods.uniform import spread_in_time
from acckv_cli.model.layout import Modality
from test_baselines import hand_layout, layout_context


def majority_keys(L: int, standouts: list[int], kv: int = 2, dim: int = 8, seed: int = 0) -> torch.Tensor:
    """[1, KV, L, D]: every token near one direction (silence, background), `standouts` near another."""
    gen = torch.Generator().manual_seed(seed)
    common, other = torch.zeros(dim), torch.zeros(dim)
    common[0], other[1] = 1.0, 1.0
    keys = common + 0.1 * torch.randn(kv, L, dim, generator=gen)
    keys[:, standouts] = other + 0.1 * torch.randn(kv, len(standouts), dim, generator=gen)
    return keys[None]


def test_standout_keys_are_the_most_salient():
    keys = majority_keys(40, [7, 23])
    mask = torch.ones(40, dtype=torch.bool)
    salience = key_salience(keys, mask)
    assert set(salience.topk(2).indices.tolist()) == {7, 23}
    per_head = key_salience(keys, mask, per_head=True)
    assert per_head.shape == (2, 40) and torch.allclose(per_head.mean(0), salience)
    assert key_salience(keys, torch.zeros(40, dtype=torch.bool)).abs().sum() == 0  # nothing masked: all 0


def test_salience_is_measured_against_the_tokens_own_modality():
    """A token typical of its own modality is not salient just because the other modality looks different."""
    keys = majority_keys(40, list(range(30, 40)))      # tokens 30–39: a second modality, all alike
    second = torch.zeros(40, dtype=torch.bool)
    second[30:] = True
    assert key_salience(keys, second)[30:].max() < 0.1
    assert key_salience(keys, torch.ones(40, dtype=torch.bool))[30:].min() > 0.5


def test_standardised_is_zero_mean_unit_std_inside_the_mask():
    scores = torch.tensor([1.0, 2.0, 3.0, 10.0, 5.0])
    mask = torch.tensor([True, True, True, False, True])
    z = standardised(scores, mask)
    assert z[3] == 0 and abs(float(z[mask].mean())) < 1e-6 and abs(float(z[mask].std()) - 1) < 1e-5


def test_weighted_quota_sums_to_k_respects_sizes_and_follows_weights():
    sizes = torch.tensor([3, 3, 3, 3])
    heavy = torch.tensor([1.0, 1.0, 10.0, 1.0])
    assert _weighted_quota(5, heavy, sizes).tolist() == [1, 1, 3, 0]   # bin 2 first, capped at its size
    assert _weighted_quota(12, heavy, sizes).tolist() == [3, 3, 3, 3]
    assert _weighted_quota(50, heavy, sizes).tolist() == [3, 3, 3, 3]  # more than there is: every token
    quota = _weighted_quota(7, torch.tensor([1.0, 5.0, 1.0, 1.0]), torch.tensor([10, 2, 10, 10]))
    assert int(quota.sum()) == 7 and quota[1] == 2


@pytest.fixture
def flat_attention(monkeypatch):
    """Attention that prefers nothing (every key scores 1), so only salience can find the sound."""
    monkeypatch.setattr(acckv_mod, "redistributed_scores", lambda ctx, rows, mode, how: torch.ones(ctx.length))


def audio_standout_context(budget: float):
    """The hand layout (6 s: 3 chunks of 2 frame pairs × 6 cells + 50 audio tokens) with every audio key
    alike except one brief sound: 5 audio tokens of the second chunk."""
    layout = hand_layout(seconds=6, cells=6)
    ctx = layout_context(layout, budget)
    audio = layout.mask(Modality.AUDIO).nonzero().squeeze(1)
    sound = audio[60:65].tolist()
    ctx.keys = majority_keys(len(layout), sound)
    return ctx, sound


@pytest.mark.parametrize("coverage", ["time", "salient_time", "none"])
def test_acckv_with_salience_keeps_the_brief_sound(flat_attention, coverage):
    ctx, sound = audio_standout_context(0.05)
    method = get_method("acckv", salience=8.0, skeleton=0.0, coverage=coverage, coverage_seconds=1.0)
    kept = set(method.compress_layer(ctx).keep.tolist())
    assert set(sound) & kept


def test_salient_time_bins_give_the_brief_sound_more_slots_than_time_bins(flat_attention):
    """Equal bins spend the audio quota evenly over 6 s; salient bins spend more of it inside the sound."""
    ctx, sound = audio_standout_context(0.1)
    count = {}
    for coverage in ("time", "salient_time"):
        method = get_method("acckv", salience=8.0, skeleton=0.0, coverage=coverage, coverage_seconds=0.25)
        count[coverage] = len(set(sound) & set(method.compress_layer(ctx).keep.tolist()))
    assert count["salient_time"] > count["time"]


def test_zero_salience_leaves_the_ranking_alone():
    ctx, _ = audio_standout_context(0.1)
    scores = torch.rand(ctx.length)
    method = get_method("acckv", salience=0.0)
    assert method.salience == 0 and method.with_salience(ctx, scores, [Modality.VIDEO, Modality.AUDIO]) is scores


def test_negative_salience_is_refused():
    with pytest.raises(ValueError, match="salience"):
        get_method("acckv", salience=-1.0)


def test_skeleton_lays_its_share_as_uniform_does(monkeypatch):
    """skeleton=1: each modality's slots placed exactly as `uniform` places that many, whatever attention
    prefers (here the latest tokens)."""
    layout = hand_layout(seconds=6, cells=6)
    ctx = layout_context(layout, 0.2)
    monkeypatch.setattr(acckv_mod, "redistributed_scores",
                        lambda ctx, rows, mode, how: torch.arange(ctx.length, dtype=torch.float32))
    keep = get_method("acckv", skeleton=1.0, merge_target="none", coverage="none").compress_layer(ctx).keep
    for kind in (Modality.VIDEO, Modality.AUDIO):
        mine = keep[layout.mask(kind)[keep]]
        assert mine.numel() and torch.equal(mine, spread_in_time(layout, layout.mask(kind), mine.numel()))


def test_half_a_skeleton_keeps_the_start_of_the_clip_that_attention_ignores(monkeypatch):
    layout = hand_layout(seconds=6, cells=6)
    ctx = layout_context(layout, 0.2)
    monkeypatch.setattr(acckv_mod, "redistributed_scores",
                        lambda ctx, rows, mode, how: torch.arange(ctx.length, dtype=torch.float32))
    media = layout.media_mask
    for skeleton, earliest in ((0.0, 4.0), (0.5, 0.0)):
        method = get_method("acckv", skeleton=skeleton, salience=0.0, merge_target="none", coverage="none",
                            flat_kurtosis_audio=0.0, flat_kurtosis_video=0.0)  # an even ranking: flat everywhere
        keep = method.compress_layer(ctx).keep
        kept_times = layout.time_s[keep[media[keep]]]
        assert (float(kept_times.min()) >= earliest) if skeleton == 0 else (float(kept_times.min()) <= 1.0)
        assert int(media[keep].sum()) == get_method("uniform").compress_layer(ctx).keep.numel() - int((~media).sum())


# --- question_contrast: discount what content-free rows attend to as well ------------------------------

def layout_with_template_rows(n_template: int = 3):
    """The hand layout with `n_template` text rows (closing delimiters, assistant header) after the question."""
    from acckv_cli.model.layout import TokenLayout

    base = hand_layout(seconds=6, cells=6)
    n = n_template
    return TokenLayout(torch.cat([base.modality, torch.full((n,), int(Modality.TEXT), dtype=torch.int8)]),
                       torch.cat([base.time_s, torch.full((n,), float("nan"))]),
                       torch.cat([base.frame_pair, torch.full((n,), -1, dtype=torch.int32)]),
                       torch.cat([base.row, torch.full((n,), -1, dtype=torch.int32)]),
                       torch.cat([base.col, torch.full((n,), -1, dtype=torch.int32)]),
                       torch.arange(len(base) + n)[None].expand(3, -1).clone())


def sink_and_evidence_scores(sink: int, evidence: int):
    """Every row set attends to the sink; the question's rows (and only they) also to the evidence, less."""
    def scores(ctx, rows, mode, how):
        s = torch.ones(ctx.length)
        s[sink] = 10.0
        if bool(ctx.mask(Modality.QUESTION)[rows].any()):
            s[evidence] = 6.0
        return s
    return scores


def test_question_contrast_prefers_what_only_the_question_attends_to(monkeypatch):
    """With one audio slot ranked: the raw score keeps the sink, the contrast keeps the evidence.
    Catches: the contrast added instead of subtracted, or computed over the question's own rows."""
    layout = layout_with_template_rows()
    audio = layout.mask(Modality.AUDIO).nonzero().squeeze(1)
    sink, evidence = int(audio[3]), int(audio[100])
    monkeypatch.setattr(acckv_mod, "redistributed_scores", sink_and_evidence_scores(sink, evidence))
    ctx = layout_context(layout, 0.2)
    present = [Modality.VIDEO, Modality.AUDIO]
    scores = acckv_mod.redistributed_scores(ctx, ctx.rows("text"), "visible_count", "mean")
    for contrast, winner in ((0.0, sink), (1.0, evidence)):
        method = get_method("acckv", salience=0.0, question_contrast=contrast)
        ranking = method.with_salience(ctx, scores, present)
        assert int(audio[ranking[audio].argmax()]) == winner, contrast


def test_question_contrast_changes_nothing_without_a_question(monkeypatch):
    """`context`: no question rows in the scored part, so the ranking is the plain one."""
    layout = hand_layout(seconds=6, cells=6)
    no_question = layout.modality.clone()
    no_question[no_question == int(Modality.QUESTION)] = int(Modality.TEXT)
    from dataclasses import replace
    layout = replace(layout, modality=no_question)
    ctx = layout_context(layout, 0.2)
    scores = torch.rand(ctx.length)
    method = get_method("acckv", salience=0.0, question_contrast=1.0)
    assert method.with_salience(ctx, scores, [Modality.VIDEO, Modality.AUDIO]) is scores


# --- attention_from_depth: the first layers rank by salience alone ----------------------------------------

def test_shallow_layers_rank_by_salience_alone_and_deeper_ones_add_attention(monkeypatch):
    """Attention points at a silent audio token (a sink), salience at the brief sound. With one audio slot
    ranked, layer 0 of 2 keeps the sound when attention starts at depth 0.5, the sink when it starts at 0;
    layer 1 (≥ depth) is unchanged by the field. Catches the comparison inverted (deep layers dropping
    attention, shallow ones keeping it)."""
    ctx, sound = audio_standout_context(0.1)
    audio = ctx.layout.mask(Modality.AUDIO).nonzero().squeeze(1)
    sink = int(audio[3])

    def sink_scores(ctx, rows, mode, how):
        s = torch.ones(ctx.length)
        s[sink] = 1e4
        return s
    monkeypatch.setattr(acckv_mod, "redistributed_scores", sink_scores)
    present = [Modality.VIDEO, Modality.AUDIO]
    scores = sink_scores(ctx, None, None, None)
    best = {}
    for layer in (0, 1):
        ctx.layer_idx = layer
        for depth in (0.0, 0.5):
            ranking = get_method("acckv", salience=1.0, attention_from_depth=depth).with_salience(ctx, scores, present)
            best[layer, depth] = int(audio[ranking[audio].argmax()])
    assert best[0, 0.0] == sink and best[0, 0.5] in sound
    assert best[1, 0.0] == best[1, 0.5] == sink


@pytest.mark.parametrize("fields", [{"attention_from_depth": 1.5}, {"attention_from_depth": -0.1},
                                    {"attention_from_depth": 0.5, "salience": 0.0}])
def test_attention_from_depth_outside_its_range_or_without_salience_is_refused(fields):
    with pytest.raises(ValueError, match="attention_from_depth"):
        get_method("acckv", **fields)


# --- modality_floor: A-F cannot starve a modality below a share of its token share ------------------------------

def test_modality_floor_gives_the_starved_modality_its_share_taken_from_the_favoured_one():
    """A-F weights of 0.9 / 0.1 leave audio a sliver; a floor of 0.5 raises it to half its token share, the slots
    coming from video, the total unchanged. Catches: the floor applied to the favoured modality, slots created."""
    layout = hand_layout(seconds=6, cells=6)
    ctx = layout_context(layout, 0.2)
    present = [Modality.VIDEO, Modality.AUDIO]
    counts = {k: int(layout.mask(k).sum()) for k in present}
    slots = get_method("acckv").media_slots(ctx)
    weights = {Modality.VIDEO: 0.9, Modality.AUDIO: 0.1}
    scores = torch.ones(ctx.length)
    plain = get_method("acckv", modality_floor=0.0).split_budget(ctx, weights, scores, present)
    floored = get_method("acckv", modality_floor=0.5).split_budget(ctx, weights, scores, present)
    share = int(0.5 * slots * counts[Modality.AUDIO] / sum(counts.values()))
    assert plain[Modality.AUDIO] < share <= floored[Modality.AUDIO]
    assert floored[Modality.VIDEO] < plain[Modality.VIDEO] and sum(floored.values()) == sum(plain.values()) == slots
    reverse = get_method("acckv", modality_floor=0.5).split_budget(
        ctx, {Modality.VIDEO: 0.1, Modality.AUDIO: 0.9}, scores, present)
    assert reverse[Modality.VIDEO] >= int(0.5 * slots * counts[Modality.VIDEO] / sum(counts.values()))
    with pytest.raises(ValueError, match="modality_floor"):
        get_method("acckv", modality_floor=1.5)


# --- flat_kurtosis: lay a modality evenly where nothing in its ranking stands out ---------------------------

def test_ranking_kurtosis_is_low_for_an_even_spread_and_high_for_a_standout():
    from acckv_cli.methods.acckv import ranking_kurtosis
    mask = torch.ones(200, dtype=torch.bool)
    even = torch.linspace(0, 1, 200)
    standout = torch.zeros(200)
    standout[[17, 90]] = 5.0
    assert abs(ranking_kurtosis(even, mask) - 1.8) < 0.05
    assert ranking_kurtosis(standout, mask) > 50
    assert ranking_kurtosis(standout[None].expand(2, -1), mask) == ranking_kurtosis(standout, mask)  # per KV head


def test_flat_kurtosis_lays_a_flat_modality_evenly_and_leaves_a_standout_ranked(flat_attention):
    """The brief sound stands out: the ranking keeps it. With every audio key alike, the same threshold lays
    audio's whole quota evenly, exactly as `uniform` lays that many (inverted, the sound would be laid evenly
    and the flat clip ranked)."""
    from acckv_cli.methods.acckv import ranking_kurtosis
    ctx, sound = audio_standout_context(0.05)
    audio = ctx.layout.mask(Modality.AUDIO)
    peaky = ranking_kurtosis(key_salience(ctx.keys, audio), audio)
    flat_keys = majority_keys(len(ctx.layout), [])
    flat = ranking_kurtosis(key_salience(flat_keys, audio), audio)
    assert flat < peaky / 2
    method = get_method("acckv", salience=8.0, skeleton=0.0, merge_target="none", flat_kurtosis_audio=peaky / 2,
                        flat_kurtosis_video=0.0)
    result = method.compress_layer(ctx)
    assert result.stats["skeleton"]["audio"] == method.skeleton and set(sound) & set(result.keep.tolist())
    ctx.keys = flat_keys
    result = method.compress_layer(ctx)
    kept_audio = result.keep[audio[result.keep]]
    assert result.stats["skeleton"]["audio"] == 1.0
    assert torch.equal(kept_audio, spread_in_time(ctx.layout, audio, kept_audio.numel()))
    assert result.stats["skeleton"]["video"] == method.skeleton  # the video threshold is off


def test_negative_flat_kurtosis_is_refused():
    with pytest.raises(ValueError, match="flat_kurtosis"):
        get_method("acckv", flat_kurtosis_video=-1.0)
