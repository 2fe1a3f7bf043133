"""A tiny, random-weight Qwen2.5-Omni thinker built offline (tokenizer, processor and model).

It has the real architecture (audio tower, vision tower, mRoPE text decoder) with very small widths, so
every code path of `acckv` (processor, 3-D positions, cache hooks, compression) runs on a laptop CPU in
milliseconds. Its answers are meaningless: it is for tests and for trying the tool without a checkpoint.
Everything is deterministic for a given seed; nothing touches the network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

# Qwen2's pre-tokenisation split, so that the tokenizer behaves like the real one on spaces and digits.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>",
    "<|IMAGE|>", "<|VIDEO|>",
]
NAMED_SPECIALS = {
    "image_token": "<|IMAGE|>", "audio_token": "<|AUDIO|>", "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
}
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

# A simplified Qwen2.5-Omni chat template: same special tokens and turn structure as the checkpoint's.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for item in message['content'] %}"
    "{%- if item['type'] == 'video' %}{{- '<|vision_bos|><|VIDEO|><|vision_eos|>' }}"
    "{%- elif item['type'] == 'audio' %}{{- '<|audio_bos|><|AUDIO|><|audio_eos|>' }}"
    "{%- elif item['type'] == 'image' %}{{- '<|vision_bos|><|IMAGE|><|vision_eos|>' }}"
    "{%- elif item['type'] == 'text' %}{{- item['text'] }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_CORPUS = [
    "What instrument plays? Which colour is the square? What colour is the shape on screen when the drum plays?",
    "Which instrument plays while the circle is visible? The flute, the clarinet, the violin, the guitar.",
    "A drum and a bell play. Red green blue yellow white purple orange circle square triangle star.",
    "You are a helpful assistant. Describe the video. What do you hear? What do you see? Is there a person?",
    "How many shapes move to the left or to the right, up or down? 0 1 2 3 4 5 6 7 8 9 seconds.",
    "system user assistant: yes no the a an of in on at is are was were it this that with and or.",
]


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny thinker. Defaults: head_dim 16, 2 KV heads, mRoPE sections summing to head_dim / 2."""

    text_layers: int = 3
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    vision_hidden: int = 32
    vision_depth: int = 2
    audio_hidden: int = 32
    audio_layers: int = 2
    feature_chunk_seconds: int = 30  # Whisper padding length; short keeps the feature extractor fast
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 64 * 28 * 28
    seed: int = 0


def build_tokenizer(corpus: list[str] | None = None, vocab_size: int = 400, specials: list[str] | None = None,
                    named_specials: dict[str, str] | None = None):
    """Byte-level BPE trained on a few sentences, wrapped as a Qwen2Tokenizer with Qwen's special tokens.

    `specials` / `named_specials` default to Qwen2.5-Omni's; Qwen3-Omni's builder passes its own.
    """
    specials = SPECIALS if specials is None else specials
    named_specials = NAMED_SPECIALS if named_specials is None else named_specials
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(corpus or _CORPUS, trainer)
    state = json.loads(bpe.to_str())["model"]
    vocab = dict(state["vocab"])
    merges = [tuple(m) if not isinstance(m, str) else tuple(m.split(" ")) for m in state["merges"]]
    vocab.update({s: len(vocab) + i for i, s in enumerate(specials)})
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token="<|endoftext|>", eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", model_max_length=32768, extra_special_tokens=named_specials)
    tok.add_tokens(specials, special_tokens=True)
    return tok


def build_processor(tokenizer=None, feature_chunk_seconds: int = 30,
                    min_pixels: int = 4 * 28 * 28, max_pixels: int = 64 * 28 * 28):
    """The stock Qwen2.5-Omni processor around a given tokenizer, with small pixel settings."""
    from transformers import Qwen2_5OmniProcessor, WhisperFeatureExtractor
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil, Qwen2VLVideoProcessor

    tokenizer = tokenizer or build_tokenizer()
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160,
                                       chunk_length=feature_chunk_seconds, n_fft=400, return_attention_mask=True)
    return Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessorPil(size=size),
        video_processor=Qwen2VLVideoProcessor(size=size),
        feature_extractor=features,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def build_config(tokenizer, spec: TinySpec = TinySpec()):
    """A Qwen2_5OmniThinkerConfig with tiny widths and the token ids of `tokenizer`."""
    from transformers import Qwen2_5OmniThinkerConfig

    ids = tokenizer.convert_tokens_to_ids
    head_dim = spec.hidden // spec.heads
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]  # must sum to head_dim / 2
    return Qwen2_5OmniThinkerConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=spec.hidden, intermediate_size=spec.intermediate,
            num_hidden_layers=spec.text_layers, num_attention_heads=spec.heads,
            num_key_value_heads=spec.kv_heads, max_position_embeddings=32768,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope},
            pad_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=spec.vision_depth, hidden_size=spec.vision_hidden, intermediate_size=2 * spec.vision_hidden,
            num_heads=2, out_hidden_size=spec.hidden, fullatt_block_indexes=[spec.vision_depth - 1],
            window_size=112, patch_size=14,
            temporal_patch_size=2, spatial_merge_size=2,
        ),
        audio_config=dict(
            encoder_layers=spec.audio_layers, encoder_attention_heads=2, encoder_ffn_dim=2 * spec.audio_hidden,
            d_model=spec.audio_hidden, num_mel_bins=128, output_dim=spec.hidden, n_window=100,
            max_source_positions=1500,
        ),
        audio_token_index=ids("<|AUDIO|>"), image_token_index=ids("<|IMAGE|>"),
        video_token_index=ids("<|VIDEO|>"), audio_start_token_id=ids("<|audio_bos|>"),
        audio_end_token_id=ids("<|audio_eos|>"),
        # Not a declared config field in 5.24, yet get_rope_index reads it (docs/qwen-omni-plumbing.md).
        vision_start_token_id=ids("<|vision_bos|>"), vision_end_token_id=ids("<|vision_eos|>"),
        position_id_per_seconds=25, seconds_per_chunk=2,
    )


def build_tiny_thinker(spec: TinySpec = TinySpec(), corpus: list[str] | None = None, vocab_size: int = 400):
    """Return `(thinker, processor)`: a random-weight Qwen2.5-Omni thinker in eval mode and its processor."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    tokenizer = build_tokenizer(corpus, vocab_size)
    processor = build_processor(tokenizer, spec.feature_chunk_seconds, spec.min_pixels, spec.max_pixels)
    config = build_config(tokenizer, spec)
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        thinker = Qwen2_5OmniThinkerForConditionalGeneration(config).eval()
    thinker.generation_config.eos_token_id = config.text_config.eos_token_id
    thinker.generation_config.pad_token_id = config.text_config.pad_token_id
    return thinker, processor


def save_tiny_thinker(folder: str | Path, spec: TinySpec = TinySpec()) -> Path:
    """Write a loadable thinker-only folder (config, safetensors, tokenizer, processor, chat template)."""
    folder = Path(folder)
    thinker, processor = build_tiny_thinker(spec)
    thinker.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def as_full_checkpoint(folder: str | Path, architecture: str, model_type: str) -> Path:
    """Rewrite a saved thinker-only folder the way a published Omni checkpoint is laid out, in place.

    config.json becomes the whole model's (`architecture`, `model_type`) with the thinker's config nested
    under `thinker_config`; weights get the `thinker.` prefix, plus a stand-in `talker.` tensor that loading
    the thinker alone must skip. (Published checkpoints shard their weights; one file is enough to exercise
    the same loading path.)
    """
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    weights = folder / "model.safetensors"
    tensors = {f"thinker.{k}": v for k, v in load_file(weights).items()}
    tensors["talker.stand_in.weight"] = torch.zeros(2)
    save_file(tensors, weights, metadata={"format": "pt"})
    thinker_config = json.loads((folder / "config.json").read_text())
    full = {"architectures": [architecture], "model_type": model_type, "thinker_config": thinker_config,
            "enable_audio_output": False, "transformers_version": thinker_config.get("transformers_version")}
    (folder / "config.json").write_text(json.dumps(full, indent=2))
    return folder
