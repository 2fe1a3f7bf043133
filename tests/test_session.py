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

from conftest import FAMILIES, synthetic_media
from acckv_cli.model.generation import embed_prompt, forward_segment, greedy_decode, split_words
from acckv_cli.model.layout import layout_for_inputs
from acckv_cli.methods import Budget, CompressionError, get_method
from acckv_cli.methods.attention import per_layer_attention
from acckv_cli.methods.h2o import H2O
from acckv_cli.methods.stash import AttentionNeeds
from acckv_cli.model.load import build_inputs
from acckv_cli.answer.session import ClipSession, ProtocolError, check_protocol

QUESTIONS = ["What instrument plays?", "What colour is the square?", "Which instrument plays while the star is visible?"]


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
@pytest.mark.parametrize("name, params", [("snapkv", {}), ("h2o", {}), ("acckv", {}),
                                          ("acckv", {"score_queries": "all"}), ("acckv", {"score_queries": "window:80"}),
                                          ("random", {}), ("fastv", {}), ("taskfocus", {})])
def test_query_aware_with_a_shared_media_prefill_equals_one_segment(request, family, name, params):
    """The media prefilled once (stash recorded) and the question compressed later keeps the same entries
    and gives the same first-token logits as compressing media + question in one forward. (FastV's prune
    mode is one forward itself: the session extends the prefix's decoder inputs, deepstack included.)"""
    tiny_lm, session = family_session(request, family)
    question, budget = QUESTIONS[2], Budget(0.3)
    method = get_method(name, **params)
    run, first = one_segment_query_aware(tiny_lm, session, question, method, budget)
    media_cache = session.media_cache_for("query-aware", method, budget)
    answer = session.answer(question, media_cache, "query-aware", method, budget, max_new_tokens=1)
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


_VISIBLE: dict[int, torch.Tensor] = {}


def masked_sdpa(module, query, key, value, attention_mask, **kwargs):
    """Full cache; hides the prompt entries a compressed run evicted in this layer; causal in each segment."""
    kwargs.pop("is_causal", None)
    q_len, k_len = query.shape[2], key.shape[2]
    visible = torch.ones(q_len, k_len, dtype=torch.bool)
    keep = _VISIBLE.get(module.layer_idx)
    if keep is not None and k_len > keep.numel():  # only forwards after the compressed part see the eviction
        visible[:, :keep.numel()] = keep
    causal = torch.arange(k_len)[None, :] <= torch.arange(q_len)[:, None] + (k_len - q_len)
    return sdpa_attention_forward(module, query, key, value, (visible & causal)[None, None], is_causal=False,
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
    following ones (logits within 1e-5): the question, the header and the answer see only what was kept."""
    tiny_lm, session = family_session(request, family)
    params = {"merge_target": "none"} if name == "acckv" else {}  # masking can only reproduce eviction
    question, budget, method = QUESTIONS[1], Budget(0.25), get_method(name, **params)
    media_cache = session.media_cache_for(protocol, method, budget)
    answer = session.answer(question, media_cache, protocol, method, budget, max_new_tokens=3)
    prompt = session.prompt.question(question)
    _VISIBLE.clear()
    for layer, kept in answer.kept.items():
        keep = torch.zeros(len(answer.layout), dtype=torch.bool)
        keep[kept] = True
        _VISIBLE[layer] = keep
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
    assert tokens == answer.token_ids or answer.token_ids == tokens[:len(answer.token_ids)]
    full = session.answer(question, session.media_cache_for(protocol, get_method("full"), budget), protocol,
                          get_method("full"), budget, max_new_tokens=1)
    assert not torch.allclose(full.first_logits, answer.first_logits, atol=1e-4)  # compression is visible


@pytest.mark.parametrize("protocol", ["context", "query-aware", "prefill"])
def test_nothing_of_one_question_leaks_into_the_next(tiny_lm, media, protocol):
    """Answers to [Q1, Q2, Q3] equal each question asked alone; the cache is cut back after every answer."""
    method, budget = get_method("snapkv"), Budget(0.3)
    session = ClipSession(tiny_lm, media)
    media_cache = session.media_cache_for(protocol, method, budget)
    lengths = [layer.keys.shape[2] for layer in media_cache.cache.layers]
    together = [session.answer(q, media_cache, protocol, method, budget, max_new_tokens=3) for q in QUESTIONS]
    assert [layer.keys.shape[2] for layer in media_cache.cache.layers] == lengths
    for question, answer in zip(QUESTIONS, together):
        alone = ClipSession(tiny_lm, media).ask([question], method, budget, protocol, max_new_tokens=3)[0]
        assert answer.token_ids == alone.token_ids
        assert torch.allclose(answer.first_logits, alone.first_logits, atol=1e-6)


def test_timings_say_what_was_reused(tiny_lm, media):
    session = ClipSession(tiny_lm, media)
    first, second = session.ask(QUESTIONS[:2], get_method("acckv"), Budget(0.2), "context", max_new_tokens=2)
    assert first.reused == [] and first.timings["encode_s"] > 0 and first.timings["media_prefill_s"] > 0
    assert set(second.reused) == {"decode", "encode", "media_prefill"}
    assert second.timings["encode_s"] == second.timings["media_prefill_s"] == 0
    third = session.ask(QUESTIONS[2:], get_method("acckv"), Budget(0.1), "context", max_new_tokens=2)[0]
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
