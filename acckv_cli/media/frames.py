"""Sampled video frames, decoded on demand: the whole clip at once, or one time span at a time.

`FrameReader` holds what sampling decided — which native frames (Qwen's `smart_nframes` indices), their
times and the size every frame is resized to — and decodes a slice `reader[a:b]` only when asked, with
decord seeking by frame index. `media.decode` reads every frame through it (`reader[:]`); streaming
(`acckv_cli.answer.stream`) reads one chunk's frames at a time, so the decoded frames of a long clip never all
sit in memory. Both go through the same code, so a slice equals the same rows of the full decode.

Sizes are decided once for the whole clip (they depend on the number of sampled frames under Qwen's
official rules), never per slice. Given `min_pixels` (real checkpoints), frames are resized once, with the
filter Qwen's official pipeline uses, to the size that pipeline gives them (:mod:`acckv_cli.media.preprocess`):
decoded at native size when that is at most 4× the target area, at twice the target's sides otherwise, and
in batches, so that a 4K/8K video never materialises at full resolution. Without `min_pixels` they are
decoded *directly at a reduced size* when the native frame is larger than `max_pixels`.
Shapes: a slice is (b − a, H, W, 3) uint8.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from acckv_cli.errors import MediaError
from acckv_cli.media.preprocess import FRAME_FACTOR, resize_frames, sample_frame_indices, video_frame_size
from acckv_cli.media.probe import MediaInfo, quoted

logger = logging.getLogger(__name__)

# Frames up to this many times the target area are decoded at their native size, so that the one resize
# gives exactly Qwen's pixels (up to 1080p at the default cap). Larger ones (1440p, 4K, 8K, or 1080p in a
# long video) are first decoded by decord at twice the target's sides: far less memory and time, and
# pixels within resampling noise of Qwen's.
EXACT_DECODE_AREA_RATIO = 4.0
DECODE_CHUNK_BYTES = 256 * 2**20  # native frames decoded and resized per decord call: 768 never coexist


# --------------------------------------------------------------------------------------------- sizes


def fit_to_pixels(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """Largest (h, w) with the same aspect ratio and h*w <= max_pixels; never upscales."""
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    h, w = max(1, math.floor(height * scale)), max(1, math.floor(width * scale))
    if h == 1:  # extreme aspect ratio: the short side was clamped up to 1 pixel, the long one pays
        w = min(w, max_pixels)
    elif w == 1:
        h = min(h, max_pixels)
    while h * w > max_pixels:  # guards float rounding in `scale`; runs at most a step or two
        h, w = (h - 1, w) if h >= w else (h, w - 1)
    return h, w


def _decode_size(height: int, width: int, target: tuple[int, int]) -> tuple[int, int] | None:
    """Size to ask decord for (None: native) when the frames will be resized to ``target``."""
    budget = EXACT_DECODE_AREA_RATIO * target[0] * target[1]
    if height * width <= budget:
        return None
    return fit_to_pixels(height, width, int(budget))


def _expected_count(info: MediaInfo, fps: float, min_frames: int, max_frames: int | None) -> int:
    """Frames that will be sampled, from the container's duration (decord's exact count comes later)."""
    if info.duration_s > 0 and info.native_fps:
        n_frames = max(1, round(info.duration_s * info.native_fps))
        return len(sample_frame_indices(n_frames, info.native_fps, fps, min_frames, max_frames)[0])
    return FRAME_FACTOR  # unknown: the cap for few frames, i.e. the largest target


def _qwen_size(info: MediaInfo, height: int, width: int, count: int, min_pixels: int, max_pixels: int
               ) -> tuple[int, int]:
    try:
        return video_frame_size(height, width, count, min_pixels, max_pixels)
    except ValueError as exc:  # aspect ratio beyond 200:1, which Qwen's vision encoder refuses too
        raise MediaError(f"cannot size the frames of {quoted(info.path)} for the model ({exc})") from exc


def _enforce_max_pixels(frames: np.ndarray, max_pixels: int) -> np.ndarray:
    """Safety net when the probed size was wrong (odd metadata): resize decoded frames with Pillow."""
    t, height, width, _ = frames.shape
    h, w = fit_to_pixels(height, width, max_pixels)
    if (h, w) == (height, width):
        return frames
    from PIL import Image

    logger.warning("decoded frames are %dx%d, larger than max_pixels; resizing to %dx%d", width, height, w, h)
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])


# -------------------------------------------------------------------------------------------- decord


def _import_decord() -> Any:
    try:
        import decord
    except ImportError as exc:  # decord has no wheels for some platforms
        raise MediaError("video decoding needs the `decord` package: pip install decord") from exc
    # decord's embedded libav prints C-level errors to stderr for files we then report as MediaError
    # anyway; keep them only when debugging.
    quiet = not logger.isEnabledFor(logging.DEBUG)
    decord.logging.set_level(decord.logging.QUIET if quiet else decord.logging.ERROR)
    return decord


def _decord_reason(exc: Exception) -> str:
    """First line of a decord error without its ``[time] /src/file.cc:123:`` prefix."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", first)[:160]


def open_video_reader(info: MediaInfo, max_pixels: int | None, size: tuple[int, int] | None = None) -> Any:
    """Open a decord VideoReader, decoding at a reduced size when the native frame exceeds max_pixels.

    ``size`` (height, width), when given, is the decode size, whatever ``max_pixels`` says.
    """
    decord = _import_decord()
    kwargs: dict[str, int] = {}
    if size is not None:
        kwargs = {"height": size[0], "width": size[1]}
    elif max_pixels is not None and info.width and info.height:
        h, w = fit_to_pixels(info.height, info.width, max_pixels)
        if (h, w) != (info.height, info.width):
            logger.info("%s: decoding %dx%d frames at %dx%d", info.path, info.width, info.height, w, h)
            kwargs = {"width": w, "height": h}
    try:
        return decord.VideoReader(os.path.abspath(info.path), ctx=decord.cpu(0), **kwargs)
    except Exception as exc:  # decord raises DECORDError/RuntimeError with multi-line C++ context
        if info.duration_s <= 0:  # e.g. a stream header written but no frame ever muxed
            raise MediaError(f"{quoted(info.path)} has a video stream but no frames (zero duration)") from exc
        raise MediaError(
            f"cannot decode the video stream of {quoted(info.path)}: corrupt, truncated or empty "
            f"({_decord_reason(exc)})"
        ) from exc


def fill_video_counts(info: MediaInfo, reader: Any) -> None:
    """Complete ``info`` with decord's exact frame count and average frame rate."""
    info.n_frames = len(reader)
    if info.n_frames < 1:
        raise MediaError(f"{quoted(info.path)} has a video stream with no frames (zero duration)")
    avg = float(reader.get_avg_fps())
    if math.isfinite(avg) and avg > 0:
        info.native_fps = avg
    elif not info.native_fps:
        if info.duration_s <= 0:
            raise MediaError(f"{quoted(info.path)} has no usable frame rate or duration")
        info.native_fps = info.n_frames / info.duration_s
    if info.duration_s <= 0:
        info.duration_s = info.n_frames / info.native_fps


def _frame_times(reader: Any, indices: np.ndarray, native_fps: float) -> np.ndarray:
    """Presentation time (s) of each sampled frame; idx / fps when the container has no timestamps."""
    try:
        stamps = np.asarray(reader.get_frame_timestamp(indices), dtype=np.float64)
        return stamps[:, 0]
    except Exception as exc:
        logger.debug("frame timestamps unavailable (%s); using idx / fps", exc)
        return indices / native_fps


def _get_batch(reader: Any, info: MediaInfo, indices: np.ndarray) -> np.ndarray:
    """Frames ``indices`` as an array (decord gives an NDArray, or a torch tensor if its bridge was set to torch)."""
    try:
        batch = reader.get_batch(indices.tolist())
        return batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch.cpu().numpy())
    except Exception as exc:
        raise MediaError(
            f"cannot decode frames of {quoted(info.path)}: corrupt or truncated ({_decord_reason(exc)})"
        ) from exc


# ------------------------------------------------------------------------------------------- reader


@dataclass
class FrameReader:
    """The sampled frames of one video file, decoded lazily (see the module docstring).

    indices: (T,) native frame indices; times: (T,) seconds; sample_fps: the effective sampling rate.
    `reads` lists every (start, stop) decoded so far (what streaming tests check).
    """

    info: MediaInfo
    indices: np.ndarray
    times: np.ndarray
    sample_fps: float
    max_pixels: int
    min_pixels: int | None
    _reader: Any = field(repr=False)
    _decode_hw: tuple[int, int] | None = None   # decord's output size (None: native)
    _target_hw: tuple[int, int] | None = None   # Qwen sizing: final size (None until known)
    reads: list[tuple[int, int]] = field(default_factory=list)

    # --- opening ------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, info: MediaInfo, fps: float, min_frames: int, max_frames: int | None, max_pixels: int,
             min_pixels: int | None = None) -> "FrameReader":
        """Sample the clip's frames and decide their size; decode nothing yet. Completes `info`."""
        if min_pixels is not None:
            return cls._open_qwen(info, fps, min_frames, max_frames, min_pixels, max_pixels)
        reader = open_video_reader(info, max_pixels)
        fill_video_counts(info, reader)
        indices, sample_fps = sample_frame_indices(info.n_frames, info.native_fps, fps, min_frames, max_frames)
        return cls(info, indices, _frame_times(reader, indices, info.native_fps), sample_fps, max_pixels, None,
                   reader)

    @classmethod
    def _open_qwen(cls, info, fps, min_frames, max_frames, min_pixels, max_pixels) -> "FrameReader":
        """Qwen's official sizing: one resize to the size its pipeline gives frames (`acckv_cli.media.preprocess`)."""
        size_known = bool(info.height and info.width)
        decode_size = target = None
        if size_known:
            guess = _qwen_size(info, info.height, info.width,
                               _expected_count(info, fps, min_frames, max_frames), min_pixels, max_pixels)
            decode_size = _decode_size(info.height, info.width, guess)
        reader = open_video_reader(info, None, size=decode_size)
        fill_video_counts(info, reader)
        indices, sample_fps = sample_frame_indices(info.n_frames, info.native_fps, fps, min_frames, max_frames)
        if size_known:
            target = _qwen_size(info, info.height, info.width, len(indices), min_pixels, max_pixels)
            exact_size = _decode_size(info.height, info.width, target)
            if exact_size != decode_size:  # the container's duration misled the guess: reopen at the right size
                decode_size = exact_size
                reader = open_video_reader(info, None, size=decode_size)
        if decode_size is not None:
            logger.info("%s: decoding %dx%d frames at %dx%d", info.path, info.width, info.height,
                        *decode_size[::-1])
        else:
            target = None  # native decode: Qwen takes the size from the decoded frames, and so do we
        return cls(info, indices, _frame_times(reader, indices, info.native_fps), sample_fps, max_pixels,
                   min_pixels, reader, decode_size, target)

    # --- array-like ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(len(self.indices))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, H, W, 3) of the frames a full read returns (decodes one frame if the size is not known yet)."""
        height, width = self._frame_hw()
        return len(self), height, width, 3

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("FrameReader supports contiguous slices only, e.g. reader[4:8]")
        start, stop, _ = key.indices(len(self))
        return self.read(start, max(start, stop))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) of the sampled sequence, decoded in batches: (stop − start, H, W, 3) uint8."""
        self.reads.append((start, stop))
        height, width = self._decode_hw or (self.info.height or 1080, self.info.width or 1920)
        per_batch = max(1, DECODE_CHUNK_BYTES // (height * width * 3))
        parts = [self._decode(self.indices[a:min(a + per_batch, stop)]) for a in range(start, stop, per_batch)]
        if not parts:
            h, w = self._frame_hw()
            return np.zeros((0, h, w, 3), dtype=np.uint8)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    # --- decoding -----------------------------------------------------------------------------------------
    def _decode(self, indices: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(_get_batch(self._reader, self.info, indices), dtype=np.uint8)
        if self.min_pixels is None:  # frames only shrunk to the pixel cap; the processor rounds them
            return _enforce_max_pixels(batch, self.max_pixels)
        if self._target_hw is None:
            self._target_hw = _qwen_size(self.info, *batch.shape[1:3], len(self), self.min_pixels,
                                         self.max_pixels)
        return resize_frames(batch, *self._target_hw)

    def _frame_hw(self) -> tuple[int, int]:
        if self.min_pixels is not None and self._target_hw is not None:
            return self._target_hw
        return self._decode(self.indices[:1]).shape[1:3]
