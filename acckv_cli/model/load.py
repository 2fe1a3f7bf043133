"""The loaded model: a Qwen2.5-Omni or Qwen3-Omni thinker, its processor, and the processor inputs of a clip.

Loading picks the family (`acckv_cli.model.families`) from the checkpoint's config; everything family-specific
that the rest of the tool needs (pixel range, audio window, token ids, positions per second) is read
through `LoadedModel.family`. The processor call itself — which flags to pass for a video with its own
soundtrack — is the same for both families (docs/qwen-omni-plumbing.md, docs/qwen3-omni-notes.md).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError

from acckv_cli.errors import ModelUnavailable
from acckv_cli.model.families import (ModelFamily, UnsupportedModel, family_for_checkpoint, family_for_processor,
                                family_of)
from acckv_cli.model import soundtrack
from acckv_cli.media.decode import DecodedMedia

log = logging.getLogger(__name__)

# Qwen's own per-frame pixel range (qwen-omni-utils VIDEO_MIN_PIXELS / VIDEO_MAX_PIXELS).
QWEN_MIN_PIXELS = 128 * 28 * 28
QWEN_MAX_PIXELS = 768 * 28 * 28
BUILTIN_NAME = "builtin-tiny"
DEMO_NAME = "builtin-demo"
DEMO_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo"
DEMO_NOTICE = ("built-in demo model: a small Qwen2.5-Omni-architecture model trained only on SynthAVQA "
               "(synthetic shapes + instrument tones); for real videos pass --model with a Qwen2.5-Omni or "
               "Qwen3-Omni checkpoint")


@dataclass
class LoadedModel:
    thinker: torch.nn.Module
    processor: object
    name: str
    device: torch.device
    dtype: torch.dtype
    is_builtin: bool = False
    notices: list[str] = field(default_factory=list)
    answer_words: frozenset[str] = frozenset()  # words a model without spaces between them may run together

    @functools.cached_property
    def family(self) -> ModelFamily:
        """Qwen2.5-Omni or Qwen3-Omni, from the thinker's config (from the processor when there is no thinker)."""
        if self.thinker is None:
            return family_for_processor(self.processor)
        return family_of(self.thinker)

    @property
    def decoder_layers(self):
        return self.thinker.get_decoder().layers

    @property
    def pixel_range(self) -> tuple[int, int]:
        """(min, max) pixels per video frame: Qwen's official 128·f²–768·f² for real checkpoints (f = 28 for
        Qwen2.5-Omni, 32 for Qwen3-Omni).

        A checkpoint's processor config gives the image range (3,136–12,845,056 for the published Qwen2.5
        ones), which Qwen's own pipeline ignores for video; a range within 768·f² is the model's own video
        setting (the built-in demo model, the tiny test models) and is kept. See
        `acckv_cli.media.preprocess.video_pixel_range`.
        """
        return self.family.pixel_range(getattr(self.processor.video_processor, "size", None))

    @property
    def audio_limit_s(self) -> float | None:
        """Longest audio the processor keeps (Qwen2.5-Omni: `chunk_length`), None when it never cuts."""
        return self.family.audio_limit_s(self.processor)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailable("--device cuda requested but no CUDA GPU is available")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_model(model: str | None = None, device: str = "auto", dtype: str = "auto",
               attn_implementation: str = "sdpa") -> LoadedModel:
    """Load a Qwen2.5-Omni or Qwen3-Omni thinker and its processor, or the built-in model when `model` is None.

    `model` is a hub id (used only if already in the local cache: we never download) or a local folder
    holding a full checkpoint or a thinker-only one; the family comes from its config.json.
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if model is None:
        return _load_builtin(dev, dt)
    family = None
    try:
        family = family_for_checkpoint(model)
        thinker, processor = family.load(model, dt, attn_implementation)
    except UnsupportedModel as exc:
        raise ModelUnavailable(f"cannot use '{model}': {exc}") from exc
    except (OSError, ValueError, KeyError, SafetensorError) as exc:  # missing, incomplete or corrupt files
        raise ModelUnavailable(_unavailable_message(model, exc, family)) from exc
    thinker.to(dev).eval()
    notices = family.align(thinker, processor)
    return LoadedModel(thinker, processor, model, dev, dt, notices=notices)


@functools.lru_cache(maxsize=2)
def _builtin_parts(dev: torch.device, dt: torch.dtype):
    """Load once per process: batch and eval runs ask for the default model many times.

    The trained demo model shipped in the package when present, else a tiny random thinker.
    """
    if (DEMO_DIR / "config.json").is_file():
        from transformers import Qwen2_5OmniProcessor, Qwen2_5OmniThinkerForConditionalGeneration
        processor = Qwen2_5OmniProcessor.from_pretrained(DEMO_DIR)
        thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(DEMO_DIR, dtype=dt,
                                                                             attn_implementation="sdpa")
        return thinker.to(dev).eval(), processor, DEMO_NAME, DEMO_NOTICE
    from acckv_cli.testing.tiny import build_tiny_thinker

    thinker, processor = build_tiny_thinker()
    notice = ("built-in tiny random model: its answers are meaningless; "
              "pass --model with a Qwen2.5-Omni or Qwen3-Omni checkpoint for real answers")
    return thinker.to(dev, dt).eval(), processor, BUILTIN_NAME, notice


def _load_builtin(dev: torch.device, dt: torch.dtype) -> LoadedModel:
    thinker, processor, name, notice = _builtin_parts(dev, dt)
    words = frozenset()
    if name == DEMO_NAME:  # it answers in SynthAVQA words and never learnt to put spaces between two of them
        from acckv_cli.synth.avqa import answer_vocabulary
        words = frozenset(answer_vocabulary())
    return LoadedModel(thinker, processor, name, dev, dt, is_builtin=True, notices=[notice], answer_words=words)


def _unavailable_message(model: str, exc: Exception, family: ModelFamily | None) -> str:
    if os.path.isdir(model):
        what = f"a {family.title} thinker" if family is not None else "a model"
        return (f"cannot load {what} from folder '{model}': "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    # not a folder here: a hub id that is not in the local cache (acckv never downloads)
    return (f"model '{model}' is neither a folder here nor in the local Hugging Face cache: download it on a "
            f"connected machine (e.g. `hf download {model} --local-dir DIR`) and pass --model DIR")


def conversation(media: DecodedMedia, question: str) -> list[dict]:
    """A one-turn chat with the media item first (Qwen's own order) and the question after it."""
    kind = "video" if media.frames is not None else "audio"
    return [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": question}]}]


def processor_kwargs(lm: LoadedModel, media: DecodedMedia, max_pixels: int | None = None,
                     notices: list[str] | None = None) -> tuple[dict, bool]:
    """Processor keyword arguments for the media of one clip, and the `use_audio_in_video` flag.

    The flag is True only for video with its own soundtrack; the processor output does not carry it, and
    without it the model's 3-D positions are silently wrong (pitfall 1), so it travels beside the inputs.
    A soundtrack longer than the model's audio window is kept whole (`acckv_cli.model.soundtrack`): the
    processor is asked not to cut it, and `process` then swaps in its per-window features; a notice
    saying so is appended to `notices`.
    """
    audio = _fit_audio(lm, media, notices if notices is not None else [])
    kwargs: dict = {}
    use_audio_in_video = False
    if audio is not None and soundtrack.needs_windows(lm, media.audio):
        kwargs["audio_kwargs"] = {"truncation": False}
    if media.frames is not None:
        low, high = lm.pixel_range
        high = min(high, max_pixels) if max_pixels else high
        kwargs["videos"] = [media.frames]
        kwargs["videos_kwargs"] = {
            "size": {"shortest_edge": min(low, high), "longest_edge": high},
            "cap_pixels_per_frame": True,
        }
        if media.processor_fps is not None:  # the true sampled rate, unless the media asks for Qwen's call
            kwargs["videos_kwargs"]["fps"] = media.processor_fps
        if audio is not None:
            kwargs.update(audio=[audio], load_audio_from_video=True, audio_from_video_indices=[0])
            use_audio_in_video = True
    elif audio is not None:
        kwargs["audio"] = [audio]
    return kwargs, use_audio_in_video


def process(lm: LoadedModel, text: str, media: DecodedMedia, max_pixels: int | None = None,
            notices: list[str] | None = None) -> tuple[dict, bool]:
    """The processor on `text` with the clip's media (batch size 1), and the `use_audio_in_video` flag.

    A soundtrack longer than the model's audio window arrives as per-window features
    (`soundtrack.replace_features`); everything else is the processor's output as it is.
    """
    kwargs, use_audio_in_video = processor_kwargs(lm, media, max_pixels, notices)
    inputs = lm.processor(text=text, return_tensors="pt", **kwargs)
    inputs.pop("mm_token_type_ids", None)  # would travel into the model's kwargs (pitfall 17)
    inputs = dict(inputs)
    if "audio_kwargs" in kwargs:
        inputs = soundtrack.replace_features(lm, kwargs["audio"][0], inputs)
    return inputs, use_audio_in_video


def build_inputs(lm: LoadedModel, media: DecodedMedia, question: str,
                 max_pixels: int | None = None) -> tuple[dict, bool]:
    """Processor inputs for one clip and question as one prompt, and the `use_audio_in_video` flag.

    `acckv_cli.model.prompt` builds the same prompt in segments (prefix once, then each question); this one-piece
    form is the reference the tests compare it with, and what training uses.
    """
    text = lm.processor.apply_chat_template(conversation(media, question), add_generation_prompt=True,
                                            tokenize=False)
    inputs, use_audio_in_video = process(lm, text, media, max_pixels)
    return {k: (v.to(lm.device) if torch.is_tensor(v) else v) for k, v in inputs.items()}, use_audio_in_video


def _fit_audio(lm: LoadedModel, media: DecodedMedia, notices: list[str]):
    """The soundtrack the processor gets: as decoded, or — beyond the model's audio window — trimmed to a
    whole number of audio tokens and announced (it is then encoded window by window, never cut)."""
    if not soundtrack.needs_windows(lm, media.audio):
        return media.audio
    notices.append(soundtrack.notice(lm, media.audio, media.audio_rate))
    return soundtrack.trim(lm, media.audio)


def cast_inputs(inputs: dict, dtype: torch.dtype) -> dict:
    """Floating-point features in the model dtype (pixel values and mel features arrive as float32)."""
    return {k: (v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in inputs.items()}


@contextlib.contextmanager
def last_position_logits(thinker):
    """Compute the LM head only for the last position (the thinker forward has no `logits_to_keep`)."""
    handle = thinker.lm_head.register_forward_pre_hook(lambda module, args: (args[0][:, -1:],))
    try:
        yield
    finally:
        handle.remove()
