"""Segmented prefill: prompt pieces, exact positions, protocols, stashes and cut-back between questions.

The reference for every protocol is the same prompt run in one piece: the processor on the whole prompt,
`thinker.generate`, or the compressed cache replaced by the full cache with exactly the evicted entries
masked (causal within each segment). The central ones run on both families: Qwen3-Omni's float positions,
per-token interleave and deepstack decoder inputs go through the same segments.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers import AttentionInterface, DynamicCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from conftest import FAMILIES, build_method, synthetic_media
from acckv_cli.model.generation import embed_prompt, forward_segment, greedy_decode, split_words
from acckv_cli.model.layout import layout_for_inputs
from acckv_cli.methods import METHODS, Budget, CompressionError, get_method
from acckv_cli.methods.attention import per_layer_attention
from acckv_cli.methods.base import kept_mask
from acckv_cli.methods.h2o import H2O
from acckv_cli.methods.stash import AttentionNeeds
from acckv_cli.model.load import build_inputs
from acckv_cli.answer.session import ClipSession, ProtocolError, check_protocol

QUESTIONS = ["What instrument plays?", "What colour is the square?", "Which instrument plays while the star is visible?"]
# SnapKV with its default 64-row window on the 4-s clip (180 media entries) is degenerate: at budgets below
# ~0.33 the window alone holds more media than the budget and every KV head keeps the most recent media, as
# StreamingLLM would. A 16-row window leaves the choice to the pooled scores, per KV head.
SNAPKV_SCORED = {"window_size": 16}


def assert_scores_decide(kept: dict[int, torch.Tensor], layout, per_head: bool) -> None:
    """In every layer the kept media are not the most recent ones (in any KV head), and for a method with a
    set per KV head the heads' sets differ (in some layer): a test on such a run depends on what the scores
    chose."""
    media = (~layout.protected_mask).nonzero().squeeze(1)
    heads_differ = []
    for layer, keep in kept.items():
        mask = kept_mask(keep, len(layout))[:, media]  # [KV or 1, M]
        n = int(mask[0].sum())
        assert 0 < n < media.numel(), layer
        recent = torch.zeros(media.numel(), dtype=torch.bool)
        recent[-n:] = True
        assert not (mask == recent).all(1).any(), f"layer {layer} kept the {n} most recent media"
        heads_differ.append(mask.shape[0] > 1 and not (mask == mask[0]).all())
    assert any(heads_differ) or not per_head, "every KV head kept the same set in every layer"


@pytest.fixture(scope="module")
def media():
    return synthetic_media(seconds=4.0)


@pytest.fixture(scope="module")
def session(tiny_lm, media):
    return ClipSession(tiny_lm, media)


@pytest.fixture(scope="module")
def q3_session(q3_lm, media):
    return ClipSession(q3_lm, media)


def family_session(request, family: str):
    """(LoadedModel, ClipSession on the 4-s clip) of the tiny model of `family`."""
    if family == "qwen3":
        return request.getfixturevalue("q3_lm"), request.getfixturevalue("q3_session")
    return request.getfixturevalue("tiny_lm"), request.getfixturevalue("session")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["av", "video", "audio"])
def test_prompt_pieces_are_the_whole_prompt(request, family, kind):
    """Prefix + question + suffix ids equal the processor's ids on the whole prompt, positions equal
    `get_rope_index` on the whole prompt, and the prefix alone has the whole prompt's first positions."""
    tiny_lm, _ = family_session(request, family)
    media = synthetic_media(video=kind != "audio", audio=kind != "video")
    question = QUESTIONS[1]
    prompt = ClipSession(tiny_lm, media).prompt
    whole = prompt.question(question)
    inputs, flag = build_inputs(tiny_lm, media, question)
    assert flag == prompt.use_audio_in_video
    assert torch.equal(whole.input_ids, inputs["input_ids"])
    reference = layout_for_inputs(tiny_lm.thinker, tiny_lm.processor, inputs, flag)
    assert torch.equal(whole.layout.positions, reference.positions)
    assert torch.equal(whole.layout.modality, reference.modality)
    assert torch.equal(whole.positions[0, 0], torch.arange(whole.length))  # the text row
    assert torch.equal(prompt.positions, whole.positions[:, :, :prompt.length])
    assert whole.media_end == prompt.length < whole.question_end < whole.length
    ids = whole.input_ids[0, whole.media_end:whole.question_end]
    assert tiny_lm.processor.tokenizer.decode(ids) == question


@pytest.mark.parametrize("family", FAMILIES)
def test_segmented_full_cache_equals_generate(request, family, media):
    """Media prefilled from encoder outputs, then the question, then greedy decoding: the same logits as
    `thinker.generate` on the one-piece prompt (this also checks every position of every piece)."""
    tiny_lm, session = family_session(request, family)
    question = QUESTIONS[0]
    inputs, flag = build_inputs(tiny_lm, media, question)
    ref = tiny_lm.thinker.generate(**inputs, use_audio_in_video=flag, max_new_tokens=4, do_sample=False,
                                   return_dict_in_generate=True, output_logits=True, min_new_tokens=4)
    for protocol in ("context", "query-aware", "prefill"):
        prompt = session.prompt.question(question)
        media_cache = session.media_cache_for(protocol, get_method("full"), Budget(1.0))
        answer = session.answer(question, media_cache, protocol, get_method("full"), Budget(1.0), max_new_tokens=1)
        assert torch.allclose(answer.first_logits, ref.logits[0][0].float(), atol=1e-5)
        # continue greedily with the reference's tokens to compare every step
        with torch.inference_mode(), per_layer_attention(tiny_lm.thinker):
            cache = DynamicCache(config=tiny_lm.thinker.config.get_text_config(decoder=True))
            forward_segment(tiny_lm.thinker, cache, prompt.positions[:, :, :prompt.media_end],
                            embedded=session.embedded, logits=False)
            ids, pos = prompt.span(prompt.media_end, prompt.length)
            forward_segment(tiny_lm.thinker, cache, pos, ids)
            for step in range(1, 4):
                token = ref.sequences[:, prompt.length + step - 1:prompt.length + step]
                logits = forward_segment(tiny_lm.thinker, cache, prompt.next_positions() + step - 1, token)
                assert torch.allclose(logits, ref.logits[step][0].float(), atol=1e-5), step


def one_segment_query_aware(lm, session, question, method, budget):
    """Reference: media and question prefilled in ONE forward with the hooks, then the header.

    The decoder inputs of media + question come from transformers' own merge on the longer ids (not from
    extending the prefix's), so Qwen3-Omni's deepstack mask is the model's own."""
    prompt = session.prompt.question(question)
    end = prompt.question_end
    layout = prompt.layout.prefix(end)
    ids = prompt.input_ids[:, :end]
    inputs = dict(session.prompt.inputs, input_ids=ids, attention_mask=torch.ones_like(ids))
    embedded = embed_prompt(lm.thinker, inputs, prompt.positions[:, :, :end], session.prompt.use_audio_in_video)
    with torch.inference_mode(), per_layer_attention(lm.thinker):
        cache = DynamicCache(config=lm.thinker.config.get_text_config(decoder=True))
        with method(lm.thinker, layout, budget) as run:
            forward_segment(lm.thinker, cache, prompt.positions[:, :, :end], embedded=embedded, logits=False)
        ids, pos = prompt.span(prompt.question_end, prompt.length)
        first = forward_segment(lm.thinker, cache, pos, ids)
    return run, first


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name, params", [("snapkv", SNAPKV_SCORED), ("h2o", {}), ("acckv", {}),
                                          ("acckv", {"score_queries": "all"}), ("acckv", {"score_queries": "window:80"}),
                                          ("random", {}), ("fastv", {}), ("taskfocus", {}), ("lookm", {}),
                                          ("pyramidkv", {}), ("streamingllm", {}), ("uniform", {}), ("divprune", {}),
                                          ("oracle", {})])
def test_query_aware_with_a_shared_media_prefill_equals_one_segment(request, family, name, params):
    """The media prefilled once (stash recorded) and the question compressed later keeps the same entries
    and gives the same first-token logits as compressing media + question in one forward. (FastV's prune
    mode is one forward itself: the session extends the prefix's decoder inputs, deepstack included.)

    Catches: stash rows recorded from the wrong layer, missing or misplaced question rows in the scores, or the
    question's positions shifted; SnapKV runs with a window where the scores decide (SNAPKV_SCORED), else
    any window bug would be hidden behind keeping the most recent media."""
    tiny_lm, session = family_session(request, family)
    question, budget = QUESTIONS[2], Budget(0.3)
    method = build_method(name, **params)
    run, first = one_segment_query_aware(tiny_lm, session, question, method, budget)
    media_cache = session.media_cache_for("query-aware", method, budget)
    answer = session.answer(question, media_cache, "query-aware", method, budget, max_new_tokens=1)
    if name in ("snapkv", "h2o", "acckv"):  # (H2O's heads happen to agree on the tiny Qwen2.5 thinker)
        assert_scores_decide(answer.kept, answer.layout, per_head=name == "snapkv")
    for record in run.layers:
        assert torch.equal(record["keep"], answer.kept[record["layer"]]), (name, record["layer"])
    assert torch.allclose(first, answer.first_logits, atol=1e-5)


def test_undeclared_earlier_rows_are_an_error(tiny_lm, session):
    """A method that reads rows of the media prefill it did not declare must fail loudly, not score zeros."""
    class Forgetful(H2O):
        def attention_needs(self):
            return AttentionNeeds(tail=4)

    media_cache = session.media_cache(needs=AttentionNeeds(tail=4))
    with pytest.raises(CompressionError, match="earlier prefill segment"):
        session.answer(QUESTIONS[0], media_cache, "query-aware", Forgetful(), Budget(0.3), max_new_tokens=1)


_VISIBLE: dict[int, torch.Tensor] = {}  # layer -> bool [KV or 1, L]: the prompt entries each KV head kept


def masked_sdpa(module, query, key, value, attention_mask, **kwargs):
    """Full cache; hides the prompt entries a compressed run evicted in this layer, per KV head (query head h
    sees the row of KV head h // G); causal in each segment."""
    kwargs.pop("is_causal", None)
    q_len, k_len = query.shape[2], key.shape[2]
    visible = torch.ones(query.shape[1], q_len, k_len, dtype=torch.bool)
    keep = _VISIBLE.get(module.layer_idx)
    if keep is not None and k_len > keep.shape[1]:  # only forwards after the compressed part see the eviction
        groups = query.shape[1] // keep.shape[0]
        visible[:, :, :keep.shape[1]] = keep.repeat_interleave(groups, dim=0)[:, None, :]
    causal = torch.arange(k_len)[None, :] <= torch.arange(q_len)[:, None] + (k_len - q_len)
    return sdpa_attention_forward(module, query, key, value, (visible & causal)[None], is_causal=False,
                                  **kwargs)


AttentionInterface.register("acckv_test_segment_masked", masked_sdpa)


@contextlib.contextmanager
def masked_attention(thinker):
    config = thinker.get_decoder().layers[0].self_attn.config
    saved, config._attn_implementation = config._attn_implementation, "acckv_test_segment_masked"
    try:
        yield
    finally:
        config._attn_implementation = saved


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("protocol", ["context", "query-aware"])
@pytest.mark.parametrize("name", ["random", "snapkv", "acckv"])
def test_answers_come_from_the_compressed_cache(request, family, protocol, name):
    """Compressed answer = full cache with exactly the evicted entries masked, for the first token and the
    following ones (logits within 1e-5): the question, the header and the answer see only what was kept.

    The reference masks each KV head's own kept set (SnapKV keeps a set per KV head), and SnapKV runs with a
    window where its scores decide: its heads keep different sets, none of them the most recent media
    (`assert_scores_decide`). Catches: a per-head gather that mixes heads up (or takes head 0's set for all),
    kept indices off by one, eviction recorded but not applied, or a cut-back that leaves evicted entries."""
    tiny_lm, session = family_session(request, family)
    # masking can only reproduce eviction: AccKV without merging
    params = {"acckv": {"merge_target": "none"}, "snapkv": SNAPKV_SCORED}.get(name, {})
    question, budget, method = QUESTIONS[1], Budget(0.25), get_method(name, **params)
    media_cache = session.media_cache_for(protocol, method, budget)
    answer = session.answer(question, media_cache, protocol, method, budget, max_new_tokens=3)
    if name != "random":
        assert_scores_decide(answer.kept, answer.layout, per_head=name == "snapkv")
    prompt = session.prompt.question(question)
    _VISIBLE.clear()
    for layer, kept in answer.kept.items():
        _VISIBLE[layer] = kept_mask(kept, len(answer.layout))
    thinker = tiny_lm.thinker
    with torch.inference_mode(), masked_attention(thinker):
        cache = DynamicCache(config=thinker.config.get_text_config(decoder=True))
        cut = len(answer.layout)
        forward_segment(thinker, cache, prompt.positions[:, :, :prompt.media_end], embedded=session.embedded,
                        logits=False)
        if cut > prompt.media_end:  # query-aware: the question belongs to the compressed part
            ids, pos = prompt.span(prompt.media_end, cut)
            forward_segment(thinker, cache, pos, ids, logits=False)
        ids, pos = prompt.span(cut, prompt.length)
        first = forward_segment(thinker, cache, pos, ids)
        tokens = greedy_decode(thinker, cache, first, prompt.next_positions(), 3, set())
    assert torch.allclose(first, answer.first_logits, atol=1e-5)
    assert len(answer.token_ids) >= 1 and tokens[:len(answer.token_ids)] == answer.token_ids
    assert len(answer.token_ids) == 3 or answer.token_ids[-1] in session.eos  # shorter only by stopping
    full = session.answer(question, session.media_cache_for(protocol, get_method("full"), budget), protocol,
                          get_method("full"), budget, max_new_tokens=1)
    assert not torch.allclose(full.first_logits, answer.first_logits, atol=1e-4)  # compression is visible


@pytest.mark.parametrize("protocol", ["context", "query-aware", "prefill"])
def test_nothing_of_one_question_leaks_into_the_next(tiny_lm, media, protocol):
    """Answers to [Q1, Q2, Q3] equal each question asked alone; the cache is cut back after every answer.

    SnapKV with a window where the scores decide (per KV head, not the most recent media), so under
    query-aware each question keeps its own set and a stash or cache left over from the previous question
    would change what the next one keeps. Catches: a cut-back that keeps a question's entries, a stash forked
    by reference and extended by the previous question, a compressed copy reused across questions."""
    method, budget = get_method("snapkv", **SNAPKV_SCORED), Budget(0.3)
    session = ClipSession(tiny_lm, media)
    media_cache = session.media_cache_for(protocol, method, budget)
    lengths = [layer.keys.shape[2] for layer in media_cache.cache.layers]
    together = [session.answer(q, media_cache, protocol, method, budget, max_new_tokens=3) for q in QUESTIONS]
    assert [layer.keys.shape[2] for layer in media_cache.cache.layers] == lengths
    for answer in together:
        assert_scores_decide(answer.kept, answer.layout, per_head=True)
    if protocol == "query-aware":  # the question takes part in the choice: the kept sets differ between questions
        is_media, n = ~session.prompt.layout.protected_mask, session.prompt.length
        kept = [[kept_mask(k, len(a.layout))[:, :n] & is_media for k in a.kept.values()] for a in together]
        assert any(not torch.equal(a, b) for a, b in zip(kept[0], kept[1]))
    for question, answer in zip(QUESTIONS, together):
        alone = ClipSession(tiny_lm, media).ask([question], method, budget, protocol, max_new_tokens=3)[0]
        assert answer.token_ids == alone.token_ids
        assert torch.allclose(answer.first_logits, alone.first_logits, atol=1e-6)


def test_timings_say_what_was_reused(tiny_lm, media, count_calls):
    """The timing fields agree with what ran, counted by hooks: two questions under one compression run each
    encoder once and one media prefill; a new budget on the same session prefills again (a second media
    cache) but does not encode again."""
    session = ClipSession(tiny_lm, media)
    P = session.prompt.length
    with count_calls(tiny_lm.thinker, long=P) as calls:
        first, second = session.ask(QUESTIONS[:2], get_method("acckv"), Budget(0.2), "context", max_new_tokens=2)
    assert (calls.audio, calls.video, calls.prefill) == (1, 1, [P])
    assert first.reused == [] and first.timings["encode_s"] > 0 and first.timings["media_prefill_s"] > 0
    assert set(second.reused) == {"decode", "encode", "media_prefill"}
    assert second.timings["encode_s"] == second.timings["media_prefill_s"] == 0
    with count_calls(tiny_lm.thinker, long=P) as calls:
        third = session.ask(QUESTIONS[2:], get_method("acckv"), Budget(0.1), "context", max_new_tokens=2)[0]
    assert (calls.audio, calls.video, calls.prefill) == (0, 0, [P])
    assert set(third.reused) == {"decode", "encode"} and third.timings["media_prefill_s"] > 0  # new budget


def test_protocol_names():
    assert check_protocol("context") == "context"
    with pytest.raises(ProtocolError, match="query-aware"):
        check_protocol("later")


def test_split_words():
    words = frozenset({"green", "blue", "red", "circle", "star"})
    assert split_words("greenblue", words) == "green blue"
    assert split_words("Redcircle.", words) == "Red circle."
    assert split_words("green", words) == "green"
    assert split_words("greenish bluestar", words) == "greenish blue star"
    assert split_words("starred", words) == "star red"
    assert split_words("greenblue", frozenset()) == "greenblue"


@pytest.mark.parametrize("name, params", [pytest.param(name, {}, id=name) for name in sorted(METHODS)] + [
    pytest.param("fastv", {"mode": "kv_emulate"}, id="fastv-kv_emulate"),
    pytest.param("acckv", {"merge_target": "none"}, id="acckv-no-merge")])
def test_prefill_first_token_is_the_full_caches_except_fastv_prune(tiny_lm, session, name, params):
    """Under `prefill` every layer is compressed after its attention over the whole prompt has run, so the
    first answer token equals the full cache's for every eviction or merging method (the blind spot the
    protocol exists to show); FastV's default `prune` mode drops tokens from the hidden states of layers ≥ K
    inside that prefill, so its first token moves. The second token already runs through the compressed cache.

    Catches: a docs claim of KL = 0 "for every method" (false for FastV prune), a `prefill` protocol that
    compresses before the header (the first token would move for every method), or FastV prune silently
    falling back to kv_emulate (its first token would not move)."""
    question, budget = QUESTIONS[1], Budget(0.1)
    method = build_method(name, **params)
    full = session.answer(question, session.media_cache_for("prefill", get_method("full"), budget), "prefill",
                          get_method("full"), budget, max_new_tokens=1)
    answer = session.answer(question, session.media_cache_for("prefill", method, budget), "prefill", method,
                            budget, max_new_tokens=1)
    assert answer.report.summary()["media_kept_ratio"] < 1.0 or name == "full"
    blind = torch.allclose(answer.first_logits, full.first_logits, atol=1e-6, rtol=0)
    if name == "fastv" and method.mode == "prune":
        assert not blind and (answer.first_logits - full.first_logits).abs().max() > 1e-3
    else:
        assert blind, (answer.first_logits - full.first_logits).abs().max()
