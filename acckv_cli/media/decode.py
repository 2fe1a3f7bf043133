"""Media decoding: probe a file, then decode what it holds as Qwen2.5-Omni's pipeline prepares it.

Everything here runs offline on the CPU, one concern per module:

* :mod:`acckv_cli.media.probe`: what a file holds (PyAV reads the container); decord adds the exact frame count;
* :mod:`acckv_cli.media.frames`: sampled frames, decoded by decord at the size Qwen's pipeline gives them, from
  the rules of :mod:`acckv_cli.media.preprocess`;
* :mod:`acckv_cli.media.audio`: the soundtrack as mono float32 through an ffmpeg pipe, as ``librosa.load`` gives it.

User mistakes (missing file, text file named ``.mp4``, truncated download...) raise :class:`MediaError`
whose message is a single line naming the file, suitable to print without a traceback.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from acckv_cli.media.audio import decode_audio, decode_soundtrack
from acckv_cli.media.frames import FrameReader, fill_video_counts, open_video_reader
from acckv_cli.media.preprocess import VIDEO_MAX_PIXELS, check_sampling_args
from acckv_cli.media.probe import MediaInfo, probe_container

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = VIDEO_MAX_PIXELS  # Qwen's per-frame cap, 768·28²


@dataclass
class DecodedMedia:
    """Model-ready media: sampled RGB frames and/or mono float32 audio."""

    info: MediaInfo
    frames: Any  # (T, H, W, 3) uint8 array, or a lazy FrameReader (slices decode on demand); None: no video
    frame_times: np.ndarray | None  # (T,) seconds
    sample_fps: float | None  # effective frame sampling rate; pass to the Qwen processor as `fps`
    audio: np.ndarray | None  # (S,) float32 mono at `audio_rate`
    audio_rate: int
    notices: list[str] = field(default_factory=list)
    decode_seconds: float = 0.0
    # Tell the processor no frame rate, as Qwen's README call does (it then assumes 2.0 fps).
    official_fps: bool = False

    @property
    def processor_fps(self) -> float | None:
        """The frame rate to tell the processor: the true sampled rate, or None under ``official_fps``.

        The true rate keeps video positions on real time when sampling is not exactly 2 fps (149 frames at
        29.97 fps give 8 frames, 1.61 fps); Qwen's official call passes none, and the processor assumes 2.0.
        """
        if self.frames is None or self.official_fps:
            return None
        return float(self.sample_fps)

    @property
    def modalities(self) -> list[str]:
        """The modalities present, in prompt order: ``"video"`` then ``"audio"``."""
        present = []
        if self.frames is not None:
            present.append("video")
        if self.audio is not None:
            present.append("audio")
        return present


def probe(path: str | os.PathLike) -> MediaInfo:
    """Describe a media file: container facts from PyAV (:mod:`acckv_cli.media.probe`), exact frame count and rate
    from decord.

    Raises MediaError for unreadable files, files with no audio/video stream and videos without frames.
    An audio file whose length the container does not state gets ``duration_s == 0.0`` here; decoding
    tells whether it holds samples.
    """
    info = probe_container(path)
    if info.has_video:
        # A reduced decode size keeps opening an 8K file cheap; the frame count does not depend on it.
        fill_video_counts(info, open_video_reader(info, max_pixels=DEFAULT_MAX_PIXELS))
    elif info.duration_s <= 0:
        logger.debug("%s: container reports no duration; audio length is known only after decoding", path)
    return info


def decode(
    path: str | os.PathLike,
    fps: float = 2.0,
    min_frames: int = 4,
    max_frames: int | None = 768,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    audio_rate: int = 16000,
    min_pixels: int | None = None,
    official_fps: bool = False,
    lazy_frames: bool = False,
    check: Callable[[MediaInfo], None] | None = None,
) -> DecodedMedia:
    """Probe ``path`` and decode what it holds: sampled frames (video) and mono audio.

    Frame sizes: with ``min_pixels`` given, frames are resized once to the size Qwen's official pipeline
    (qwen-omni-utils) gives them, sides multiples of 28 and ``min_pixels <= H*W <= max_pixels`` (less for
    videos over 300 frames), so that the processor leaves them alone. Without it, frames are only shrunk
    to fit ``max_pixels`` and the processor rounds them to its grid (the sizing the built-in demo model
    was trained with). Audio is the mean of the channels, resampled like ``librosa.load``.

    ``official_fps=True`` marks the media so that the processor is told no frame rate, as in Qwen's README
    call (see :attr:`DecodedMedia.processor_fps`); sampling itself does not change.

    ``max_frames=None`` keeps the requested fps however long the clip (no 768-frame cap).
    ``lazy_frames=True`` decodes no frame yet: ``frames`` is a :class:`acckv_cli.media.frames.FrameReader` whose
    slices decode on demand (streaming reads one chunk at a time). ``check(info)``, if given, runs right
    after probing, before anything is decoded (e.g. the model's longest clip, ``acckv_cli.model.positions``).

    Raises ValueError for bad arguments (e.g. ``fps < 1``) and MediaError for unusable files.
    """
    start = time.perf_counter()
    check_sampling_args(fps, min_frames, max_frames)
    if max_pixels < 1 or audio_rate < 1:
        raise ValueError(f"max_pixels and audio_rate must be >= 1 (got {max_pixels}, {audio_rate})")
    if min_pixels is not None and not 1 <= min_pixels <= max_pixels:
        raise ValueError(f"need 1 <= min_pixels <= max_pixels (got {min_pixels}, {max_pixels})")
    info = probe_container(path)
    if check is not None:
        check(info)
    notices: list[str] = []
    frames = frame_times = sample_fps = audio = None
    if info.has_video:
        reader = FrameReader.open(info, fps, min_frames, max_frames, max_pixels, min_pixels)
        frames, frame_times, sample_fps = (reader if lazy_frames else reader[:]), reader.times, reader.sample_fps
        if info.has_audio:
            audio = decode_soundtrack(info, audio_rate, notices)
        else:
            notices.append("video has no audio track: running video-only")
    else:
        audio = decode_audio(info, audio_rate)
        notices.append("audio-only input: running audio-only")
        if info.duration_s <= 0:
            info.duration_s = audio.size / audio_rate
    if audio is not None and not np.any(audio):
        # Digital silence is valid input (the model just hears nothing), but worth telling the user.
        notices.append("audio track is silent (all samples are zero)")
    elapsed = time.perf_counter() - start
    logger.debug("decoded %s in %.3f s", path, elapsed)
    return DecodedMedia(
        info=info, frames=frames, frame_times=frame_times, sample_fps=sample_fps, audio=audio,
        audio_rate=audio_rate, notices=notices, decode_seconds=elapsed, official_fps=official_fps,
    )
