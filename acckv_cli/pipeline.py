"""One question about one clip, end to end: decode → processor → layout → compressed generation → report.

The CLI commands (`ask`, later `batch` and `eval`) are thin wrappers over `ask_clip`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from acckv_cli import media as media_mod
from acckv_cli.layout import TokenLayout, layout_for_inputs
from acckv_cli.methods import Budget, get_method
from acckv_cli.model import LoadedModel, build_inputs, generate
from acckv_cli.preprocess import uses_official_sizing
from acckv_cli.report import RetentionReport

log = logging.getLogger(__name__)


class UsageError(ValueError):
    """The user asked for something impossible (bad option, empty question); exit code 2."""


@dataclass
class AskResult:
    answer: str
    model: str
    method: str
    budget: str
    media: dict
    tokens: dict
    kv_bytes: int
    kv_bytes_full: int
    timings: dict
    report: RetentionReport
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"answer": self.answer, "model": self.model, "method": self.method, "budget": self.budget,
                "media": self.media, "tokens": self.tokens, "kv_bytes": self.kv_bytes,
                "kv_bytes_full": self.kv_bytes_full, "timings": self.timings, "notices": self.notices,
                "report": self.report.to_dict()}


def check_question(question: str) -> str:
    if not question or not question.strip():
        raise UsageError("the question is empty; ask something, e.g. \"What instrument plays?\"")
    return question.strip()


def media_summary(decoded: media_mod.DecodedMedia, inputs: dict, layout: TokenLayout) -> dict:
    """The numbers users compare with Qwen's own preprocessing."""
    info = decoded.info
    out = {"path": info.path, "duration_s": round(info.duration_s, 3), "modalities": decoded.modalities,
           "native_fps": info.native_fps, "native_size": [info.width, info.height] if info.width else None}
    grid = inputs.get("video_grid_thw")
    if decoded.frames is not None and grid is not None:
        t, h, w = (int(x) for x in grid[0])
        out.update(sampled_fps=round(float(decoded.sample_fps), 4), frames=int(decoded.frames.shape[0]),
                   processor_fps=_processor_fps(inputs),
                   frame_size=[w * 14, h * 14], pixels_per_frame=h * w * 196,
                   tokens_per_frame_pair=h * w // 4)
    if decoded.audio is not None:
        out["audio_seconds"] = round(decoded.audio.shape[0] / decoded.audio_rate, 3)
    return out


def _processor_fps(inputs: dict) -> float | None:
    """The frame rate the processor was told (2 / seconds per temporal patch of 2 frames)."""
    per_grid = inputs.get("video_second_per_grid")
    if per_grid is None or not len(per_grid):
        return None
    return round(2.0 / float(per_grid[0]), 4)


def ask_clip(lm: LoadedModel, path: str, question: str, method: str = "acckv", budget: Budget | None = None,
             fps: float = 2.0, max_pixels: int | None = None, max_new_tokens: int = 32,
             method_params: dict | None = None, official_fps: bool = False) -> AskResult:
    """Answer `question` about the clip at `path` with the KV cache compressed by `method`.

    `official_fps=True` tells the processor no frame rate, as Qwen's README call does (`media.decode`).
    """
    question = check_question(question)
    budget = budget or Budget(0.2)
    compressor = get_method(method, **(method_params or {}))
    high = pixel_cap(lm, max_pixels)
    decoded = decode_for_model(lm, path, fps=fps, max_pixels=max_pixels, official_fps=official_fps)
    return _answer(lm, decoded, question, compressor, budget, high, max_new_tokens)


def pixel_cap(lm: LoadedModel, max_pixels: int | None) -> int:
    """Pixels per frame to decode and process: the model's cap, lowered by `--max-pixels`."""
    high = lm.pixel_range[1]
    return min(high, max_pixels) if max_pixels else high


def decode_for_model(lm: LoadedModel, path: str, fps: float = 2.0, max_pixels: int | None = None,
                     official_fps: bool = False) -> media_mod.DecodedMedia:
    """Decode `path` with the frame sizes the model expects (`--max-pixels` lowers the cap).

    For a real checkpoint (Qwen's official pixel range) frames get the size and pixels Qwen's own
    pipeline gives them; a model with a range of its own (the built-in demo) gets the sizing it was
    trained with (`acckv_cli.preprocess.uses_official_sizing`).
    """
    return media_mod.decode(path, fps=fps, official_fps=official_fps, **decode_sizes(lm, max_pixels))


def decode_sizes(lm: LoadedModel, max_pixels: int | None = None) -> dict:
    """`media.decode` keyword arguments for the frame sizes of `lm`: `max_pixels` and `min_pixels`."""
    high = pixel_cap(lm, max_pixels)
    official = uses_official_sizing(lm.pixel_range)
    return {"max_pixels": high, "min_pixels": min(lm.pixel_range[0], high) if official else None}


@dataclass
class PreparedPrompt:
    """Processor inputs, the `use_audio_in_video` flag and the token layout of one clip + question."""

    inputs: dict
    use_audio_in_video: bool
    layout: TokenLayout
    processor_s: float


def prepare_prompt(lm: LoadedModel, decoded: media_mod.DecodedMedia, question: str,
                   max_pixels: int | None = None) -> PreparedPrompt:
    """Run the processor on already decoded media and derive the token layout (question stored in extras)."""
    start = time.perf_counter()
    inputs, use_audio_in_video = build_inputs(lm, decoded, question, max_pixels=max_pixels)
    processor_s = time.perf_counter() - start
    layout = layout_for_inputs(lm.thinker, lm.processor, inputs, use_audio_in_video)
    layout.extras["question"] = question
    return PreparedPrompt(inputs, use_audio_in_video, layout, processor_s)


def ask_decoded(lm: LoadedModel, decoded: media_mod.DecodedMedia, question: str, method: str = "acckv",
                budget: Budget | None = None, max_pixels: int | None = None, max_new_tokens: int = 32,
                method_params: dict | None = None) -> AskResult:
    """`ask_clip` on media decoded once by the caller (`acckv batch` reuses it across questions).

    `decoded` must come from `decode_for_model(lm, path, fps, max_pixels)`; it is not modified except for
    notices, and compression stays per question (query-aware).
    """
    question = check_question(question)
    compressor = get_method(method, **(method_params or {}))
    return _answer(lm, decoded, question, compressor, budget or Budget(0.2), pixel_cap(lm, max_pixels),
                   max_new_tokens)


def _answer(lm: LoadedModel, decoded: media_mod.DecodedMedia, question: str, compressor, budget: Budget,
            high: int, max_new_tokens: int) -> AskResult:
    seen_notices = len(decoded.notices)
    prompt = prepare_prompt(lm, decoded, question, max_pixels=high)
    inputs, use_audio_in_video, layout = prompt.inputs, prompt.use_audio_in_video, prompt.layout
    with compressor(lm.thinker, layout, budget) as run:
        gen = generate(lm, inputs, use_audio_in_video, max_new_tokens)
    report = RetentionReport.from_run(run, layout)
    summary = report.summary()
    timings = {"decode_s": decoded.decode_seconds, "encode_s": prompt.processor_s + gen.timings["encode_s"],
               "prefill_s": gen.timings["prefill_s"], "generate_s": gen.timings["generate_s"]}
    timings = {k: round(v, 4) for k, v in timings.items()}
    counts = layout.counts()
    tokens = {"video": counts["video"], "audio": counts["audio"],
              "text": len(layout) - counts["video"] - counts["audio"], "total": len(layout)}
    # building the inputs may add a notice (audio truncated) to the media, once per question: report it
    # here and take it off again so that media reused for further questions does not pile up copies
    notices = list(dict.fromkeys([*lm.notices, *decoded.notices]))
    del decoded.notices[seen_notices:]
    return AskResult(gen.text, lm.name, compressor.name, str(budget), media_summary(decoded, inputs, layout),
                     tokens, summary["kv_bytes_after"], summary["kv_bytes_before"], timings, report, notices)
