"""Questions about one clip, end to end: decode → prompt → compressed prefill → answers → reports.

`ask`, `batch` and `eval` all go through `acckv_cli.answer.session.ClipSession`: the clip is decoded, encoded and
its media prefilled once, and every question is answered from the compressed cache under a protocol.
This module turns those answers into the records the CLI prints.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from acckv_cli.media import decode as media_mod
from acckv_cli.model import positions
from acckv_cli.methods import Budget, get_method
from acckv_cli.model.load import LoadedModel
from acckv_cli.media.preprocess import uses_official_sizing
from acckv_cli.answer.questions import check_question, read_questions  # noqa: F401  (re-exported)
from acckv_cli.answer.report import RetentionReport
from acckv_cli.answer.session import Answer, ClipSession, check_protocol

log = logging.getLogger(__name__)

# The default protocol of `ask` and `batch` (measured choice: README "How the answer depends on the cache").
DEFAULT_PROTOCOL = "query-aware"
STREAM = "stream"  # long clips: chunk-by-chunk prefill with bounded memory (acckv_cli.answer.stream)


@dataclass
class AskResult:
    """One question's answer with what it cost and what the cache kept."""

    question: str
    answer: str
    model: str
    method: str
    budget: Budget  # what the method was given (`full` keeps everything: its callers pass Budget(1))
    protocol: str
    media: dict
    tokens: dict
    kv: dict
    timings: dict
    reused: list[str]
    report: RetentionReport
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"question": self.question, "answer": self.answer, "model": self.model, "method": self.method,
                "budget": self.budget.number, "protocol": self.protocol, "media": self.media, "tokens": self.tokens,
                **self.kv, "timings": self.timings, "reused": self.reused, "notices": self.notices,
                "report": self.report.to_dict()}


def media_summary(decoded: media_mod.DecodedMedia, inputs: dict, patch: int | None = None) -> dict:
    """The numbers users compare with Qwen's own preprocessing (`patch`: the vision patch in pixels, read
    from the pixel values when the inputs hold them — a streamed prompt does not)."""
    info = decoded.info
    out = {"path": info.path, "duration_s": round(info.duration_s, 3), "modalities": decoded.modalities,
           "native_fps": info.native_fps, "native_size": [info.width, info.height] if info.width else None}
    grid = inputs.get("video_grid_thw")
    if decoded.frames is not None and grid is not None:
        t, h, w = (int(x) for x in grid[0])
        patch = _patch_size(inputs) if "pixel_values_videos" in inputs else patch
        out.update(sampled_fps=round(float(decoded.sample_fps), 4), frames=len(decoded.frames),
                   processor_fps=_processor_fps(inputs),
                   frame_size=[w * patch, h * patch], pixels_per_frame=h * w * patch * patch,
                   tokens_per_frame_pair=h * w // 4)
    if decoded.audio is not None:
        out["audio_seconds"] = round(decoded.audio.shape[0] / decoded.audio_rate, 3)
    return out


def _patch_size(inputs: dict) -> int:
    """Vision patch side in pixels (14 for Qwen2.5-Omni, 16 for Qwen3-Omni), from the processor's own output:
    each row of `pixel_values_videos` is one patch of 3 channels × 2 frames × patch²."""
    return round(math.sqrt(inputs["pixel_values_videos"].shape[-1] / 6))


def _processor_fps(inputs: dict) -> float | None:
    """The frame rate the processor was told (2 / seconds per temporal patch of 2 frames)."""
    per_grid = inputs.get("video_second_per_grid")
    if per_grid is None or not len(per_grid):
        return None
    return round(2.0 / float(per_grid[0]), 4)


def pixel_cap(lm: LoadedModel, max_pixels: int | None) -> int:
    """Pixels per frame to decode and process: the model's cap, lowered by `--max-pixels`."""
    high = lm.pixel_range[1]
    return min(high, max_pixels) if max_pixels else high


def decode_for_model(lm: LoadedModel, path: str, fps: float = 2.0, max_pixels: int | None = None,
                     official_fps: bool = False, lazy_frames: bool = False) -> media_mod.DecodedMedia:
    """Decode `path` with the frame sizes the model expects (`--max-pixels` lowers the cap).

    For a real checkpoint (Qwen's official pixel range) frames get the size and pixels Qwen's own
    pipeline gives them; a model with a range of its own (the built-in demo) gets the sizing it was
    trained with (`acckv_cli.media.preprocess.uses_official_sizing`). `official_fps=True` tells the processor
    no frame rate, as Qwen's README call does (`media.decode`). `lazy_frames=True` (streaming) decodes
    no frame yet: each chunk's frames are decoded when the stream reaches them.
    """
    return media_mod.decode(path, fps=fps, official_fps=official_fps, lazy_frames=lazy_frames,
                            **decode_sizes(lm, max_pixels))


def decode_sizes(lm: LoadedModel, max_pixels: int | None = None) -> dict:
    """`media.decode` keyword arguments for `lm`: the frame sizes (`max_pixels`, `min_pixels`), no frame cap
    (the requested fps is kept however long the clip) and the check that the clip fits the model's position
    range, run before anything is decoded (`acckv_cli.model.positions`)."""
    high = pixel_cap(lm, max_pixels)
    official = uses_official_sizing(lm.pixel_range)
    out = {"max_pixels": high, "min_pixels": min(lm.pixel_range[0], high) if official else None, "max_frames": None}
    if lm.thinker is not None:  # (preprocessing checks run without a model)
        out["check"] = positions.duration_check(lm)
    return out


def ask_clip(lm: LoadedModel, path: str, questions: list[str], method: str = "acckv", budget: Budget | None = None,
             protocol: str = DEFAULT_PROTOCOL, fps: float = 2.0, max_pixels: int | None = None,
             max_new_tokens: int = 32, method_params: dict | None = None,
             official_fps: bool = False, chunk_seconds: float | None = None) -> list[AskResult]:
    """Answer every question about the clip at `path`, decoding, encoding and prefilling its media once
    (`chunk_seconds`: the step of `--protocol stream`, None for its default)."""
    questions = [check_question(q) for q in questions]
    decoded = decode_for_model(lm, path, fps=fps, max_pixels=max_pixels, official_fps=official_fps,
                               lazy_frames=protocol == STREAM)
    return ask_decoded(lm, decoded, questions, method, budget, protocol, max_pixels, max_new_tokens, method_params,
                       chunk_seconds)


def ask_decoded(lm: LoadedModel, decoded: media_mod.DecodedMedia, questions: list[str], method: str = "acckv",
                budget: Budget | None = None, protocol: str = DEFAULT_PROTOCOL, max_pixels: int | None = None,
                max_new_tokens: int = 32, method_params: dict | None = None,
                chunk_seconds: float | None = None) -> list[AskResult]:
    """`ask_clip` on media decoded by the caller with `decode_for_model(lm, path, fps, max_pixels)`."""
    results = []
    for result in iter_answers(lm, decoded, questions, method, budget, protocol, max_pixels, max_new_tokens,
                               method_params, chunk_seconds):
        if isinstance(result, Exception):
            raise result
        results.append(result)
    return results


def iter_answers(lm: LoadedModel, decoded: media_mod.DecodedMedia, questions: list[str], method: str = "acckv",
                 budget: Budget | None = None, protocol: str = DEFAULT_PROTOCOL, max_pixels: int | None = None,
                 max_new_tokens: int = 32, method_params: dict | None = None, chunk_seconds: float | None = None):
    """Yield one `AskResult` per question, or the exception that question raised (batch records it and goes on).

    The prompt, the encoders and the media prefill are shared; a failure there is every question's failure.
    """
    questions = [check_question(q) for q in questions]
    check_protocol(protocol)
    compressor = get_method(method, **(method_params or {}))
    # `full` keeps every entry whatever it is given: its answers and reports say 100 %, not the budget it ignored
    budget = Budget(1.0) if compressor.name == "full" else (budget or Budget(0.2))
    try:
        session = open_session(lm, decoded, protocol, max_pixels, chunk_seconds)
        media_cache = session.media_cache_for(protocol, compressor, budget)
    except Exception as exc:
        for _ in questions:
            yield exc
        return
    media = media_summary(decoded, session.prompt.inputs, lm.family.patch_size)
    notices = list(dict.fromkeys([*lm.notices, *decoded.notices, *session.prompt.notices]))
    for question in questions:
        try:
            answer = session.answer(question, media_cache, protocol, compressor, budget, max_new_tokens)
        except Exception as exc:
            yield exc
            continue
        yield _result(lm, answer, compressor.name, budget, media, notices)


def open_session(lm: LoadedModel, decoded: media_mod.DecodedMedia, protocol: str,
                 max_pixels: int | None = None, chunk_seconds: float | None = None) -> ClipSession:
    """The session that serves `protocol`: a streamed one (`acckv_cli.answer.stream`, steps of `chunk_seconds`,
    None for its default) or the one-shot one."""
    if protocol == STREAM:
        from acckv_cli.answer.stream import StreamSession
        return StreamSession(lm, decoded, pixel_cap(lm, max_pixels), chunk_seconds=chunk_seconds)
    return ClipSession(lm, decoded, pixel_cap(lm, max_pixels))


def _result(lm: LoadedModel, answer: Answer, method: str, budget: Budget, media: dict, notices: list[str]) -> AskResult:
    summary = answer.report.summary()
    kv = {"kv_bytes": summary["kv_bytes_after"], "kv_bytes_full": summary["kv_bytes_before"],
          "kv_kept_ratio": summary["kv_kept_ratio"], "media_kept_ratio": summary["media_kept_ratio"]}
    return AskResult(answer.question, answer.text, lm.name, method, budget, answer.protocol, media,
                     token_counts(answer), kv, answer.timings, answer.reused, answer.report, notices)


def token_counts(answer: Answer) -> dict:
    """Prompt tokens per modality group, and how many of them the protocol compressed."""
    counts = answer.prompt_layout.counts()
    total = len(answer.prompt_layout)
    return {"video": counts["video"], "audio": counts["audio"], "text": total - counts["video"] - counts["audio"],
            "total": total, "compressed": len(answer.layout)}
