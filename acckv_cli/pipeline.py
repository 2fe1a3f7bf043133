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
                   frame_size=[w * 14, h * 14], pixels_per_frame=h * w * 196,
                   tokens_per_frame_pair=h * w // 4)
    if decoded.audio is not None:
        out["audio_seconds"] = round(decoded.audio.shape[0] / decoded.audio_rate, 3)
    return out


def ask_clip(lm: LoadedModel, path: str, question: str, method: str = "acckv", budget: Budget | None = None,
             fps: float = 2.0, max_pixels: int | None = None, max_new_tokens: int = 32,
             method_params: dict | None = None) -> AskResult:
    """Answer `question` about the clip at `path` with the KV cache compressed by `method`."""
    question = check_question(question)
    budget = budget or Budget(0.2)
    compressor = get_method(method, **(method_params or {}))
    low, high = lm.pixel_range
    high = min(high, max_pixels) if max_pixels else high
    decoded = media_mod.decode(path, fps=fps, max_pixels=high)
    start = time.perf_counter()
    inputs, use_audio_in_video = build_inputs(lm, decoded, question, max_pixels=high)
    processor_s = time.perf_counter() - start
    layout = layout_for_inputs(lm.thinker, lm.processor, inputs, use_audio_in_video)
    layout.extras["question"] = question
    with compressor(lm.thinker, layout, budget) as run:
        gen = generate(lm, inputs, use_audio_in_video, max_new_tokens)
    report = RetentionReport.from_run(run, layout)
    summary = report.summary()
    timings = {"decode_s": decoded.decode_seconds, "encode_s": processor_s + gen.timings["encode_s"],
               "prefill_s": gen.timings["prefill_s"], "generate_s": gen.timings["generate_s"]}
    timings = {k: round(v, 4) for k, v in timings.items()}
    counts = layout.counts()
    tokens = {"video": counts["video"], "audio": counts["audio"],
              "text": len(layout) - counts["video"] - counts["audio"], "total": len(layout)}
    return AskResult(gen.text, lm.name, compressor.name, str(budget), media_summary(decoded, inputs, layout),
                     tokens, summary["kv_bytes_after"], summary["kv_bytes_before"], timings, report,
                     [*lm.notices, *decoded.notices])
