"""Baselines pyramidkv, lookm, fastv and taskfocus on a tiny random Qwen2.5-Omni thinker (CPU, seconds)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from acckv_cli.layout import Modality, layout_for_inputs
from acckv_cli.methods import Budget, get_method
from acckv_cli.methods.acckv import redistributed_scores
from acckv_cli.methods.taskfocus import question_focus
from acckv_cli.testing import TinySpec, build_tiny_thinker

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

@pytest.mark.parametrize("name", ["pyramidkv", "lookm", "fastv", "taskfocus"])
def test_contract_and_full_budget_matches_full(clip, name):
    thinker, inputs, layout = clip
    _, _, full_ids, _ = run(clip, get_method("full"), 1.0, new_tokens=3)
    layers, captured, ids, _ = run(clip, get_method(name), 1.0, new_tokens=3)
    assert ids == full_ids
    assert all(r["keep"].numel() == len(layout) for r in layers)
    layers, captured, _, _ = run(clip, get_method(name), 0.5)
    protected = layout.protected_mask.nonzero().squeeze(1)
    for record, (_, result) in zip(layers, captured):
        keep = record["keep"]
        assert torch.equal(keep, keep.sort().values) and keep.unique().numel() == keep.numel()
        assert torch.isin(protected, keep).all()
        json.dumps(result.stats)


# --- pyramidkv ------------------------------------------------------------------------------------------

def media_count(layout) -> int:
    return int(layout.media_mask.sum())


def expected_pyramid(n_media, uniform, n_layers, beta=20):
    """KVCache-Factory's linear schedule on the media share, with the cap at N_media."""
    hi, lo = 2 * uniform - uniform / beta, uniform / beta
    if hi > n_media:
        hi, lo = n_media, 2 * uniform - n_media
    return [round(hi - i * (hi - lo) / (n_layers - 1)) for i in range(n_layers)]


def test_pyramidkv_media_budgets_follow_the_schedule(clip):
    _, _, layout = clip
    n_media = media_count(layout)
    expected = expected_pyramid(n_media, Budget(0.5).media_tokens(n_media), N_LAYERS)
    layers, _, _, cache = run(clip, get_method("pyramidkv"), 0.5)
    P = protected_count(layout)
    assert [r["media_budget"] for r in layers] == expected
    assert [kept_by_modality(layout, r["keep"])["audio"] + kept_by_modality(layout, r["keep"])["video"]
            for r in layers] == expected
    assert [cache.layers[i].keys.shape[2] for i in range(N_LAYERS)] == [P + e for e in expected]


@pytest.mark.parametrize("budget", [0.05, 0.2, 0.35, 0.5])
def test_pyramidkv_budgets_decrease_and_average_to_uniform(clip, budget):
    _, _, layout = clip
    n_media = media_count(layout)
    uniform = Budget(budget).media_tokens(n_media)
    layers, _, _, _ = run(clip, get_method("pyramidkv"), budget)
    budgets = [r["media_budget"] for r in layers]
    assert all(a >= b for a, b in zip(budgets, budgets[1:])) and budgets[0] > budgets[-1]
    assert abs(sum(budgets) / N_LAYERS - uniform) <= 1
    assert min(budgets) > 0 and max(budgets) <= n_media  # no layer loses all its media


@pytest.mark.parametrize("n_media,n_layers,uniform", [
    (10000, 28, 2000),   # plain pyramid
    (3000, 28, 1600),    # max capped at N_media, min recomputed to keep the mean
    (50, 36, 1),         # tiny budget: still a pyramid, never negative
])
def test_pyramidkv_media_budgets_formula(n_media, n_layers, uniform):
    budgets = get_method("pyramidkv").media_budgets(n_media, n_layers, uniform).tolist()
    assert budgets == [max(0, b) for b in expected_pyramid(n_media, uniform, n_layers)]
    assert abs(sum(budgets) / n_layers - uniform) <= 1


# --- lookm ----------------------------------------------------------------------------------------------

def reference_merge(keys, values, keep, evicted):
    """Plain-loop LOOK-M avg merge: per KV head, each evicted token joins its most key-cosine-similar kept slot."""
    kv = keys.shape[1]
    out_k = keys[0][:, keep].clone().double()
    out_v = values[0][:, keep].clone().double()
    counts = torch.ones(kv, keep.numel(), dtype=torch.float64)
    targets = torch.zeros(kv, evicted.numel(), dtype=torch.long)
    for h in range(kv):
        kept_keys = keys[0, h, keep].double()
        for n, e in enumerate(evicted.tolist()):
            sims = [float(F.cosine_similarity(keys[0, h, e].double(), kept_keys[j], dim=0))
                    for j in range(keep.numel())]
            slot = int(np.argmax(sims))
            targets[h, n] = slot
            out_k[h, slot] += keys[0, h, e].double()
            out_v[h, slot] += values[0, h, e].double()
            counts[h, slot] += 1
    return (out_k / counts[..., None]).float(), (out_v / counts[..., None]).float(), counts, targets


def test_lookm_keeps_budget_and_merges_like_reference(clip):
    _, _, layout = clip
    budget = 0.2
    slots = Budget(budget).media_tokens(media_count(layout))
    uniform = protected_count(layout) + slots
    layers, captured, _, cache = run(clip, get_method("lookm"), budget)
    media = layout.media_mask
    for i, (record, (inp, result)) in enumerate(zip(layers, captured)):
        keep = record["keep"]
        assert keep.numel() == uniform and cache.layers[i].keys.shape[2] == uniform
        recent = media.nonzero().squeeze(1)[-round(slots * 0.5):]
        assert torch.isin(recent, keep).all()  # the recent media window is kept
        evicted = (media & ~torch.isin(torch.arange(len(layout)), keep)).nonzero().squeeze(1)
        assert result.stats["merged"] == evicted.numel() > 0
        ref_k, ref_v, counts, targets = reference_merge(inp["keys"], inp["values"], keep, evicted)
        assert result.keys.shape == (1, inp["keys"].shape[1], uniform, inp["keys"].shape[3])
        torch.testing.assert_close(result.keys[0], ref_k, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(result.values[0], ref_v, atol=1e-5, rtol=1e-5)
        gathered = inp["keys"][0][:, keep]
        untouched = counts == 1                                                  # [KV, k]
        assert torch.equal(result.keys[0][untouched], gathered[untouched])
        changed = (result.keys[0] != gathered).any(-1)
        assert torch.equal(changed, ~untouched)
        # cross-modal merges (O2): evicted audio landing on video slots and vice versa, mean over heads
        src = layout.modality[evicted][None, :]
        tgt = layout.modality[keep][targets]
        kv = targets.shape[0]
        a2v = float(((src == Modality.AUDIO) & (tgt == Modality.VIDEO)).sum()) / kv
        v2a = float(((src == Modality.VIDEO) & (tgt == Modality.AUDIO)).sum()) / kv
        assert result.stats["cross_modal"]["audio_to_video"] == pytest.approx(a2v, abs=1e-3)
        assert result.stats["cross_modal"]["video_to_audio"] == pytest.approx(v2a, abs=1e-3)


def test_lookm_unimplemented_merges_raise():
    for merge in ("pivot", "weighted", "nope"):
        with pytest.raises(ValueError):
            get_method("lookm", merge=merge)


# --- fastv ----------------------------------------------------------------------------------------------

def test_fastv_budget_matched(clip):
    _, _, layout = clip
    L, K = len(layout), 2
    uniform = Budget(0.5).media_tokens(media_count(layout))
    layers, captured, _, cache = run(clip, get_method("fastv"), 0.5)
    counts = [r["keep"].numel() for r in layers]
    assert counts[:K] == [L] * K
    shared = layers[K]["keep"]
    assert shared.numel() < L
    assert all(torch.equal(r["keep"], shared) for r in layers[K:])
    assert [cache.layers[i].keys.shape[2] for i in range(N_LAYERS)] == counts
    media_kept = [c - protected_count(layout) for c in counts]
    assert abs(sum(media_kept) / N_LAYERS - uniform) <= 1
    assert not any(r["budget_mismatch"] for r in layers)
    # the kept media are the top ones by the head-mean attention of the last prompt token at layer K−1
    ctx = captured[K - 1][0]["ctx"]
    scores = ctx.accumulate(torch.tensor([L - 1])).mean(0)
    media = layout.media_mask.nonzero().squeeze(1)
    n_kept = shared.numel() - protected_count(layout)
    expected = media[scores[media].topk(n_kept).indices].sort().values
    assert torch.equal(shared[layout.media_mask[shared]], expected)


def test_fastv_mismatch_and_explicit_ratio(clip):
    _, _, layout = clip
    L, P, K = len(layout), protected_count(layout), 2
    layers, _, _, _ = run(clip, get_method("fastv"), 0.2)  # K full layers alone exceed 6 × 20 %
    assert [r["keep"].numel() for r in layers] == [L] * K + [P] * (N_LAYERS - K)
    assert all(r["budget_mismatch"] for r in layers)
    layers, _, _, _ = run(clip, get_method("fastv", ratio=0.5), 0.2)
    n_media = L - P
    assert [r["keep"].numel() for r in layers[K:]] == [P + round(n_media * 0.5)] * (N_LAYERS - K)
    with pytest.raises(ValueError):
        get_method("fastv", mode="prune")


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
        # within the focus modality: the top tokens by AccKV's A-R score (text rows, paper mode)
        ctx = inp["ctx"]
        scores = redistributed_scores(ctx, ctx.rows("text"), "paper", "mean")
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
