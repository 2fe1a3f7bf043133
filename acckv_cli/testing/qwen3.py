"""A tiny, random-weight Qwen3-Omni thinker built offline (tokenizer, processor and model), for tests.

The counterpart of `acckv_cli.testing.tiny` for `Qwen3OmniMoeThinkerForConditionalGeneration`: the real
architecture (audio tower with conv downsampling, vision tower with deepstack mergers, MoE text decoder
with q/k RMSNorm and interleaved mRoPE) at very small widths, so the code paths the Qwen3-Omni adapter
touches run on a CPU in well under a second per call. Answers are meaningless. Deterministic for a seed;
nothing touches the network. Facts verified on this model: docs/qwen3-omni-notes.md.

Differences from the Qwen2.5-Omni tiny model that matter here:
  * special token strings: `<|audio_start|>`, `<|audio_end|>`, `<|vision_start|>`, `<|vision_end|>`,
    `<|image_pad|>`, `<|video_pad|>`, `<|audio_pad|>` (handed to the processor as named specials);
  * the processor interleaves audio and video per token by time, with `position_id_per_seconds = 13`;
    the thinker config's dataclass default is 25, so the builder sets 13 on the config (both must agree,
    notes pitfall 3);
  * patch size 16 (32 px per LLM token), audio at 13 tokens per second (`n_window = 50`);
  * `vision_start_token_id` / `vision_end_token_id` / `audio_end_token_id` are not declared config fields,
    yet `get_rope_index` reads `vision_start_token_id`: they are passed explicitly;
  * q_norm/k_norm weights are jittered away from 1 so that a query recompute that applies q_norm in the
    wrong place (after RoPE instead of before) gives different numbers (with all-ones weights RMSNorm
    commutes with the rotation and such a bug would go unnoticed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from acckv_cli.testing.tiny import _CORPUS, as_full_checkpoint

# In the Qwen2/Qwen3 vocabulary order (checkpoint ids in docs/qwen3-omni-notes.md §3); the tiny tokenizer
# appends them after its BPE vocabulary, so ids differ from the checkpoint's: always read them at run time.
SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>",
]
# `Qwen3OmniMoeProcessor.__init__` reads these attributes (and their `*_id`) from the tokenizer.
NAMED_SPECIALS = {
    "image_token": "<|image_pad|>", "audio_token": "<|audio_pad|>", "video_token": "<|video_pad|>",
    "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>",
    "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>",
}

# A simplified Qwen3-Omni chat template: same media placeholders and turn structure. Like the Qwen3 family
# (and unlike the Qwen2.5-Omni template) it adds no default system prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for item in message['content'] %}"
    "{%- if item['type'] == 'video' %}{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'audio' %}{{- '<|audio_start|><|audio_pad|><|audio_end|>' }}"
    "{%- elif item['type'] == 'image' %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'text' %}{{- item['text'] }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

PATCH = 16            # Qwen3-Omni vision patch; one LLM token = (2·16)² px × 2 frames
MERGE = 2
FACTOR = PATCH * MERGE  # 32: frame sides are rounded to multiples of this


@dataclass(frozen=True)
class TinyQwen3Spec:
    """Sizes of the tiny Qwen3-Omni thinker (head_dim = hidden / heads = 16)."""

    text_layers: int = 3
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    experts: int = 4
    experts_per_tok: int = 2
    moe_intermediate: int = 32
    vision_hidden: int = 32
    vision_depth: int = 2
    deepstack_indexes: tuple[int, ...] = (0, 1)  # vision blocks feeding text layers 0 and 1
    audio_hidden: int = 32
    audio_layers: int = 2
    position_id_per_seconds: int = 13  # = the processor's 13.0; the config dataclass default (25) is wrong
    feature_chunk_seconds: int = 30
    min_pixels: int = 4 * FACTOR * FACTOR
    max_pixels: int = 64 * FACTOR * FACTOR
    norm_jitter: float = 0.5                    # q_norm/k_norm weights ~ 1 + jitter·N(0, 1)
    seed: int = 0


def build_qwen3_tokenizer(corpus: list[str] | None = None, vocab_size: int = 400):
    """Byte-level BPE on a few sentences, wrapped as a Qwen2Tokenizer with Qwen3-Omni's special tokens."""
    from acckv_cli.testing.tiny import build_tokenizer

    return build_tokenizer(corpus or _CORPUS, vocab_size, SPECIALS, NAMED_SPECIALS)


def build_qwen3_processor(tokenizer=None, feature_chunk_seconds: int = 30,
                          min_pixels: int = 4 * FACTOR * FACTOR, max_pixels: int = 64 * FACTOR * FACTOR):
    """The stock `Qwen3OmniMoeProcessor` around `tokenizer`, with patch 16 and small pixel settings.

    Note: the processor class carries its own default `videos_kwargs["size"]` (128·32²–768·32² pixels),
    which overrides `video_processor.size` unless the call passes `videos_kwargs={"size": ...}`.
    """
    from transformers import Qwen3OmniMoeProcessor, WhisperFeatureExtractor
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil, Qwen2VLVideoProcessor

    tokenizer = tokenizer or build_qwen3_tokenizer()
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    vision = dict(size=size, patch_size=PATCH, temporal_patch_size=2, merge_size=MERGE)
    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160,
                                       chunk_length=feature_chunk_seconds, n_fft=400, return_attention_mask=True)
    return Qwen3OmniMoeProcessor(
        image_processor=Qwen2VLImageProcessorPil(**vision),
        video_processor=Qwen2VLVideoProcessor(**vision),
        feature_extractor=features,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def build_qwen3_config(tokenizer, spec: TinyQwen3Spec = TinyQwen3Spec()):
    """A `Qwen3OmniMoeThinkerConfig` with tiny widths and the token ids of `tokenizer`."""
    from transformers import Qwen3OmniMoeThinkerConfig

    ids = tokenizer.convert_tokens_to_ids
    half = spec.hidden // spec.heads // 2
    # Interleaved mRoPE: frequency j belongs to h if j ≡ 1 (mod 3) and j < 3·sec[1], to w if j ≡ 2 (mod 3)
    # and j < 3·sec[2], else to t. [4, 2, 2] over 8 frequencies (the checkpoint: [24, 20, 20] over 64).
    hw = (half - 1) // 3 if half < 9 else half * 5 // 16
    mrope = [half - 2 * hw, hw, hw]
    return Qwen3OmniMoeThinkerConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=spec.hidden, intermediate_size=2 * spec.hidden,
            moe_intermediate_size=spec.moe_intermediate, num_hidden_layers=spec.text_layers,
            num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads, num_experts=spec.experts,
            num_experts_per_tok=spec.experts_per_tok, max_position_embeddings=32768,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope,
                             "interleaved": True, "mrope_interleaved": True},
            pad_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
        ),
        vision_config=dict(
            depth=spec.vision_depth, hidden_size=spec.vision_hidden, intermediate_size=2 * spec.vision_hidden,
            num_heads=2, patch_size=PATCH, temporal_patch_size=2, spatial_merge_size=MERGE,
            out_hidden_size=spec.hidden, num_position_embeddings=64,
            deepstack_visual_indexes=list(spec.deepstack_indexes),
        ),
        audio_config=dict(
            encoder_layers=spec.audio_layers, encoder_attention_heads=2, encoder_ffn_dim=2 * spec.audio_hidden,
            d_model=spec.audio_hidden, num_mel_bins=128, output_dim=spec.hidden, n_window=50,
            n_window_infer=800, downsample_hidden_size=8, max_source_positions=1500,
        ),
        audio_token_id=ids("<|audio_pad|>"), image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"), audio_start_token_id=ids("<|audio_start|>"),
        # Not declared fields in 5.24; get_rope_index reads vision_start_token_id (AttributeError without it).
        audio_end_token_id=ids("<|audio_end|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        position_id_per_seconds=spec.position_id_per_seconds,
    )


def build_tiny_qwen3_thinker(spec: TinyQwen3Spec = TinyQwen3Spec(), corpus: list[str] | None = None,
                             vocab_size: int = 400):
    """Return `(thinker, processor)`: a random-weight Qwen3-Omni thinker (float32, eval) and its processor."""
    from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

    tokenizer = build_qwen3_tokenizer(corpus, vocab_size)
    processor = build_qwen3_processor(tokenizer, spec.feature_chunk_seconds, spec.min_pixels, spec.max_pixels)
    config = build_qwen3_config(tokenizer, spec)
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        thinker = Qwen3OmniMoeThinkerForConditionalGeneration(config).eval()
        if spec.norm_jitter:
            with torch.no_grad():
                for layer in thinker.get_decoder().layers:
                    for norm in (layer.self_attn.q_norm, layer.self_attn.k_norm):
                        norm.weight.copy_(1 + spec.norm_jitter * torch.randn_like(norm.weight))
    thinker.generation_config.eos_token_id = config.text_config.eos_token_id
    thinker.generation_config.pad_token_id = config.text_config.pad_token_id
    return thinker, processor


def save_tiny_qwen3_thinker(folder: str | Path, spec: TinyQwen3Spec = TinyQwen3Spec(),
                            full_checkpoint: bool = False) -> Path:
    """Write a loadable folder (config, safetensors, tokenizer, processor, chat template).

    Thinker-only by default (`model_type` "qwen3_omni_moe_thinker"). With `full_checkpoint`, the folder is
    laid out like a published Qwen3-Omni checkpoint: a `Qwen3OmniMoeForConditionalGeneration` config
    (`model_type` "qwen3_omni_moe") with the thinker's config nested under `thinker_config`, weights
    prefixed `thinker.`, and a stand-in talker tensor that a thinker load must skip.
    """
    folder = Path(folder)
    thinker, processor = build_tiny_qwen3_thinker(spec)
    thinker.save_pretrained(folder)
    processor.save_pretrained(folder)
    if full_checkpoint:
        as_full_checkpoint(folder, "Qwen3OmniMoeForConditionalGeneration", "qwen3_omni_moe")
    return folder
