"""The model a bench runs: a random-weight Qwen2.5-Omni thinker with the text decoder of a real checkpoint.

`QWEN25_OMNI_3B` is Qwen2.5-Omni-3B's thinker (hidden 2048, 16 query / 2 KV heads of 128, MLP 11008,
vocabulary 151,936, mRoPE sections [16, 24, 24]), `QWEN25_OMNI_7B` the 7B's (hidden 3584, 28 query / 4 KV
heads of 128, MLP 18944, vocabulary 152,064, 28 layers; transformers' `Qwen2_5OmniTextConfig` defaults);
`build_thinker` builds one with any number of layers, random weights and tiny audio and vision towers that
never run, so the thinker's forward is the real one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

POSITION_ID_PER_SECONDS = 25


@dataclass(frozen=True)
class ModelShape:
    """Text-decoder shape. `QWEN25_OMNI_3B` follows the Qwen/Qwen2.5-Omni-3B checkpoint's thinker
    `text_config` (config.json; transformers' `Qwen2_5OmniTextConfig` defaults are the 7B's: 3584/28/4)."""

    name: str
    vocab: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    mrope_section: tuple[int, int, int]
    rope_theta: float = 1e6
    full_layers: int = 36            # layers of the real model (for the projection of decode time)
    tokens_per_pair: int = 299       # 13×23 merged cells: a 640×360 frame at Qwen's pixel range

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


QWEN25_OMNI_3B = ModelShape("Qwen2.5-Omni-3B thinker", vocab=151936, hidden=2048, intermediate=11008, heads=16,
                            kv_heads=2, mrope_section=(16, 24, 24))
QWEN25_OMNI_7B = ModelShape("Qwen2.5-Omni-7B thinker", vocab=152064, hidden=3584, intermediate=18944, heads=28,
                            kv_heads=4, mrope_section=(16, 24, 24), full_layers=28)
SHAPES = {"3b": QWEN25_OMNI_3B, "7b": QWEN25_OMNI_7B}
TINY = ModelShape("tiny (tests)", vocab=1024, hidden=64, intermediate=128, heads=4, kv_heads=2,
                  mrope_section=(4, 2, 2), full_layers=3, tokens_per_pair=40)


def shape_for(tiny: bool) -> ModelShape:
    """The 3B shape, or the tiny one of the tests (`--tiny`)."""
    return TINY if tiny else QWEN25_OMNI_3B


def build_thinker(shape: ModelShape, layers: int, dtype: torch.dtype, seed: int = 0, device: str = "cpu"):
    """A random-weight Qwen2.5-Omni thinker with the text decoder of `shape` and `layers` layers, on `device`
    (built there directly in `dtype`: a 7B-shaped thinker never exists in float32 on the host; on the CPU it is
    built in float32 then cast, which keeps the CPU benches' weights what they were)."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    config = thinker_config(shape, layers)
    if torch.device(device).type != "cpu":
        with torch.random.fork_rng(devices=[torch.device(device)]), torch.device(device):
            torch.manual_seed(seed)
            thinker = Qwen2_5OmniThinkerForConditionalGeneration._from_config(config, dtype=dtype)
        return thinker.eval()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        thinker = Qwen2_5OmniThinkerForConditionalGeneration(config)
    return thinker.to(dtype).eval()


def thinker_config(shape: ModelShape, layers: int):
    """The thinker config of `shape` with `layers` decoder layers (tiny towers that never run)."""
    from transformers import Qwen2_5OmniThinkerConfig

    specials = {name: shape.vocab - 1 - i for i, name in enumerate(
        ("audio_token_index", "image_token_index", "video_token_index", "audio_start_token_id",
         "audio_end_token_id", "vision_start_token_id", "vision_end_token_id"))}
    config = Qwen2_5OmniThinkerConfig(
        text_config=dict(
            vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
            num_hidden_layers=layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
            max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta,
                             "mrope_section": list(shape.mrope_section)}),
        # Towers that exist (so the class is the real one) but are tiny and never run.
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=shape.hidden,
                           fullatt_block_indexes=[0]),
        audio_config=dict(encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32, d_model=16,
                          output_dim=shape.hidden, num_mel_bins=128),
        position_id_per_seconds=POSITION_ID_PER_SECONDS, seconds_per_chunk=2, **specials)
    return config
