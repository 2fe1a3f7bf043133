"""Verified facts about Qwen3-Omni's thinker in transformers 5.24, on the tiny offline model.

Groundwork for the Qwen3-Omni adapter: each test pins one fact that docs/qwen3-omni-notes.md states
(processor call, token layout, float mRoPE positions, hook kwargs, query recompute with q_norm, eviction
equivalence with MoE, segmented prefill with deepstack). Every number quoted in the notes comes from here.
Standalone: `pytest tests/test_qwen3_probe.py -q` (≈10 s on one CPU thread).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from acckv_cli.testing.qwen3 import build_tiny_qwen3_thinker

MEDIA_KEYS = ("pixel_values_videos", "video_grid_thw", "video_second_per_grid", "input_features",
              "feature_attention_mask")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def built():
    start = time.perf_counter()
    thinker, processor = build_tiny_qwen3_thinker()
    return thinker, processor, time.perf_counter() - start


@pytest.fixture(scope="module")
def q3(built):
    return built[0], built[1]


def clip(seconds=4.0, fps=2.0, size=(112, 140), seed=0):
    """Decoded frames (T, H, W, 3) uint8 at `fps` and 16 kHz mono noise of the same length."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (int(round(seconds * fps)), *size, 3), dtype=np.uint8)
    wav = (rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
    return frames, wav


def av_inputs(processor, seconds=4.0, fps=2.0, question="What instrument plays?", **overrides):
    """The 5.24 processor call for a video with its own soundtrack (pre-decoded frames and audio)."""
    frames, wav = clip(seconds, fps)
    conv = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
    size = dict(processor.video_processor.size)  # the processor's class default would override it
    kwargs = dict(text=text, videos=[frames], audio=[wav], load_audio_from_video=True, audio_from_video_indices=[0],
                  videos_kwargs={"fps": fps, "size": size, "cap_pixels_per_frame": True}, return_tensors="pt")
    kwargs.update(overrides)
    return processor(**{k: v for k, v in kwargs.items() if v is not None})


def rope_index(thinker, inputs, use_audio_in_video=True):
    fam = inputs.get("feature_attention_mask")
    return thinker.get_rope_index(inputs["input_ids"], None, inputs.get("video_grid_thw"), inputs["attention_mask"],
                                  use_audio_in_video, fam.sum(-1) if fam is not None else None,
                                  inputs.get("video_second_per_grid"))


@pytest.fixture(scope="module")
def av(q3):
    """4-s clip at 2 fps + soundtrack: inputs, 3-row and 4-row positions, rope delta, one-shot logits."""
    thinker, processor = q3
    inputs = av_inputs(processor)
    pos3, delta = rope_index(thinker, inputs)
    L = inputs["input_ids"].shape[1]
    pos4 = torch.cat([torch.arange(L, dtype=pos3.dtype)[None, None], pos3])
    with torch.no_grad():
        logits = thinker(**inputs, use_audio_in_video=True).logits
    return dict(inputs=inputs, pos3=pos3, pos4=pos4, delta=delta, L=L, logits=logits)


def runs(names):
    out = []
    for n in names:
        if out and out[-1][0] == n:
            out[-1][1] += 1
        else:
            out.append([n, 1])
    return [(n, c) for n, c in out]


# ---------------------------------------------------------------------------------------------------
# Builder, processor, token rates


def test_builder(built):
    thinker, processor, seconds = built
    assert seconds < 10
    assert type(thinker).__name__ == "Qwen3OmniMoeThinkerForConditionalGeneration"
    assert type(processor).__name__ == "Qwen3OmniMoeProcessor"
    cfg, tok = thinker.config, processor.tokenizer
    for name, token in [("video_token_id", "<|video_pad|>"), ("audio_token_id", "<|audio_pad|>"),
                        ("image_token_id", "<|image_pad|>"), ("audio_start_token_id", "<|audio_start|>"),
                        ("audio_end_token_id", "<|audio_end|>"), ("vision_start_token_id", "<|vision_start|>"),
                        ("vision_end_token_id", "<|vision_end|>")]:
        assert getattr(cfg, name) == tok.convert_tokens_to_ids(token)
    assert processor.video_token_id == cfg.video_token_id and processor.audio_token_id == cfg.audio_token_id
    assert not hasattr(cfg, "video_token_index")  # Qwen2.5's names do not exist here (attribute_map is empty)
    assert cfg.position_id_per_seconds == processor.position_id_per_seconds == 13
    decoder = thinker.get_decoder()
    assert decoder is thinker.model.language_model and len(decoder.layers) == 3
    for layer in decoder.layers:
        assert type(layer.mlp).__name__ == "Qwen3OmniMoeThinkerTextSparseMoeBlock"
        assert layer.mlp.gate.num_experts == 4 and layer.mlp.gate.top_k == 2
        assert not torch.allclose(layer.self_attn.q_norm.weight, torch.ones(16))  # jittered: order matters
    assert list(thinker.model.visual.deepstack_visual_indexes) == [0, 1]
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q?"}]}],
        add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\n"


def test_processor_call_for_video_with_soundtrack(q3, av):
    thinker, processor = q3
    inputs = av["inputs"]
    assert sorted(inputs) == sorted(["input_ids", "attention_mask", "pixel_values_videos", "video_grid_thw",
                                     "video_second_per_grid", "input_features", "feature_attention_mask"])
    assert "use_audio_in_video" not in inputs  # must be passed to forward/generate by the caller
    assert inputs["video_grid_thw"].tolist() == [[4, 8, 8]]          # 112×140 → 128×128, patch 16
    assert inputs["pixel_values_videos"].shape == (256, 3 * 2 * 16 * 16)
    assert inputs["video_second_per_grid"].tolist() == [1.0]         # temporal_patch_size / fps
    ids = inputs["input_ids"][0]
    assert int((ids == thinker.config.video_token_id).sum()) == 64   # 16 per frame pair
    assert int((ids == thinker.config.audio_token_id).sum()) == 52   # 13 per second
    frames, wav = clip()
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q?"}]}],
        add_generation_prompt=True, tokenize=False)
    with pytest.raises(ValueError, match="audio_pad"):  # decoded audio without audio_from_video_indices
        processor(text=text, videos=[frames], audio=[wav], load_audio_from_video=True,
                  videos_kwargs={"fps": 2.0}, return_tensors="pt")
    with pytest.raises(ImportError, match="torchcodec"):  # frames + load_audio_from_video, no audio
        processor(text=text, videos=[frames], load_audio_from_video=True, videos_kwargs={"fps": 2.0})
    no_fps = av_inputs(processor, videos_kwargs={"size": dict(processor.video_processor.size)})
    assert no_fps["video_second_per_grid"].tolist() == [2.0]  # processor assumes 1 fps when not told
    no_size = av_inputs(processor, videos_kwargs={"fps": 2.0})
    assert no_size["video_grid_thw"].tolist() == [[4, 22, 26]]  # class default size 128·32²–768·32² wins
    # The deprecated flag is mapped to load_audio_from_video (with a warning); it still needs the indices
    deprecated = av_inputs(processor, load_audio_from_video=None, use_audio_in_video=True)
    assert torch.equal(deprecated["input_ids"], inputs["input_ids"])
    with pytest.raises(ValueError, match="audio_pad"):
        av_inputs(processor, load_audio_from_video=None, audio_from_video_indices=None, use_audio_in_video=True)


def test_video_only_and_audio_only_prompts(q3):
    thinker, processor = q3
    frames, wav = clip()
    size = dict(processor.video_processor.size)
    for kind, L, delta in [("video", 82, -24.0), ("audio", 70, 0.0)]:
        conv = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": "What instrument plays?"}]}]
        text = processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
        media = (dict(videos=[frames], videos_kwargs={"fps": 2.0, "size": size}) if kind == "video"
                 else dict(audio=[wav]))
        inputs = processor(text=text, return_tensors="pt", **media)
        _, d = rope_index(thinker, inputs, use_audio_in_video=False)
        assert (inputs["input_ids"].shape[1], d.item()) == (L, delta)


def test_save_and_reload(q3, av, tmp_path):
    from transformers import AutoProcessor, Qwen3OmniMoeThinkerForConditionalGeneration

    from acckv_cli.testing.qwen3 import save_tiny_qwen3_thinker

    thinker, _ = q3
    save_tiny_qwen3_thinker(tmp_path)
    loaded = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(tmp_path).eval()
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(processor).__name__ == "Qwen3OmniMoeProcessor"
    assert loaded.config.vision_start_token_id == thinker.config.vision_start_token_id
    assert loaded.config.position_id_per_seconds == 13
    inputs = av_inputs(processor)
    assert torch.equal(inputs["input_ids"], av["inputs"]["input_ids"])
    kw = dict(use_audio_in_video=True, max_new_tokens=4, do_sample=False)
    assert torch.equal(loaded.generate(**inputs, **kw), thinker.generate(**av["inputs"], **kw))


@pytest.mark.parametrize("seconds,mel,tokens", [(1.0, 100, 13), (2.5, 250, 33), (4.0, 400, 52), (40.0, 4000, 520)])
def test_audio_token_rate(q3, seconds, mel, tokens):
    """13 tokens per full second (100 mel frames); no truncation at the feature extractor's 30-s chunk."""
    thinker, processor = q3
    out = processor(text="<|audio_start|><|audio_pad|><|audio_end|>", audio=[np.zeros(int(seconds * 16000),
                    np.float32)], return_tensors="pt")
    assert int(out["feature_attention_mask"].sum()) == mel
    assert int((out["input_ids"] == thinker.config.audio_token_id).sum()) == tokens


# ---------------------------------------------------------------------------------------------------
# Token layout and positions


def test_token_layout_and_positions(q3, av):
    thinker, processor = q3
    cfg, tok = thinker.config, processor.tokenizer
    ids = av["inputs"]["input_ids"][0]
    names = tok.convert_ids_to_tokens(ids.tolist())
    vs, ve = names.index("<|vision_start|>"), names.index("<|vision_end|>")
    block = runs(names[vs:ve + 1])
    assert block == [("<|vision_start|>", 1), ("<|audio_start|>", 1),
                     *[("<|video_pad|>", 16), ("<|audio_pad|>", 13)] * 4,
                     ("<|audio_end|>", 1), ("<|vision_end|>", 1)]
    assert names[ve + 1:ve + 4] == ["What", "Ġinstrument", "Ġplays"]
    pos = av["pos3"][:, 0]
    assert pos.dtype == torch.float32 and av["pos3"].shape == (3, 1, av["L"])
    p = vs  # the two bos tokens take two positions (Qwen2.5: one shared position)
    assert pos[:, vs].tolist() == [p] * 3 and pos[:, vs + 1].tolist() == [p + 1] * 3
    origin = p + 2
    video = (ids == cfg.video_token_id).nonzero().squeeze(1)
    audio = (ids == cfg.audio_token_id).nonzero().squeeze(1)
    assert pos[0, video].unique().tolist() == [origin + 13 * g for g in range(4)]  # t = origin + 13·g·spg
    assert pos[1, video[:16]].tolist() == [origin + r for r in range(4) for _ in range(4)]
    assert pos[2, video[:16]].tolist() == [origin + c for _ in range(4) for c in range(4)]
    assert torch.equal(pos[:, audio], (origin + torch.arange(52.0)).expand(3, -1))  # 1 position per audio token
    media_t = pos[0, vs + 2:ve - 1]
    assert bool((media_t[1:] >= media_t[:-1]).all())  # merge-sorted by time: per token, not 2-s chunks
    last = origin + 51
    assert pos[:, ve - 1].tolist() == [last + 1] * 3 and pos[:, ve].tolist() == [last + 2] * 3
    assert av["delta"].tolist() == [[-64.0]] and float(pos.max()) + 1 - av["L"] == -64


def test_float_positions_and_layout_times(q3):
    """At 3 fps, spg·13 = 8.67: temporal positions are fractional; TokenLayout times need float positions."""
    from acckv_cli.model.layout import Modality, SpecialIds, build_layout, label_tokens

    thinker, processor = q3
    cfg, tok = thinker.config, processor.tokenizer
    inputs = av_inputs(processor, fps=3.0)
    pos3, _ = rope_index(thinker, inputs)
    video = inputs["input_ids"][0] == cfg.video_token_id
    t = pos3[0, 0, video].unique()
    assert torch.allclose(t - t[0], torch.arange(6.0) * 26 / 3, atol=1e-4)
    assert float(t[1] - t[0]) % 1 > 0.5  # 8.667: not an integer
    # Qwen3's config says video_token_id, not Qwen2.5's video_token_index: the family adapter reads the right
    # names (before it, SpecialIds.from_model raised AttributeError here). Checked against the token strings.
    tid = tok.convert_tokens_to_ids
    ids = SpecialIds.from_model(cfg, tok)
    assert (ids.video, ids.audio) == (tid("<|video_pad|>"), tid("<|audio_pad|>"))
    assert ids.delimiters == tuple(tid(s) for s in (
        "<|audio_start|>", "<|audio_end|>", "<|vision_start|>", "<|vision_end|>", "<|im_start|>", "<|im_end|>"))
    labels = label_tokens(inputs["input_ids"][0], ids, tok)
    spg = float(inputs["video_second_per_grid"][0])
    layout = build_layout(pos3[:, 0], labels, float(cfg.position_id_per_seconds), spg)
    v, a = layout.mask(Modality.VIDEO), layout.mask(Modality.AUDIO)
    assert torch.allclose(layout.time_s[v].unique(), torch.arange(6.0) * 2 / 3, atol=1e-5)
    assert layout.frame_pair[v].unique().tolist() == list(range(6))
    assert layout.row[v].unique().tolist() == [0, 1, 2, 3] and layout.col[v].unique().tolist() == [0, 1, 2, 3]
    assert torch.allclose(layout.time_s[a], torch.arange(52.0) / 13, atol=1e-5)
    assert layout.counts()["system"] == 0  # the Qwen3 template adds no system turn
    truncated = build_layout(pos3[:, 0].long(), labels, 13.0, spg)  # int positions lose 0.67 → 0.62 s
    assert (truncated.time_s[v].unique() - layout.time_s[v].unique()).abs().max() > 0.05
    wrong_rate = build_layout(pos3[:, 0], labels, 25.0, spg)  # the config dataclass default
    assert wrong_rate.duration_s < 2.1 < layout.duration_s


def test_config_rate_must_match_processor(q3, av):
    """The processor interleaves at 13 positions/s; a config left at 25 assigns positions in another order."""
    thinker, _ = q3
    cfg = thinker.config
    ids = av["inputs"]["input_ids"][0]
    audio = ids == cfg.audio_token_id

    def audio_slots_with_grid_positions(pos):
        return int(((pos[1, 0, audio] != pos[0, 0, audio]) | (pos[2, 0, audio] != pos[0, 0, audio])).sum())

    assert audio_slots_with_grid_positions(av["pos3"]) == 0
    cfg.position_id_per_seconds = 25
    try:
        pos25, delta25 = rope_index(thinker, av["inputs"])
    finally:
        cfg.position_id_per_seconds = 13
    assert audio_slots_with_grid_positions(pos25) == 30 and delta25.item() == -40


def test_use_audio_in_video_and_attention_mask_are_needed(q3, av):
    thinker, _ = q3
    inputs, L = av["inputs"], av["L"]
    pos_off, delta_off = rope_index(thinker, inputs, use_audio_in_video=False)
    assert delta_off.item() == 0 and torch.equal(pos_off[0, 0], torch.arange(float(L)))  # plain 1-D
    with torch.no_grad():
        off = thinker(**inputs).logits  # flag missing: silently 1-D positions
        no_mask = thinker(**{k: v for k, v in inputs.items() if k != "attention_mask"},
                          use_audio_in_video=True).logits  # no attention_mask: mRoPE is skipped silently
    assert (off - av["logits"]).abs().max() > 1e-2
    assert (no_mask - av["logits"]).abs().max() > 1e-2
    with pytest.raises(TypeError):  # get_rope_index itself needs the mask (indexes attention_mask[i])
        thinker.get_rope_index(inputs["input_ids"], None, inputs["video_grid_thw"], None, True,
                               inputs["feature_attention_mask"].sum(-1), inputs["video_second_per_grid"])


def test_generate_positions(q3, av):
    thinker, _ = q3
    seen = []
    original = thinker.model.language_model.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["position_ids"].clone())
        return original(*args, **kwargs)

    thinker.model.language_model.forward = spy
    try:
        thinker.generate(**av["inputs"], use_audio_in_video=True, max_new_tokens=3, do_sample=False)
    finally:
        del thinker.model.language_model.forward
    L, top = av["L"], float(av["pos3"].max())
    assert seen[0].shape == (4, 1, L) and seen[0].dtype == torch.float32
    assert torch.equal(seen[0][1:], av["pos3"])
    assert [s[:, 0, -1].tolist() for s in seen[1:]] == [[L, top + 1] + [top + 1] * 2, [L + 1] + [top + 2] * 3]
    assert torch.equal(thinker.model.rope_deltas, av["delta"])


# ---------------------------------------------------------------------------------------------------
# Attention module, hook kwargs, query recompute


def test_attention_module_and_hook_kwargs(q3, av):
    thinker, _ = q3
    layers = thinker.get_decoder().layers
    attn = layers[0].self_attn
    assert type(attn).__name__ == "Qwen3OmniMoeThinkerTextAttention"
    assert (attn.head_dim, attn.scaling, attn.num_key_value_groups, attn.layer_idx) == (16, 0.25, 2, 0)
    assert attn.q_proj.bias is None and attn.q_norm.weight.shape == (16,) and attn.k_norm.weight.shape == (16,)
    seen = {}

    def hook(module, args, kwargs, output):
        seen.setdefault(module.layer_idx, []).append((args, dict(kwargs), output))

    handles = [layer.self_attn.register_forward_hook(hook, with_kwargs=True) for layer in layers]
    try:
        with torch.no_grad():
            thinker(**av["inputs"], use_audio_in_video=True, use_cache=True)
            thinker.generate(**av["inputs"], use_audio_in_video=True, max_new_tokens=2, do_sample=False)
    finally:
        for h in handles:
            h.remove()
    L = av["L"]
    args, kw, out = seen[1][0]
    assert args == ()
    assert set(kw) == {"hidden_states", "attention_mask", "position_ids", "cache", "use_cache",
                       "position_embeddings", "output_router_logits"}
    assert kw["hidden_states"].shape == (1, L, 64) and kw["attention_mask"] is None
    assert type(kw["cache"]).__name__ == "DynamicCache" and kw["cache"].layers[1].keys.shape == (1, 2, L, 16)
    assert [t.shape for t in kw["position_embeddings"]] == [(1, L, 16), (1, L, 16)]
    assert kw["position_ids"] is None  # direct forward: positions computed inside, no text row
    assert out[0].shape == (1, L, 64) and out[1] is None  # sdpa returns no probabilities
    _, kw_gen, _ = seen[1][1]  # generate: 4-row positions, the text row reaches the hook
    assert torch.equal(kw_gen["position_ids"], torch.arange(float(L))[None])
    _, kw_step, _ = seen[1][2]
    assert kw_step["hidden_states"].shape == (1, 1, 64) and kw_step["cache"].layers[1].keys.shape[2] == L + 1


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def recompute_probs(module, hidden, keys, cos, sin, W, q_norm="before_rope"):
    """Attention probabilities [1, H, W, L] of the last W query rows against cached post-RoPE keys."""
    B, L, _ = hidden.shape
    q = module.q_proj(hidden[:, -W:]).view(B, W, -1, module.head_dim)
    if q_norm == "before_rope":
        q = module.q_norm(q)
    q = q.transpose(1, 2)
    c, s = cos[:, -W:].unsqueeze(1), sin[:, -W:].unsqueeze(1)
    q = q * c + rotate_half(q) * s
    if q_norm == "after_rope":
        q = module.q_norm(q)
    k = keys.repeat_interleave(module.num_key_value_groups, dim=1)
    scores = q @ k.transpose(2, 3) * module.scaling
    scores = scores + torch.triu(torch.full((W, L), float("-inf")), diagonal=L - W + 1)
    return scores.softmax(-1, dtype=torch.float32)


@pytest.fixture(scope="module")
def eager_capture(q3, av):
    """Per layer: hook kwargs (hidden, cos/sin, cached keys) and eager attention probabilities."""
    thinker, _ = q3
    layers = thinker.get_decoder().layers
    config = layers[0].self_attn.config
    captured = {}

    def hook(module, args, kwargs, output):
        keys = kwargs["cache"].layers[module.layer_idx].keys
        captured[module.layer_idx] = (kwargs["hidden_states"], *kwargs["position_embeddings"], keys.clone())

    saved = config._attn_implementation
    config._attn_implementation = "eager"  # the text config only; encoders keep sdpa
    handles = [layer.self_attn.register_forward_hook(hook, with_kwargs=True) for layer in layers]
    try:
        with torch.no_grad():
            out = thinker(**av["inputs"], use_audio_in_video=True, use_cache=True, output_attentions=True)
    finally:
        config._attn_implementation = saved
        for h in handles:
            h.remove()
    assert len(out.attentions) == 3 and out.attentions[0].shape == (1, 4, av["L"], av["L"])
    return captured, out.attentions


def test_query_recompute_with_q_norm_matches_eager(q3, eager_capture):
    thinker, _ = q3
    captured, attentions = eager_capture
    W = 16
    with torch.no_grad():
        for i, layer in enumerate(thinker.get_decoder().layers):
            hidden, cos, sin, keys = captured[i]
            ref = attentions[i][:, :, -W:]
            right = recompute_probs(layer.self_attn, hidden, keys, cos, sin, W)
            assert (right - ref).abs().max() <= 1e-5
            for wrong in ("none", "after_rope"):  # q_norm missing or misplaced: clearly different
                assert (recompute_probs(layer.self_attn, hidden, keys, cos, sin, W, wrong) - ref).abs().max() > 1e-2
            k = layer.self_attn.k_norm(layer.self_attn.k_proj(hidden).view(1, -1, 2, 16)).transpose(1, 2)
            assert torch.allclose(k * cos.unsqueeze(1) + rotate_half(k) * sin.unsqueeze(1), keys, atol=1e-6)


def test_project_attention_helpers_handle_qwen3(q3, av, eager_capture):
    """acckv_cli.methods.attention (q_norm by hasattr) gives eager's numbers on Qwen3-Omni too."""
    from acckv_cli.methods.attention import accumulate_attention, attention_rows

    thinker, _ = q3
    captured, attentions = eager_capture
    L = av["L"]
    with torch.no_grad():
        for i, layer in enumerate(thinker.get_decoder().layers):
            hidden, cos, sin, keys = captured[i]
            rows = torch.arange(L - 16, L)
            ((_, probs),) = list(attention_rows(layer.self_attn, hidden, keys, cos, sin, rows))
            assert (probs - attentions[i][0, :, -16:]).abs().max() <= 1e-5
            total = accumulate_attention(layer.self_attn, hidden, keys, cos, sin, torch.arange(L))
            assert (total - attentions[i][0].sum(1)).abs().max() <= 1e-5


# ---------------------------------------------------------------------------------------------------
# Eviction equivalence (MoE), segmented prefill, deepstack


class KeyMask:
    """Full-cache sdpa that hides the evicted prompt entries (same set in every layer): test reference."""

    name = "qwen3_probe_masked"
    visible: torch.Tensor | None = None  # bool [L_prompt]

    @classmethod
    def attention(cls, module, query, key, value, attention_mask, **kwargs):
        kwargs.pop("is_causal", None)
        q, k = query.shape[2], key.shape[2]
        if q == k:
            return sdpa_attention_forward(module, query, key, value, None, is_causal=True, **kwargs)
        mask = torch.arange(k)[None, :] <= torch.arange(q)[:, None] + (k - q)  # bottom-right causal
        n = min(cls.visible.numel(), k)
        mask[:, :n] &= cls.visible[:n]
        return sdpa_attention_forward(module, query, key, value, mask[None, None], is_causal=False, **kwargs)


AttentionInterface.register(KeyMask.name, KeyMask.attention)


class attention_impl:
    def __init__(self, thinker, name):
        self.config, self.name = thinker.get_decoder().layers[0].self_attn.config, name

    def __enter__(self):
        self.saved, self.config._attn_implementation = self.config._attn_implementation, self.name

    def __exit__(self, *exc):
        self.config._attn_implementation = self.saved


class prune_after_prefill:
    """Forward hooks that keep only `keep` (sorted prompt indices) in every layer after an empty-cache prefill."""

    def __init__(self, thinker, keep):
        self.layers, self.keep = thinker.get_decoder().layers, keep

    def hook(self, module, args, kwargs, output):
        hidden, cache = kwargs["hidden_states"], kwargs["cache"]
        layer = cache.layers[module.layer_idx]
        if hidden.shape[1] > 1 and layer.get_seq_length() == hidden.shape[1]:
            layer.keys = layer.keys.index_select(2, self.keep).contiguous()
            layer.values = layer.values.index_select(2, self.keep).contiguous()

    def __enter__(self):
        self.handles = [layer.self_attn.register_forward_hook(self.hook, with_kwargs=True) for layer in self.layers]

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def every_other_media(thinker, input_ids, upto=None):
    ids = input_ids[0] if upto is None else input_ids[0, :upto]
    media = ((ids == thinker.config.video_token_id) | (ids == thinker.config.audio_token_id)).nonzero().squeeze(1)
    visible = torch.ones(ids.numel(), dtype=torch.bool)
    visible[media[::2]] = False
    return visible


class record_routing:
    def __init__(self, thinker):
        self.layers, self.indices = thinker.get_decoder().layers, []

    def __enter__(self):
        self.handles = [layer.mlp.gate.register_forward_hook(lambda m, a, o: self.indices.append(o[2].clone()))
                        for layer in self.layers]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def max_diffs(a, b):
    return [float((x - y).abs().max()) for x, y in zip(a, b)]


def test_pruned_generate_equals_masked_full_cache(q3, av):
    thinker, _ = q3
    inputs, L = av["inputs"], av["L"]
    visible = every_other_media(thinker, inputs["input_ids"])
    keep = visible.nonzero().squeeze(1)
    assert (L, keep.numel()) == (136, 78)

    def gen():
        return thinker.generate(**inputs, use_audio_in_video=True, max_new_tokens=5, do_sample=False,
                                return_dict_in_generate=True, output_logits=True)

    with prune_after_prefill(thinker, keep), record_routing(thinker) as r_pruned:
        pruned = gen()
    assert [layer.keys.shape[2] for layer in pruned.cache.layers] == [78 + 4] * 3
    KeyMask.visible = visible
    with attention_impl(thinker, KeyMask.name), record_routing(thinker) as r_masked:
        masked = gen()
    full = gen()
    assert max(max_diffs(pruned.logits, masked.logits)) <= 1e-5
    assert torch.equal(pruned.sequences, masked.sequences)
    # MoE: the routing of every decode step is identical too (no capacity limit, no cross-token coupling)
    assert len(r_pruned.indices) == len(r_masked.indices) == 3 * 5  # 3 layers × (prefill + 4 steps)
    assert all(torch.equal(x, y) for x, y in zip(r_pruned.indices, r_masked.indices))
    assert min(max_diffs(pruned.logits[1:], full.logits[1:])) > 1e-3  # eviction did change the answer logits


def test_moe_block_is_per_token(q3):
    thinker, _ = q3
    moe = thinker.get_decoder().layers[1].mlp
    x = torch.randn(1, 40, 64, generator=torch.Generator().manual_seed(0))
    subset = torch.arange(0, 40, 3)
    with torch.no_grad():
        assert torch.allclose(moe(x)[:, subset], moe(x[:, subset]), atol=1e-6)


def test_segmented_prefill_with_explicit_positions(q3, av):
    thinker, _ = q3
    inputs, pos4, L = av["inputs"], av["pos4"], av["L"]
    ids = inputs["input_ids"]
    media = {k: inputs[k] for k in MEDIA_KEYS}
    a = int((ids[0] == thinker.config.vision_end_token_id).nonzero()) + 1  # all media in segment 1
    b = a + 3
    sentinel = torch.tensor([[123.0]])
    thinker.model.rope_deltas = sentinel
    with torch.no_grad():
        one = thinker(input_ids=ids, **media, position_ids=pos4, use_audio_in_video=True).logits
        assert torch.equal(one, av["logits"])  # explicit pos4 = what forward computes from the mask
        s1 = thinker(input_ids=ids[:, :a], **media, position_ids=pos4[..., :a], use_audio_in_video=True,
                     use_cache=True)
        s2 = thinker(input_ids=ids[:, a:b], position_ids=pos4[..., a:b], cache=s1.cache, use_cache=True)
        s3 = thinker(input_ids=ids[:, b:], position_ids=pos4[..., b:], cache=s1.cache, use_cache=True)
        assert thinker.model.rope_deltas is sentinel  # explicit positions never refresh rope_deltas
        segmented = torch.cat([s1.logits, s2.logits, s3.logits], 1)
        assert (segmented - one).abs().max() <= 1e-5
        # Without positions the later segment falls back to cache length + rope_deltas:
        thinker.model.rope_deltas = None
        s1 = thinker(input_ids=ids[:, :a], **media, position_ids=pos4[..., :a], use_audio_in_video=True,
                     use_cache=True)
        bad = thinker(input_ids=ids[:, a:], cache=s1.cache, use_cache=True).logits  # rope_deltas None → 1-D
        assert (bad - one[:, a:]).abs().max() > 1e-2
        s1 = thinker(input_ids=ids[:, :a], attention_mask=inputs["attention_mask"][:, :a], **media,
                     use_audio_in_video=True, use_cache=True)  # mask, no positions: rope_deltas from segment 1
        assert torch.equal(thinker.model.rope_deltas, av["delta"])
        for layer in s1.cache.layers:  # ...right only while the cache keeps its logical length
            layer.keys, layer.values = layer.keys[:, :, ::2].contiguous(), layer.values[:, :, ::2].contiguous()
        positions = {}

        def grab(module, args, kwargs, output):  # returns None: the output stays as it is
            positions["cos"] = kwargs["position_embeddings"][0]

        handle = thinker.get_decoder().layers[0].self_attn.register_forward_hook(grab, with_kwargs=True)
        try:
            thinker(input_ids=ids[:, a:], cache=s1.cache, use_cache=True)
        finally:
            handle.remove()
        right_cos, _ = thinker.get_decoder().rotary_emb(one, av["pos3"][..., a:])
        assert (positions["cos"] - right_cos).abs().max() > 0.5  # physical length 62 instead of 124


def test_segment_boundaries_and_deepstack(q3, av):
    thinker, _ = q3
    inputs, pos4, one = av["inputs"], av["pos4"], av["logits"]
    ids, cfg = inputs["input_ids"], thinker.config
    media = {k: inputs[k] for k in MEDIA_KEYS}
    video = (ids[0] == cfg.video_token_id).nonzero().squeeze(1)
    audio = (ids[0] == cfg.audio_token_id).nonzero().squeeze(1)
    with torch.no_grad():
        cut = int(video[32])  # inside the video: the features no longer match the placeholders
        with pytest.raises(ValueError, match="Video features and video tokens do not match"):
            thinker(input_ids=ids[:, :cut], **media, position_ids=pos4[..., :cut], use_audio_in_video=True,
                    use_cache=True)
        cut = int(audio[-5])  # inside the trailing audio: no error, silently wrong
        s1 = thinker(input_ids=ids[:, :cut], **media, position_ids=pos4[..., :cut], use_audio_in_video=True,
                     use_cache=True)
        s2 = thinker(input_ids=ids[:, cut:], position_ids=pos4[..., cut:], cache=s1.cache, use_cache=True)
        assert (torch.cat([s1.logits, s2.logits], 1) - one).abs().max() > 1e-2
        # Deepstack: vision blocks 0 and 1 add their features to the video rows after text layers 0 and 1
        features = thinker.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
        assert [f[0].shape for f in features.deepstack_features] == [(64, 64), (64, 64)]
        visual = thinker.model.visual
        saved, visual.deepstack_visual_indexes = visual.deepstack_visual_indexes, []
        try:
            without = thinker(**inputs, use_audio_in_video=True).logits
        finally:
            visual.deepstack_visual_indexes = saved
        assert (without - one).abs().max() > 1e-2  # it matters, so segment 1 must carry the raw pixels
        precomputed = thinker(**{k: v for k, v in inputs.items() if k != "pixel_values_videos"},
                              mm_encoder_outputs={"video": features}, use_audio_in_video=True).logits
        assert torch.equal(precomputed, one)  # or pre-encoded outputs with their deepstack features


def test_compressed_context_then_question_with_generate(q3, av):
    """Context (all media) prefilled under the pruning hook, then `generate` on the question only."""
    thinker, _ = q3
    inputs, L = av["inputs"], av["L"]
    ids = inputs["input_ids"]
    media = {k: inputs[k] for k in MEDIA_KEYS}
    a = int((ids[0] == thinker.config.vision_end_token_id).nonzero()) + 1
    visible = every_other_media(thinker, ids, upto=a)

    def run(prune):
        with torch.no_grad():
            if prune:
                with prune_after_prefill(thinker, visible.nonzero().squeeze(1)):
                    ctx = thinker(input_ids=ids[:, :a], attention_mask=inputs["attention_mask"][:, :a], **media,
                                  use_audio_in_video=True, use_cache=True)
            else:
                ctx = thinker(input_ids=ids[:, :a], attention_mask=inputs["attention_mask"][:, :a], **media,
                              use_audio_in_video=True, use_cache=True)
        assert torch.equal(thinker.model.rope_deltas, av["delta"])  # set by the context prefill (mask, no pos)
        # Only the new tokens, a mask of the logical length; generate positions them as index + rope_deltas
        return thinker.generate(input_ids=ids[:, a:], attention_mask=torch.ones(1, L, dtype=torch.long),
                                cache=ctx.cache, max_new_tokens=4, do_sample=False, return_dict_in_generate=True,
                                output_logits=True)

    seen = []
    original = thinker.model.language_model.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["position_ids"].clone())
        return original(*args, **kwargs)

    thinker.model.language_model.forward = spy
    try:
        pruned = run(prune=True)
    finally:
        del thinker.model.language_model.forward
    # seen[0]: the context prefill (3 rows computed from the mask). Then generate: one row = logical index
    # + rope_deltas (60 … 71 for the question), +1 per step
    assert seen[0].shape == (3, 1, a)
    assert seen[1].shape == (1, 1, L - a) and torch.equal(seen[1][0, 0], torch.arange(a, L) + av["delta"][0])
    assert [float(s) for s in seen[2:]] == [L + av["delta"].item() + i for i in range(3)]
    assert pruned.cache.get_seq_length() == visible.sum() + (L - a) + 3
    KeyMask.visible = visible
    with attention_impl(thinker, KeyMask.name):
        masked = run(prune=False)
    assert max(max_diffs(pruned.logits, masked.logits)) <= 1e-5
    plain = run(prune=False)
    full = thinker.generate(**inputs, use_audio_in_video=True, max_new_tokens=4, do_sample=False,
                            return_dict_in_generate=True, output_logits=True)
    assert max(max_diffs(plain.logits, full.logits)) <= 1e-5  # the continuation path itself is exact
