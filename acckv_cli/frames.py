"""Sampled video frames, decoded on demand: the whole clip at once, or one time span at a time.

`FrameReader` holds what sampling decided — which native frames (Qwen's `smart_nframes` indices), their
times and the size every frame is resized to — and decodes a slice `reader[a:b]` only when asked, with
decord seeking by frame index. `media.decode` reads every frame through it (`reader[:]`); streaming
(`acckv_cli.stream`) reads one chunk's frames at a time, so the decoded frames of a long clip never all
sit in memory. Both go through the same code, so a slice equals the same rows of the full decode.

Sizes are decided once for the whole clip (they depend on the number of sampled frames under Qwen's
official rules), never per slice. Shapes: a slice is (b − a, H, W, 3) uint8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from acckv_cli import media as m

FRAMES_PER_BATCH_BYTES = m.DECODE_CHUNK_BYTES  # decoded native frames per decord call


@dataclass
class FrameReader:
    """The sampled frames of one video file, decoded lazily (see the module docstring).

    indices: (T,) native frame indices; times: (T,) seconds; sample_fps: the effective sampling rate.
    `reads` lists every (start, stop) decoded so far (what streaming tests check).
    """

    info: m.MediaInfo
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
    def open(cls, info: m.MediaInfo, fps: float, min_frames: int, max_frames: int | None, max_pixels: int,
             min_pixels: int | None = None) -> "FrameReader":
        """Sample the clip's frames and decide their size; decode nothing yet. Completes `info`."""
        if min_pixels is not None:
            return cls._open_qwen(info, fps, min_frames, max_frames, min_pixels, max_pixels)
        reader = m._open_video_reader(info, max_pixels)
        m._fill_video_counts(info, reader)
        indices, sample_fps = m.sample_frame_indices(info.n_frames, info.native_fps, fps, min_frames, max_frames)
        return cls(info, indices, m._frame_times(reader, indices, info.native_fps), sample_fps, max_pixels, None,
                   reader)

    @classmethod
    def _open_qwen(cls, info, fps, min_frames, max_frames, min_pixels, max_pixels) -> "FrameReader":
        """Qwen's official sizing: one resize to the size its pipeline gives frames (`acckv_cli.preprocess`)."""
        size_known = bool(info.height and info.width)
        decode_size = target = None
        if size_known:
            guess = m._qwen_size(info, info.height, info.width,
                                 m._expected_count(info, fps, min_frames, max_frames), min_pixels, max_pixels)
            decode_size = m._decode_size(info.height, info.width, guess)
        reader = m._open_video_reader(info, None, size=decode_size)
        m._fill_video_counts(info, reader)
        indices, sample_fps = m.sample_frame_indices(info.n_frames, info.native_fps, fps, min_frames, max_frames)
        if size_known:
            target = m._qwen_size(info, info.height, info.width, len(indices), min_pixels, max_pixels)
            exact_size = m._decode_size(info.height, info.width, target)
            if exact_size != decode_size:  # the container's duration misled the guess: reopen at the right size
                decode_size = exact_size
                reader = m._open_video_reader(info, None, size=decode_size)
        if decode_size is not None:
            m.logger.info("%s: decoding %dx%d frames at %dx%d", info.path, info.width, info.height,
                          *decode_size[::-1])
        else:
            target = None  # native decode: Qwen takes the size from the decoded frames, and so do we
        return cls(info, indices, m._frame_times(reader, indices, info.native_fps), sample_fps, max_pixels,
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
        per_batch = max(1, FRAMES_PER_BATCH_BYTES // (height * width * 3))
        parts = [self._decode(self.indices[a:min(a + per_batch, stop)]) for a in range(start, stop, per_batch)]
        if not parts:
            h, w = self._frame_hw()
            return np.zeros((0, h, w, 3), dtype=np.uint8)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    # --- decoding -----------------------------------------------------------------------------------------
    def _decode(self, indices: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(m._get_batch(self._reader, self.info, indices), dtype=np.uint8)
        if self.min_pixels is None:  # frames only shrunk to the pixel cap; the processor rounds them
            return m._enforce_max_pixels(batch, self.max_pixels)
        if self._target_hw is None:
            self._target_hw = m._qwen_size(self.info, *batch.shape[1:3], len(self), self.min_pixels,
                                           self.max_pixels)
        return m.resize_frames(batch, *self._target_hw)

    def _frame_hw(self) -> tuple[int, int]:
        if self.min_pixels is not None and self._target_hw is not None:
            return self._target_hw
        return self._decode(self.indices[:1]).shape[1:3]
