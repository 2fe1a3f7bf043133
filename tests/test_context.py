"""The `context` protocol for every method, and the rules docs/commands.md states for it.

`tests/test_session.py` checks random, SnapKV and AccKV under `context` against the masked full cache; here
the other methods behind the README's `ctx` columns (H2O, PyramidKV, StreamingLLM, TaskFocus, FastV in both
modes, LOOK-M, and uniform / DivPrune / oracle), and what `context` means for each method without a
question: the closing delimiters are the text rows, SnapKV's window is the prefix's last 64 tokens, FastV's
last token is the last closing delimiter, TaskFocus picks video; and the full media KV never exists beyond
one layer at a time.
"""

from __future__ import annotations


import pytest
import torch
from transformers import AttentionInterface, DynamicCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward

import references
from conftest import FAMILIES, build_method, synthetic_media
from test_methods import attention_impl
from acckv_cli.answer.session import ClipSession, cache_from
from acckv_cli.methods import Budget, LayerContext, get_method
from acckv_cli.methods.attention import per_layer_attention
from acckv_cli.methods.base import kept_mask
from acckv_cli.model.generation import forward_segment, greedy_decode
from acckv_cli.model.layout import Modality

QUESTION = "What instrument plays?"  # an audio question: TaskFocus would pick audio if it saw it
BUDGET = Budget(0.25)

_KEEP: dict[int, torch.Tensor] = {}  # layer -> bool [KV or 1, P]: the media-prefix entries each KV head kept
_PREFILL_MASKED: set[int] = set()     # layers whose media prefill itself ran without the dropped entries


def masked_sdpa(module, query, key, value, attention_mask, **kwargs):
    """Full cache with the evicted prefix entries hidden, per KV head, from every forward after the media
    prefill (and inside it for the layers in _PREFILL_MASKED: FastV's prune mode); causal in each segment."""
    kwargs.pop("is_causal", None)
    q_len, k_len = query.shape[2], key.shape[2]
    visible = torch.ones(query.shape[1], q_len, k_len, dtype=torch.bool)
    keep = _KEEP.get(module.layer_idx)
    if keep is not None and (k_len > keep.shape[1] or module.layer_idx in _PREFILL_MASKED):
        visible[:, :, :keep.shape[1]] = keep.repeat_interleave(query.shape[1] // keep.shape[0], 0)[:, None, :]
    causal = torch.arange(k_len)[None, :] <= torch.arange(q_len)[:, None] + (k_len - q_len)
    return sdpa_attention_forward(module, query, key, value, (visible & causal)[None], is_causal=False,
                                  **kwargs)


AttentionInterface.register("acckv_test_context_masked", masked_sdpa)




@pytest.fixture(scope="module")
def media():
    return synthetic_media(seconds=4.0)


def family_session(request, family, media):
    lm = request.getfixturevalue({"qwen2.5": "tiny_lm", "qwen3": "q3_lm"}[family])
    return lm, ClipSession(lm, media)


def masked_reference(lm, session, answer, prefill_masked=()):
    """First-token logits and 3 greedy tokens of the question over the FULL media cache with exactly the
    entries `answer` evicted hidden (test reference; nothing of the method runs)."""
    prompt = session.prompt.question(QUESTION)
    _KEEP.clear()
    _KEEP.update({layer: kept_mask(keep, prompt.media_end) for layer, keep in answer.kept.items()})
    _PREFILL_MASKED.clear()
    _PREFILL_MASKED.update(prefill_masked)
    thinker = lm.thinker
    with torch.inference_mode(), attention_impl(thinker, "acckv_test_context_masked"):
        cache = DynamicCache(config=thinker.config.get_text_config(decoder=True))
        forward_segment(thinker, cache, prompt.positions[:, :, :prompt.media_end], embedded=session.embedded,
                        logits=False)
        ids, pos = prompt.span(prompt.media_end, prompt.length)
        first = forward_segment(thinker, cache, pos, ids)
        tokens = greedy_decode(thinker, cache, first, prompt.next_positions(), 3, set())
    return first, tokens


EVICTING = [pytest.param(name, {}, id=name)
            for name in ("h2o", "pyramidkv", "streamingllm", "taskfocus", "uniform", "divprune", "oracle")]
EVICTING += [pytest.param("fastv", {"mode": "kv_emulate"}, id="fastv-kv_emulate")]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name, params", EVICTING + [pytest.param("fastv", {}, id="fastv-prune")])
def test_context_answers_equal_the_masked_full_cache(request, media, family, name, params):
    """Under `context`, the question, header and answer of every evicting method see exactly the media
    entries it kept: first-token logits within 1e-5 and the same 3 greedy tokens as the full cache with the
    evicted entries masked (per KV head). FastV's prune mode also drops tokens inside the media prefill, so
    its reference masks them from layer K on in that prefill too. Catches: a method whose context cache is
    compressed with the wrong layout (question rows expected but absent), eviction recorded but not applied,
    kept indices of one layer applied to another, FastV prune falling back to kv_emulate."""
    lm, session = family_session(request, family, media)
    method = build_method(name, **params)
    answer = session.ask([QUESTION], method, BUDGET, "context", max_new_tokens=3)[0]
    P = session.prompt.length
    assert any(keep.shape[-1] < P for keep in answer.kept.values())  # (kv_emulate keeps layers < K whole)
    pruned = ()
    if name == "fastv" and method.mode == "prune":
        pruned = range(method.start_layer(len(answer.kept)), len(answer.kept))
    first, tokens = masked_reference(lm, session, answer, pruned)
    assert torch.allclose(first, answer.first_logits, atol=1e-5), (first - answer.first_logits).abs().max()
    assert tokens[:len(answer.token_ids)] == answer.token_ids and answer.token_ids
    full = session.ask([QUESTION], get_method("full"), BUDGET, "context", max_new_tokens=1)[0]
    assert not torch.allclose(full.first_logits, answer.first_logits, atol=1e-4)  # compression is visible


@pytest.mark.parametrize("family", FAMILIES)
def test_lookm_context_cache_is_the_reference_merge(request, media, family):
    """LOOK-M under `context`: every layer's compressed media cache equals the independent LOOK-M merge
    (`references.lookm_merge`, pivot) of the full media cache's entries with LOOK-M's kept sets, and the
    answer equals the question run over a cache built from those reference entries. Catches: merging into
    the wrong head's slots, values left unmerged, a merge computed before the keys were final."""
    lm, session = family_session(request, family, media)
    method = get_method("lookm")
    full = session.media_cache_for("context", get_method("full"), BUDGET)
    compressed = session.media_cache_for("context", method, BUDGET)
    answer = session.answer(QUESTION, compressed, "context", method, BUDGET, max_new_tokens=3)
    expected = []
    for layer, ((k_full, v_full), (k, v)) in enumerate(zip(full.saved, compressed.saved)):
        keep = answer.kept[layer]
        keep = keep[None].expand(k_full.shape[1], -1) if keep.ndim == 1 else keep
        exp_k, exp_v = references.lookm_merge(k_full[0], v_full[0], keep, method.merge)
        torch.testing.assert_close(k[0].double(), exp_k, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(v[0].double(), exp_v, atol=1e-5, rtol=1e-5)
        expected.append((exp_k[None].float(), exp_v[None].float()))
    prompt = session.prompt.question(QUESTION)
    thinker = lm.thinker
    with torch.inference_mode(), per_layer_attention(thinker):
        cache = cache_from(thinker.config, expected)
        ids, pos = prompt.span(prompt.media_end, prompt.length)
        first = forward_segment(thinker, cache, pos, ids)
        tokens = greedy_decode(thinker, cache, first, prompt.next_positions(), 3, set())
    assert torch.allclose(first, answer.first_logits, atol=1e-5)
    assert tokens[:len(answer.token_ids)] == answer.token_ids


# --- what `context` means for each method: the rows it scores with ------------------------------------------

@pytest.fixture
def scored_rows(monkeypatch):
    """Every call of LayerContext.accumulate a method makes during a test: (layer, sorted rows). (The
    retention report's attention shares, which also read the text rows, are stubbed out.)"""
    calls: list[tuple[int, list[int]]] = []
    original = LayerContext.accumulate
    monkeypatch.setattr(LayerContext, "media_share", lambda self: {"video": 0.0, "audio": 0.0, "text": 0.0})

    def spy(self, rows, weighting="none"):
        calls.append((self.layer_idx, sorted(rows.tolist())))
        return original(self, rows, weighting)

    monkeypatch.setattr(LayerContext, "accumulate", spy)
    return calls


def closing_delimiters(session) -> list[int]:
    """Prefix positions after the last media token: by the tokenizer, they are the media's closing tokens."""
    layout = session.prompt.layout
    after = list(range(int(layout.media_mask.nonzero().max()) + 1, session.prompt.length))
    tokens = session.lm.processor.tokenizer.convert_ids_to_tokens(session.prompt.inputs["input_ids"][0, after])
    assert tokens and all(t.endswith("_eos|>") for t in tokens), tokens
    return after


def test_context_text_rows_are_the_closing_delimiters(tiny_lm, media, scored_rows):
    """AccKV (score_queries=text) under `context` scores every layer with exactly the closing delimiters
    (`<|audio_eos|><|vision_eos|>`), the only text after the media before a question exists. Catches: text
    rows taken from the system prompt, or none (an all-zero score)."""
    session = ClipSession(tiny_lm, media)
    session.ask([QUESTION], get_method("acckv"), BUDGET, "context", max_new_tokens=1)
    delimiters = closing_delimiters(session)
    assert len(delimiters) == 2
    layers = {layer for layer, _ in scored_rows}
    assert layers == set(range(len(tiny_lm.thinker.get_decoder().layers)))
    assert all(rows == delimiters for _, rows in scored_rows)


def test_context_snapkv_window_is_the_last_64_prefix_tokens(tiny_lm, media, scored_rows):
    """SnapKV under `context`: its observation window is the last 64 tokens of the prefix (the end of the
    media and the closing delimiters), in every layer; the question is not there yet."""
    session = ClipSession(tiny_lm, media)
    session.ask([QUESTION], get_method("snapkv"), BUDGET, "context", max_new_tokens=1)
    P = session.prompt.length
    assert scored_rows and all(rows == list(range(P - 64, P)) for _, rows in scored_rows)


def test_context_fastv_last_token_is_the_last_closing_delimiter(tiny_lm, media, scored_rows):
    """FastV under `context` ranks the media by the attention of the prefix's last token at layer K − 1 —
    the last closing delimiter — and keeps the top media by that row (checked against the row's attention
    recomputed by the reference accumulation). Catches: the last *prompt* token (which does not exist yet) or
    a row inside the media."""
    session = ClipSession(tiny_lm, media)
    method = get_method("fastv")
    answer = session.ask([QUESTION], method, BUDGET, "context", max_new_tokens=1)[0]
    K = method.start_layer(len(answer.kept))
    assert scored_rows == [(K - 1, [session.prompt.length - 1])]
    assert session.prompt.length - 1 == closing_delimiters(session)[-1]


@pytest.mark.parametrize("protocol, focus", [("context", "video"), ("query-aware", "audio")])
def test_context_taskfocus_has_no_question_and_picks_video(tiny_lm, media, protocol, focus):
    """TaskFocus picks its modality from the question's words: under `context` the cache is compressed before
    any question, so it picks video even for an audio question; under `query-aware` the same question gives
    audio. Catches: a question leaking into the media prefix's layout (context would then depend on it)."""
    session = ClipSession(tiny_lm, media)
    answer = session.ask([QUESTION], get_method("taskfocus"), BUDGET, protocol, max_new_tokens=1)[0]
    assert {layer["priority"] for layer in answer.report.layers} == {focus}


@pytest.mark.parametrize("name", ["acckv", "snapkv", "h2o", "fastv"])
def test_context_full_media_kv_exists_in_one_layer_at_a_time(tiny_lm, media, name):
    """Under `context` each layer is compressed right after its own attention in the media prefill: when
    layer l starts, every earlier layer already holds only its kept entries and no later layer holds any,
    so the full media KV of at most one layer exists at any time (docs/commands.md). The exception, stated
    there too: FastV's prune mode cuts its first K layers only when the prefill ends (layers ≥ K never hold
    the dropped tokens), so K layers are full at once. Catches: compression deferred to the end of the
    prefill (every layer full at once)."""
    session = ClipSession(tiny_lm, media)
    P = session.prompt.length
    seen: list[tuple[int, list[int]]] = []

    def before_layer(module, args, kwargs):
        cache = kwargs.get("cache") or kwargs.get("past_key_values")
        hidden = args[0] if args else kwargs["hidden_states"]
        if cache is not None and hidden.shape[1] == P:  # the media prefill
            lengths = [layer.keys.shape[2] if getattr(layer, "keys", None) is not None else 0
                       for layer in cache.layers]
            seen.append((module.self_attn.layer_idx, lengths))

    layers = tiny_lm.thinker.get_decoder().layers
    handles = [layer.register_forward_pre_hook(before_layer, with_kwargs=True) for layer in layers]
    try:
        session.ask([QUESTION], build_method(name), BUDGET, "context", max_new_tokens=1)
    finally:
        for handle in handles:
            handle.remove()
    assert [layer for layer, _ in seen] == list(range(len(layers)))
    late = range(get_method("fastv").start_layer(len(layers))) if name == "fastv" else range(0)
    for layer, lengths in seen:
        assert all(n == 0 for n in lengths[layer:]), (layer, lengths)
        assert all(0 < n < P for i, n in enumerate(lengths[:layer]) if i not in late), (layer, lengths)
        assert all(n == P for i, n in enumerate(lengths[:layer]) if i in late), (layer, lengths)
