"""Model families: everything acckv needs to know about one architecture, chosen from the checkpoint's config.

Two families are supported, Qwen2.5-Omni and Qwen3-Omni (docs/qwen3-omni-notes.md lists what differs).
A `ModelFamily` holds the facts that differ between them — which transformers classes to load, the
vision patch (frame sizes, pixel range), whether the processor cuts audio to a window, where the special
token ids live, how many mRoPE positions a second takes, whether those positions are fractional, and which
extra decoder inputs a prompt prefix carries (Qwen3-Omni's deepstack). What is the same for both — the
processor call, `use_audio_in_video`, `get_rope_index`, `get_decoder().layers[i].self_attn`, the hook
kwargs — is not repeated here.

The rest of the tool asks `family_of(thinker)` (a loaded model) or `family_for_checkpoint(path)` (before
loading) and never tests class names itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from acckv_cli.lazy import torch

from acckv_cli.errors import UnsupportedModel
from acckv_cli.media.preprocess import video_pixel_range


@dataclass(frozen=True)
class TokenRole:
    """Where one special token's id is found: the first config attribute present, else the token string."""

    role: str
    config_names: tuple[str, ...]
    token: str


@dataclass(frozen=True)
class ModelFamily:
    """The per-family facts (see the module docstring). Instances are the constants below."""

    name: str                      # short id, e.g. "qwen3-omni"
    title: str                     # for messages and the README, e.g. "Qwen3-Omni"
    model_types: tuple[str, ...]   # config `model_type` of a full checkpoint and of a thinker-only folder
    thinker_class: str             # transformers class names, imported when loading
    processor_class: str
    patch_size: int                # vision patch in pixels; one LLM token covers (patch · merge)² px
    positions_per_second: int      # mRoPE temporal positions per second when the config does not say
    truncates_audio: bool          # the processor pads or cuts audio to the feature extractor's window
    chunked_interleave: bool       # audio and video interleaved in `seconds_per_chunk` chunks (else per token)
    float_positions: bool          # get_rope_index returns fractional float32 positions
    tokens: tuple[TokenRole, ...]  # video, audio (required) and the delimiters around media blocks
    prefix_masks: tuple[str, ...] = ()  # decoder inputs that are [1, L] token masks (deepstack's visual mask)
    merge_size: int = 2

    # --- vision ---------------------------------------------------------------------------------------
    @property
    def factor(self) -> int:
        """Frame sides are multiples of this many pixels (patch × spatial merge)."""
        return self.patch_size * self.merge_size

    def pixel_range(self, size: dict | None) -> tuple[int, int]:
        """(min, max) pixels per video frame for a video processor whose `size` is given.

        A range within 768·factor² is the model's own video setting and is kept; none, or a larger one (the
        image range published checkpoints ship), means Qwen's official 128·factor²–768·factor².
        """
        return video_pixel_range(size, self.factor)

    # --- audio ----------------------------------------------------------------------------------------
    def audio_limit_s(self, processor) -> float | None:
        """Longest audio the processor keeps, or None when it never cuts (Qwen3-Omni pads, never truncates)."""
        if not self.truncates_audio:
            return None
        return float(getattr(processor.feature_extractor, "chunk_length", 30))

    # --- token ids and positions ----------------------------------------------------------------------
    def special_token_ids(self, config, tokenizer) -> dict[str, int]:
        """Role → id for the media placeholders and delimiters; `video` and `audio` are required."""
        out = {}
        for spec in self.tokens:
            value = next((getattr(config, n) for n in spec.config_names if getattr(config, n, None) is not None),
                         None)
            if value is None:  # not in the config (e.g. vision_end_token_id of a Qwen3-Omni config): tokenizer
                value = _token_id(tokenizer, spec.token)
            if value is not None:
                out[spec.role] = int(value)
        missing = {"video", "audio"} - set(out)
        if missing:
            raise UnsupportedModel(f"{self.title} config and tokenizer give no id for the {', '.join(sorted(missing))} "
                                   f"placeholder token")
        return out

    def position_id_per_seconds(self, config) -> float:
        """mRoPE temporal positions per second of media, as the model's `get_rope_index` uses them."""
        return float(getattr(config, "position_id_per_seconds", None) or self.positions_per_second)

    def seconds_per_chunk(self, config) -> float | None:
        """Length of Qwen2.5-Omni's interleave chunks; None for a family that interleaves per token."""
        if not self.chunked_interleave:
            return None
        return float(getattr(config, "seconds_per_chunk", None) or 2)

    # --- loading --------------------------------------------------------------------------------------
    def load(self, model: str, dtype: torch.dtype, attn_implementation: str = "sdpa"):
        """(thinker, processor) from a local folder or a cached hub id; a full checkpoint's talker is skipped."""
        import transformers

        processor = getattr(transformers, self.processor_class).from_pretrained(model, local_files_only=True)
        thinker = getattr(transformers, self.thinker_class).from_pretrained(
            model, dtype=dtype, attn_implementation=attn_implementation, local_files_only=True)
        return thinker, processor

    def align(self, thinker, processor) -> list[str]:
        """Make the thinker's positions per second agree with the processor's; notices of what was changed.

        The processor orders the interleaved tokens with its own rate, `get_rope_index` positions them with
        the config's; when they differ positions are silently wrong (docs/qwen3-omni-notes.md §3.4).
        Qwen3-Omni's config class defaults to 25 while its processor interleaves at 13, so a config without
        the field would hit this.
        """
        rate = getattr(processor, "position_id_per_seconds", None)
        config = thinker.config
        if rate is None or self.position_id_per_seconds(config) == float(rate):
            return []
        was = self.position_id_per_seconds(config)
        config.position_id_per_seconds = int(rate)
        return [f"the checkpoint's position_id_per_seconds ({was:g}) disagrees with its processor's "
                f"({float(rate):g}); using {float(rate):g}"]

    # --- decoder inputs -------------------------------------------------------------------------------
    def extend_decoder_inputs(self, embedded: dict, token_embeds: torch.Tensor) -> dict:
        """Decoder inputs of a prefix (`generation.embed_prompt`) followed by plain text tokens.

        `inputs_embeds` [1, P, d] grows by `token_embeds` [1, n, d]; token masks (`prefix_masks`) grow by
        n False entries; per-media inputs (deepstack features, one row per visual token) stay as they are.
        """
        known = {"inputs_embeds", "output_router_logits", "deepstack_visual_embeds", *self.prefix_masks}
        unknown = set(embedded) - known
        if unknown:
            raise ValueError(f"{self.title}: cannot extend decoder inputs {', '.join(sorted(unknown))} by text tokens")
        out = dict(embedded)
        out["inputs_embeds"] = torch.cat([embedded["inputs_embeds"], token_embeds.to(embedded["inputs_embeds"].dtype)],
                                         dim=1)
        for name in self.prefix_masks:
            mask = embedded.get(name)
            if mask is not None:
                pad = torch.zeros(mask.shape[0], token_embeds.shape[1], dtype=mask.dtype, device=mask.device)
                out[name] = torch.cat([mask, pad], dim=1)
        return out

    def deepstack_layers(self, thinker) -> int:
        """Text layers that receive visual features after their output (Qwen3-Omni's deepstack), else 0."""
        visual = getattr(getattr(thinker, "model", None), "visual", None)
        return len(getattr(visual, "deepstack_visual_indexes", None) or ())


def _token_id(tokenizer, token: str) -> int | None:
    value = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(value, int) or value < 0 or value == tokenizer.unk_token_id:
        return None
    return value


_CHAT = (TokenRole("im_start", (), "<|im_start|>"), TokenRole("im_end", (), "<|im_end|>"))

QWEN2_5_OMNI = ModelFamily(
    name="qwen2.5-omni", title="Qwen2.5-Omni",
    model_types=("qwen2_5_omni", "qwen2_5_omni_thinker"),
    thinker_class="Qwen2_5OmniThinkerForConditionalGeneration", processor_class="Qwen2_5OmniProcessor",
    patch_size=14, positions_per_second=25, truncates_audio=True, chunked_interleave=True,
    float_positions=False,
    tokens=(TokenRole("video", ("video_token_index", "video_token_id"), "<|VIDEO|>"),
            TokenRole("audio", ("audio_token_index", "audio_token_id"), "<|AUDIO|>"),
            TokenRole("audio_start", ("audio_start_token_id",), "<|audio_bos|>"),
            TokenRole("audio_end", ("audio_end_token_id",), "<|audio_eos|>"),
            TokenRole("vision_start", ("vision_start_token_id",), "<|vision_bos|>"),
            TokenRole("vision_end", ("vision_end_token_id",), "<|vision_eos|>"), *_CHAT),
)

QWEN3_OMNI = ModelFamily(
    name="qwen3-omni", title="Qwen3-Omni",
    model_types=("qwen3_omni_moe", "qwen3_omni_moe_thinker"),
    thinker_class="Qwen3OmniMoeThinkerForConditionalGeneration", processor_class="Qwen3OmniMoeProcessor",
    patch_size=16, positions_per_second=13, truncates_audio=False, chunked_interleave=False,
    float_positions=True,
    tokens=(TokenRole("video", ("video_token_id",), "<|video_pad|>"),
            TokenRole("audio", ("audio_token_id",), "<|audio_pad|>"),
            TokenRole("audio_start", ("audio_start_token_id",), "<|audio_start|>"),
            TokenRole("audio_end", ("audio_end_token_id",), "<|audio_end|>"),
            TokenRole("vision_start", ("vision_start_token_id",), "<|vision_start|>"),
            TokenRole("vision_end", ("vision_end_token_id",), "<|vision_end|>"), *_CHAT),
    prefix_masks=("visual_pos_masks",),
)

FAMILIES = (QWEN2_5_OMNI, QWEN3_OMNI)


def family_for_config(config) -> ModelFamily:
    """The family of a config object or a config.json dict (full checkpoint or thinker-only)."""
    get = config.get if isinstance(config, dict) else (lambda name, default=None: getattr(config, name, default))
    model_type = get("model_type")
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    architectures = ", ".join(get("architectures") or []) or "unknown architecture"
    supported = ", ".join(f.title for f in FAMILIES)
    raise UnsupportedModel(f"model type {model_type!r} ({architectures}) is not supported; supported: {supported}")


def family_of(thinker) -> ModelFamily:
    """The family of a loaded thinker."""
    return family_for_config(thinker.config)


def family_for_processor(processor) -> ModelFamily:
    """The family of a processor alone (preprocessing checks build a `LoadedModel` without a thinker)."""
    names = {cls.__name__ for cls in type(processor).__mro__}
    for family in FAMILIES:
        if family.processor_class in names:
            return family
    raise UnsupportedModel(f"processor {type(processor).__name__} belongs to no supported family")


def family_for_checkpoint(model: str) -> ModelFamily:
    """The family of a local folder or cached hub id, from its config.json (nothing is downloaded).

    Raises OSError when there is no readable config, UnsupportedModel for another architecture.
    """
    from transformers import PreTrainedConfig

    config, _ = PreTrainedConfig.get_config_dict(model, local_files_only=True)
    return family_for_config(config)
