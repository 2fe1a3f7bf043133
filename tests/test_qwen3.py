"""Pitfalls specific to Qwen3-Omni, each with a test that fails if it is mishandled.

* q/k RMSNorm before RoPE: the query recompute that scores keys must apply `q_norm` (the tiny model's norm
  weights are jittered away from 1, so a missing norm is visible);
* MoE decoder: eviction must leave expert routing as the masked full cache has it (the router is per token);
* deepstack: FastV's prune mode drops tokens inside the prefill, which is only sound after the layers that
  receive visual features, and the one-forward prefill must carry the deepstack inputs;
* float positions, 13 positions/s and `use_audio_in_video` are tested with the layout (tests/test_layout.py,
  tests/test_families.py); the central equivalences run on both families (test_methods.py, test_session.py).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from acckv_cli.model.families import QWEN2_5_OMNI, QWEN3_OMNI
from acckv_cli.methods import Budget, CompressionError, get_method
from acckv_cli.methods.attention import attention_rows, per_layer_attention
from acckv_cli.methods.base import kept_mask
from acckv_cli.answer.session import ClipSession
from conftest import Prompt, synthetic_media


@contextlib.contextmanager
def attention_impl(thinker, name):
    config = thinker.get_decoder().layers[0].self_attn.config
    saved, config._attn_implementation = config._attn_implementation, name
    try:
        yield
    finally:
        config._attn_implementation = saved


@contextlib.contextmanager
def routing(thinker):
    """Records the router's top-k expert indices of every MoE call, layer by layer, in call order."""
    records: list[tuple[int, torch.Tensor]] = []
    handles = [layer.mlp.gate.register_forward_hook(lambda m, a, out, i=i: records.append((i, out[2].clone())))
               for i, layer in enumerate(thinker.get_decoder().layers)]
    try:
        yield records
    finally:
        for h in handles:
            h.remove()


def generate(thinker, prompt, n=3):
    return prompt.generate(thinker, max_new_tokens=n, min_new_tokens=n)


# --- q_norm before RoPE -------------------------------------------------------------------------------------

class WithoutQNorm(torch.nn.Module):
    """The attention module as a recompute that forgot `q_norm` would see it."""

    def __init__(self, module):
        super().__init__()
        self.q_proj, self.head_dim, self.scaling = module.q_proj, module.head_dim, module.scaling


def test_query_recompute_applies_q_norm_before_rope(tiny_q3, q3_av_prompt):
    thinker, _ = tiny_q3
    captured = {}

    def grab(module, args, kwargs, output):
        captured[module.layer_idx] = (kwargs["hidden_states"], kwargs["position_embeddings"],
                                      kwargs["cache"].layers[module.layer_idx].keys.clone(), output[1])

    layers = thinker.get_decoder().layers
    handles = [layer.self_attn.register_forward_hook(grab, with_kwargs=True) for layer in layers]
    try:
        with attention_impl(thinker, "eager"), torch.no_grad():
            thinker(**q3_av_prompt.inputs, use_audio_in_video=True, output_attentions=True, use_cache=True)
    finally:
        for h in handles:
            h.remove()
    rows = torch.tensor([5, 70, len(q3_av_prompt.layout) - 1])
    for i, layer in enumerate(layers):
        hidden, (cos, sin), keys, eager = captured[i]
        (_, probs), = list(attention_rows(layer.self_attn, hidden, keys, cos, sin, rows))
        assert (probs - eager[0][:, rows]).abs().max() <= 1e-5
        (_, forgot), = list(attention_rows(WithoutQNorm(layer.self_attn), hidden, keys, cos, sin, rows))
        assert (forgot - eager[0][:, rows]).abs().max() > 1e-2


# --- MoE routing under eviction ----------------------------------------------------------------------------

_KEEP: dict[int, torch.Tensor] = {}  # layer -> bool [L_prompt]: the prompt keys the reference shows
_MASK_PREFILL = {"on": False}        # eviction: the prefill sees everything; FastV prune: layers >= K do not


def masked_sdpa(module, query, key, value, attention_mask, **kwargs):
    """Full-cache reference: hides the prompt keys outside `_KEEP[layer]` (causal within the call)."""
    kwargs.pop("is_causal", None)
    q_len, k_len = query.shape[2], key.shape[2]
    keep = _KEEP.get(module.layer_idx)
    if keep is None or (q_len == k_len and not _MASK_PREFILL["on"]):
        return sdpa_attention_forward(module, query, key, value, None, is_causal=True, **kwargs)
    visible = torch.ones(q_len, k_len, dtype=torch.bool)
    visible[:, :keep.numel()] = keep
    causal = torch.arange(k_len)[None, :] <= torch.arange(q_len)[:, None] + (k_len - q_len)
    return sdpa_attention_forward(module, query, key, value, (visible & causal)[None, None], is_causal=False,
                                  **kwargs)


AttentionInterface.register("acckv_test_qwen3_masked", masked_sdpa)


@contextlib.contextmanager
def masked(thinker, keep: dict[int, torch.Tensor], mask_prefill: bool):
    _KEEP.clear()
    _KEEP.update(keep)
    _MASK_PREFILL["on"] = mask_prefill
    try:
        with attention_impl(thinker, "acckv_test_qwen3_masked"):
            yield
    finally:
        _KEEP.clear()


def test_eviction_leaves_moe_routing_as_the_masked_full_cache(tiny_q3, q3_av_prompt):
    """Prefill routing (every token, kept or evicted) equals the uncompressed model's, since eviction happens
    after each layer's attention; every decode step routes exactly as with the evicted keys masked."""
    thinker, _ = tiny_q3
    n_layers, L = len(thinker.get_decoder().layers), len(q3_av_prompt.layout)
    method = get_method("snapkv", head_reduction="mean")  # one kept set per layer
    with method(thinker, q3_av_prompt.layout, Budget(0.3)) as run, routing(thinker) as compressed:
        out = generate(thinker, q3_av_prompt)
    with routing(thinker) as full:
        plain = generate(thinker, q3_av_prompt)
    keep = {r["layer"]: kept_mask(r["keep"], L)[0] for r in run.layers}
    with masked(thinker, keep, mask_prefill=False), routing(thinker) as reference:
        ref = generate(thinker, q3_av_prompt)
    assert len(compressed) == len(reference) == len(full) == n_layers * 3  # prefill + 2 decode steps
    prefill = slice(0, n_layers)
    assert all(a[1].shape[0] == L and torch.equal(a[1], b[1]) for a, b in zip(compressed[prefill], full[prefill]))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(compressed, reference))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(compressed, full))  # eviction did move some tokens
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(out.logits, ref.logits))
    assert not torch.allclose(out.logits[1], plain.logits[1], atol=1e-4)  # eviction did change the answer


# --- deepstack and FastV's prune mode ------------------------------------------------------------------------

def test_fastv_prune_on_qwen3_equals_masked_reference(tiny_q3, q3_av_prompt):
    """FastV drops tokens at layer K = 2 (after deepstack's layers 0 and 1): the prefill equals the full
    prefill with the dropped tokens hidden from layers ≥ K, and the kept tokens route to the same experts."""
    thinker, _ = tiny_q3
    K, n_layers = 2, len(thinker.get_decoder().layers)
    inputs, layout = q3_av_prompt.inputs, q3_av_prompt.layout
    with get_method("fastv")(thinker, layout, Budget(0.2)) as run, routing(thinker) as pruned_routes:
        pruned = thinker.generate(**inputs, use_audio_in_video=True, max_new_tokens=1, do_sample=False,
                                  return_dict_in_generate=True, output_logits=True)
    keep_idx = run.layers[-1]["keep"]
    keep = kept_mask(keep_idx, len(layout))[0]
    assert keep_idx.numel() < len(layout)
    with masked(thinker, {i: keep for i in range(K, n_layers)}, mask_prefill=True), routing(thinker) as \
            masked_routes, torch.no_grad():
        reference = thinker(**inputs, use_audio_in_video=True, use_cache=True)
    with per_layer_attention(thinker), torch.no_grad():
        full = thinker(**inputs, use_audio_in_video=True, use_cache=True)
    assert torch.allclose(pruned.logits[0][0], reference.logits[0, -1], atol=1e-5)
    assert not torch.allclose(pruned.logits[0][0], full.logits[0, -1], atol=1e-4)  # the pruning is visible
    for (layer, a), (_, b) in zip(pruned_routes[:n_layers], masked_routes[:n_layers]):
        if layer < K:  # before K every token ran
            assert torch.equal(a, b)
        else:  # from K on only the kept tokens ran: they chose the experts the masked reference chose for them
            assert a.shape[0] == keep_idx.numel() and torch.equal(a, b[keep_idx])


def test_fastv_prune_before_deepstack_layers_is_refused(tiny_q3, q3_lm, q3_av_prompt):
    """Layers 0 and 1 add deepstack features to the video rows with a whole-prompt mask: dropping rows at
    layer 1 would break that, so k=1 is a one-line CompressionError (kv_emulate and audio-only prompts run)."""
    thinker, _ = tiny_q3
    assert QWEN3_OMNI.deepstack_layers(thinker) == 2
    with pytest.raises(CompressionError, match=r"layer 1, but this model adds visual features to layers 0-1 "
                                               r"\(deepstack\); use k >= 2 or mode=kv_emulate"):
        with get_method("fastv", k=1)(thinker, q3_av_prompt.layout, Budget(0.3)):
            pass
    with get_method("fastv", k=1, mode="kv_emulate")(thinker, q3_av_prompt.layout, Budget(0.3)):
        q3_av_prompt.generate(thinker, max_new_tokens=1)
    audio = Prompt(q3_lm, synthetic_media(video=False))
    with get_method("fastv", k=1)(thinker, audio.layout, Budget(0.3)):
        audio.generate(thinker, max_new_tokens=1)
    session = ClipSession(q3_lm, synthetic_media())
    with pytest.raises(CompressionError, match="deepstack"):
        session.ask(["What plays?"], get_method("fastv", k=1), Budget(0.3), "query-aware", max_new_tokens=1)


def test_prefix_decoder_inputs_extend_with_the_deepstack_mask(q3_lm):
    """The media prefix's decoder inputs carry deepstack features and their token mask; text tokens appended
    for a one-forward prefill get no visual features (mask False), and the features are not repeated."""
    session = ClipSession(q3_lm, synthetic_media())
    embedded = session.embedded
    assert set(embedded) >= {"inputs_embeds", "visual_pos_masks", "deepstack_visual_embeds"}
    P = embedded["inputs_embeds"].shape[1]
    assert int(embedded["visual_pos_masks"].sum()) == 64 == embedded["deepstack_visual_embeds"][0].shape[0]
    tokens = torch.randn(1, 5, embedded["inputs_embeds"].shape[-1])
    out = QWEN3_OMNI.extend_decoder_inputs(embedded, tokens)
    assert out["inputs_embeds"].shape[1] == P + 5 and torch.equal(out["inputs_embeds"][:, P:], tokens)
    assert torch.equal(out["visual_pos_masks"], torch.cat([embedded["visual_pos_masks"],
                                                           torch.zeros(1, 5, dtype=torch.bool)], 1))
    assert out["deepstack_visual_embeds"] is embedded["deepstack_visual_embeds"]
    with pytest.raises(ValueError, match="cannot extend decoder inputs visual_pos_masks"):
        QWEN2_5_OMNI.extend_decoder_inputs(embedded, tokens)  # Qwen2.5 knows no such input
