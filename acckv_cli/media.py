"""Media decoding: probe a file, sample video frames, and decode audio for Qwen2.5-Omni.

Everything here runs offline on the CPU:

* probing parses the stderr of ``ffmpeg -i`` (imageio-ffmpeg ships no ffprobe) and asks decord for the
  exact frame count and frame rate;
* frames come from decord. Given ``min_pixels`` (real checkpoints), they are resized once, with the
  filter Qwen's official pipeline uses, to the size that pipeline gives them (:mod:`acckv_cli.preprocess`):
  decoded at native size when that is at most 4× the target area, at twice the target's sides otherwise,
  and in batches, so that a 4K/8K video never materialises at full resolution. Without ``min_pixels``
  they are decoded *directly at a reduced size* when the native frame is larger than ``max_pixels``;
* audio comes from an ffmpeg pipe to mono float32 PCM (fast, and no librosa/audioread cold start).

User mistakes (missing file, text file named ``.mp4``, truncated download...) raise :class:`MediaError`
whose message is a single line naming the file, suitable to print without a traceback.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from acckv_cli.errors import MediaError
from acckv_cli.ffmpeg import ffmpeg_executable
from acckv_cli.preprocess import video_frame_size

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".flv", ".wmv", ".3gp",
    ".ogv",
}
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus"}

# Qwen's vision encoder merges frames in temporal patches of 2, so frame counts are kept even.
FRAME_FACTOR = 2
PROBE_TIMEOUT_S = 120.0
DEFAULT_MAX_PIXELS = 768 * 28 * 28

# Channel layout names printed by ffmpeg -> channel count.
_LAYOUT_CHANNELS = {
    "mono": 1, "stereo": 2, "downmix": 2, "2.1": 3, "3.0": 3, "3.0(back)": 3, "4.0": 4, "quad": 4,
    "quad(side)": 4, "3.1": 4, "5.0": 5, "5.0(side)": 5, "4.1": 5, "5.1": 6, "5.1(side)": 6, "6.0": 6,
    "6.0(front)": 6, "hexagonal": 6, "6.1": 7, "6.1(back)": 7, "6.1(front)": 7, "7.0": 7, "7.0(front)": 7,
    "7.1": 8, "7.1(wide)": 8, "7.1(wide-side)": 8, "octagonal": 8,
}

# First bytes of common containers: a file that starts like a container but that ffmpeg cannot open is
# reported as corrupt/truncated rather than as "not a media file".
_MAGIC = (
    (4, b"ftyp", "MP4/MOV"), (4, b"moov", "MP4/MOV"), (4, b"mdat", "MP4/MOV"), (4, b"wide", "MP4/MOV"),
    (4, b"free", "MP4/MOV"), (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"), (0, b"RIFF", "RIFF (WAV/AVI)"),
    (0, b"OggS", "Ogg"), (0, b"fLaC", "FLAC"), (0, b"ID3", "MP3"), (0, b"FLV", "FLV"),
    (0, b"\x00\x00\x01\xba", "MPEG-PS"), (0, b"\x30\x26\xb2\x75", "ASF/WMV"),
)


@dataclass
class MediaInfo:
    """What probing found out about a media file (native properties, before any sampling)."""

    path: str
    duration_s: float
    has_video: bool
    has_audio: bool
    native_fps: float | None = None
    width: int | None = None
    height: int | None = None
    n_frames: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    audio_channels: int | None = None
    audio_rate: int | None = None


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


# --------------------------------------------------------------------------------------------- paths


def _show(path: str | os.PathLike) -> str:
    """Quote a path for a one-line message (repr escapes newlines and control characters)."""
    return repr(os.fspath(path))


def _check_path(path: str | os.PathLike) -> str:
    """Return ``path`` as an absolute string, or raise MediaError if it cannot be a media file."""
    raw = os.fspath(path)
    if not os.path.lexists(raw):
        raise MediaError(f"media file not found: {_show(raw)}")
    if not os.path.exists(raw):
        raise MediaError(f"media file is a broken symbolic link: {_show(raw)}")
    if os.path.isdir(raw):
        raise MediaError(f"{_show(raw)} is a directory, not a media file")
    if not os.path.isfile(raw):
        raise MediaError(f"{_show(raw)} is not a regular file")
    if not os.access(raw, os.R_OK):
        raise MediaError(f"cannot read media file {_show(raw)}: permission denied")
    if os.path.getsize(raw) == 0:
        raise MediaError(f"media file is empty (0 bytes): {_show(raw)}")
    return os.path.abspath(raw)


def _ffmpeg_url(abs_path: str) -> str:
    """ffmpeg input URL for a local file.

    The explicit ``file:`` protocol and absolute path mean a leading dash is never taken for an option
    and a colon in the name (``http:x.mp4``) is never taken for a protocol.
    """
    return "file:" + abs_path


def _sniff_container(abs_path: str) -> str | None:
    """Name of the container the first bytes announce, or None when they look like no media format."""
    with open(abs_path, "rb") as fh:
        head = fh.read(16)
    for offset, magic, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # bare MPEG audio frame sync
        return "MP3"
    return None


# ------------------------------------------------------------------------------------------- probing


def _run_ffmpeg_probe(abs_path: str, shown: str) -> str:
    """Run ``ffmpeg -i`` (no output file) and return its stderr, where it prints the stream summary."""
    cmd = [ffmpeg_executable(), "-nostdin", "-hide_banner", "-i", _ffmpeg_url(abs_path)]
    logger.debug("probe: %s", cmd)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"timed out after {PROBE_TIMEOUT_S:.0f} s while reading {shown}") from exc
    # Exit status is always non-zero here (no output file was given); the stderr content decides.
    return proc.stderr.decode("utf-8", errors="replace")


def _ffmpeg_reason(stderr: str, prefer: tuple[str, ...] = ()) -> str:
    """The most telling line of an ffmpeg failure, shortened for a one-line message.

    ``prefer`` lists patterns tried first (e.g. "moov atom not found" explains a truncated MP4 better
    than the generic "Invalid data found when processing input").
    """
    for pattern in (*prefer, r"Error opening input: (.+)", r"Invalid data found[^\n]*"):
        match = re.search(pattern, stderr)
        if match:
            return (match.group(1) if match.groups() else match.group(0)).strip()[:160]
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1][:160] if lines else "unknown error"


def _parse_duration(stderr: str) -> float | None:
    match = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", stderr)
    if not match:
        return None  # "Duration: N/A"
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _parse_rate(text: str, unit: str) -> float | None:
    """Parse ffmpeg's ``25 fps`` / ``29.97 fps`` / ``1k tbr`` notation."""
    match = re.search(rf"(\d+(?:\.\d+)?)(k?) {unit}\b", text)
    if not match:
        return None
    value = float(match.group(1)) * (1000.0 if match.group(2) else 1.0)
    return value if value > 0 else None


def _parse_channels(text: str) -> int | None:
    match = re.search(r"\d+ Hz, ([^,]+)", text)
    if not match:
        return None
    layout = match.group(1).strip()
    counted = re.match(r"(\d+) channels", layout)
    if counted:
        return int(counted.group(1))
    return _LAYOUT_CHANNELS.get(layout)


def _parse_streams(stderr: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """First real video stream and first audio stream described in ffmpeg's input summary."""
    video = audio = None
    for kind, desc in re.findall(r"^\s*Stream #\d+:\d+\S*: (Video|Audio): (.*)$", stderr, flags=re.M):
        codec_match = re.match(r"[\w.-]+", desc)
        codec = codec_match.group(0) if codec_match else None
        if kind == "Video" and video is None and "(attached pic)" not in desc:  # cover art is not video
            size = re.search(r", (\d+)x(\d+)", desc)
            video = {
                "codec": codec,
                "width": int(size.group(1)) if size else None,
                "height": int(size.group(2)) if size else None,
                "fps": _parse_rate(desc, "fps") or _parse_rate(desc, "tbr"),
            }
        elif kind == "Audio" and audio is None:
            rate = re.search(r"(\d+) Hz", desc)
            audio = {"codec": codec, "rate": int(rate.group(1)) if rate else None, "channels": _parse_channels(desc)}
    return video, audio


def _probe_container(path: str | os.PathLike) -> MediaInfo:
    """Probe with ffmpeg only (cheap): streams, codecs, size, duration; frame count left unknown."""
    abs_path = _check_path(path)
    shown = _show(path)
    stderr = _run_ffmpeg_probe(abs_path, shown)
    if not re.search(r"^Input #0", stderr, flags=re.M):
        container = _sniff_container(abs_path)
        if container:
            reason = _ffmpeg_reason(stderr, prefer=(r"moov atom not found",))
            raise MediaError(f"{shown} looks like {container} but is corrupt or truncated ({reason})")
        raise MediaError(f"{shown} is not a recognised audio or video file ({_ffmpeg_reason(stderr)})")
    video, audio = _parse_streams(stderr)
    if video is None and audio is None:
        raise MediaError(f"{shown} contains no audio or video stream")
    info = MediaInfo(
        path=os.fspath(path),
        duration_s=_parse_duration(stderr) or 0.0,
        has_video=video is not None,
        has_audio=audio is not None,
    )
    if video:
        info.video_codec, info.width, info.height = video["codec"], video["width"], video["height"]
        info.native_fps = video["fps"]
    if audio:
        info.audio_codec, info.audio_rate, info.audio_channels = audio["codec"], audio["rate"], audio["channels"]
    return info


def probe(path: str | os.PathLike) -> MediaInfo:
    """Describe a media file: container facts from ffmpeg, exact frame count and rate from decord.

    Raises MediaError for unreadable files, files with no audio/video stream and videos without frames.
    An audio file whose length the container does not state gets ``duration_s == 0.0`` here; decoding
    tells whether it holds samples.
    """
    info = _probe_container(path)
    if info.has_video:
        # A reduced decode size keeps opening an 8K file cheap; the frame count does not depend on it.
        reader = _open_video_reader(info, max_pixels=DEFAULT_MAX_PIXELS)
        _fill_video_counts(info, reader)
    elif info.duration_s <= 0:
        logger.debug("%s: container reports no duration; audio length is known only after decoding", path)
    return info


# -------------------------------------------------------------------------------------------- frames


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


def _check_sampling_args(fps: float, min_frames: int, max_frames: int) -> None:
    if not fps >= 1:  # also rejects NaN
        raise ValueError(
            f"--fps must be >= 1 (got {fps}): lower rates desynchronise Qwen2.5-Omni's interleaved "
            "audio/video chunks"
        )
    if min_frames < 1 or (max_frames is not None and (max_frames < FRAME_FACTOR or min_frames > max_frames)):
        raise ValueError(
            f"need 1 <= min_frames <= max_frames and max_frames >= {FRAME_FACTOR} "
            f"(got min_frames={min_frames}, max_frames={max_frames})"
        )


def sample_frame_indices(
    n_frames: int, native_fps: float, fps: float = 2.0, min_frames: int = 4, max_frames: int | None = 768
) -> tuple[np.ndarray, float]:
    """Frame indices to decode and the effective sampling rate, following Qwen's ``smart_nframes``.

    The count is ``duration * fps`` clamped to ``[min_frames, min(max_frames, n_frames)]`` and floored to
    an even number (Qwen's temporal patch is 2 frames); a one-frame video yields its frame twice.
    ``max_frames=None`` lifts Qwen's 768-frame cap, so a long clip keeps the requested rate (the model's
    position range is then the limit: ``acckv_cli.positions``).
    Indices are spread uniformly over the whole video. The returned rate, ``count / duration``, is what
    the processor must be told so that video timestamps line up with the audio.
    """
    _check_sampling_args(fps, min_frames, max_frames)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if not native_fps > 0:
        raise ValueError(f"native_fps must be > 0, got {native_fps}")
    wanted = n_frames / native_fps * fps
    count = min(max(wanted, min_frames), max_frames if max_frames is not None else n_frames, n_frames)
    count = max(FRAME_FACTOR, int(count // FRAME_FACTOR) * FRAME_FACTOR)
    indices = _linspace_indices(n_frames, count)
    sample_fps = count * native_fps / n_frames
    return indices, float(sample_fps)


def _linspace_indices(n_frames: int, count: int) -> np.ndarray:
    """``torch.linspace(0, n_frames - 1, count).round()`` in float32, as qwen-omni-utils computes it.

    float64 (``np.linspace``) rounds differently at some exact halves once videos have more than about
    13,000 frames: one frame in 768 would then differ from Qwen's.
    """
    import torch

    return torch.linspace(0, n_frames - 1, count, dtype=torch.float32).round().long().numpy().astype(np.int64)


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


def _open_video_reader(info: MediaInfo, max_pixels: int | None, size: tuple[int, int] | None = None) -> Any:
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
            raise MediaError(f"{_show(info.path)} has a video stream but no frames (zero duration)") from exc
        raise MediaError(
            f"cannot decode the video stream of {_show(info.path)}: corrupt, truncated or empty "
            f"({_decord_reason(exc)})"
        ) from exc


def _fill_video_counts(info: MediaInfo, reader: Any) -> None:
    """Complete ``info`` with decord's exact frame count and average frame rate."""
    info.n_frames = len(reader)
    if info.n_frames < 1:
        raise MediaError(f"{_show(info.path)} has a video stream with no frames (zero duration)")
    avg = float(reader.get_avg_fps())
    if math.isfinite(avg) and avg > 0:
        info.native_fps = avg
    elif not info.native_fps:
        if info.duration_s <= 0:
            raise MediaError(f"{_show(info.path)} has no usable frame rate or duration")
        info.native_fps = info.n_frames / info.duration_s
    if info.duration_s <= 0:
        info.duration_s = info.n_frames / info.native_fps


def _as_numpy(batch: Any) -> np.ndarray:
    """decord returns an NDArray, or a torch tensor if someone switched the global bridge to torch."""
    return batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch.cpu().numpy())


def _frame_times(reader: Any, indices: np.ndarray, native_fps: float) -> np.ndarray:
    """Presentation time (s) of each sampled frame; idx / fps when the container has no timestamps."""
    try:
        stamps = np.asarray(reader.get_frame_timestamp(indices), dtype=np.float64)
        return stamps[:, 0]
    except Exception as exc:
        logger.debug("frame timestamps unavailable (%s); using idx / fps", exc)
        return indices / native_fps


def _enforce_max_pixels(frames: np.ndarray, max_pixels: int) -> np.ndarray:
    """Safety net when the probed size was wrong (odd metadata): resize decoded frames with Pillow."""
    t, height, width, _ = frames.shape
    h, w = fit_to_pixels(height, width, max_pixels)
    if (h, w) == (height, width):
        return frames
    from PIL import Image

    logger.warning("decoded frames are %dx%d, larger than max_pixels; resizing to %dx%d", width, height, w, h)
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (T, H, W, 3) uint8 frames as qwen-omni-utils does: torchvision's antialiased bicubic filter.

    Same call as ``fetch_video`` (``torchvision.transforms.functional.resize`` on a uint8 tensor, which
    rounds and clamps back to uint8), so the same decoded frames give the same pixels.
    """
    if frames.shape[1:3] == (height, width):
        return frames
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tv_functional

    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    out = tv_functional.resize(video, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return np.ascontiguousarray(out.permute(0, 2, 3, 1).numpy())


def _decode_frames(
    info: MediaInfo, fps: float, min_frames: int, max_frames: int | None, max_pixels: int,
    min_pixels: int | None = None, lazy: bool = False,
) -> tuple[Any, np.ndarray, float]:
    """Sample frames; returns (frames, frame_times, sample_fps) and completes ``info``.

    ``frames`` is the decoded (T, H, W, 3) array, or with ``lazy`` the :class:`acckv_cli.frames.FrameReader`
    that decodes any slice of it on demand (same pixels: the array is read through it).
    """
    from acckv_cli.frames import FrameReader  # it builds on this module's helpers

    reader = FrameReader.open(info, fps, min_frames, max_frames, max_pixels, min_pixels)
    return (reader if lazy else reader[:]), reader.times, reader.sample_fps


def _get_batch(reader: Any, info: MediaInfo, indices: np.ndarray) -> np.ndarray:
    try:
        return _as_numpy(reader.get_batch(indices.tolist()))
    except Exception as exc:
        raise MediaError(
            f"cannot decode frames of {_show(info.path)}: corrupt or truncated ({_decord_reason(exc)})"
        ) from exc


# Frames up to this many times the target area are decoded at their native size, so that the one resize
# gives exactly Qwen's pixels (up to 1080p at the default cap). Larger ones (1440p, 4K, 8K, or 1080p in a
# long video) are first decoded by decord at twice the target's sides: far less memory and time, and
# pixels within resampling noise of Qwen's.
EXACT_DECODE_AREA_RATIO = 4.0
DECODE_CHUNK_BYTES = 256 * 2**20  # frames decoded and resized per batch, so 768 native frames never coexist


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
        raise MediaError(f"cannot size the frames of {_show(info.path)} for the model ({exc})") from exc


# --------------------------------------------------------------------------------------------- audio


def _mono_args(channels: int | None) -> list[str]:
    """ffmpeg arguments that make mono the way Qwen's pipeline does: the plain mean of the channels.

    qwen-omni-utils reads audio with ``librosa.load(..., mono=True)``, which averages the channels.
    ``-ac 1`` would use ffmpeg's downmix matrix instead (centre + 0.707·front + 0.5·rear, LFE dropped):
    stereo 3 dB louder, 5.1 several times louder and differently mixed. ``pan`` with equal weights is the
    mean; only a channel layout that probing could not count falls back to ``-ac 1``.
    """
    if channels == 1:
        return []
    if not channels:
        logger.debug("unknown channel count: ffmpeg's own downmix to mono")
        return ["-ac", "1"]
    weight = repr(1.0 / channels)
    return ["-af", "pan=mono|c0=" + "+".join(f"{weight}*c{i}" for i in range(channels))]


def _ffmpeg_audio_pipe(abs_path: str, shown: str, rate: int, channels: int | None = None) -> np.ndarray:
    """Decode the first audio stream to mono float32 at ``rate`` Hz through an ffmpeg pipe."""
    cmd = [
        ffmpeg_executable(), "-nostdin", "-hide_banner", "-loglevel", "error",
        "-i", _ffmpeg_url(abs_path),
        "-map", "0:a:0", "-vn", "-sn", "-dn",
        *_mono_args(channels), "-ar", str(rate), "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1",
    ]
    logger.debug("audio: %s", cmd)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    stderr = proc.stderr.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        if "matches no streams" in stderr:
            raise MediaError(f"{shown} has no audio track")
        raise MediaError(f"cannot decode the audio of {shown} ({_ffmpeg_reason(stderr)})")
    # Copy out of the bytes buffer: np.frombuffer views are read-only and callers may normalise in place.
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)


def _decode_audio(info: MediaInfo, rate: int) -> np.ndarray:
    """Mono audio of a probed file at ``rate`` Hz, as ``librosa.load(path, sr=rate)`` gives it.

    The channel mean is taken by ffmpeg at the native rate, then resampled here with soxr's HQ filter
    (librosa's default), so the waveform matches Qwen's pipeline and not just its loudness. When the
    native rate is unknown, ffmpeg resamples.
    """
    abs_path, shown = _check_path(info.path), _show(info.path)
    native = info.audio_rate
    if native and native != rate and _have_soxr():
        wav = resample(_ffmpeg_audio_pipe(abs_path, shown, native, info.audio_channels), native, rate)
    else:
        wav = _ffmpeg_audio_pipe(abs_path, shown, rate, info.audio_channels)
    if wav.size == 0:
        raise MediaError(f"{shown} contains no audio samples")
    return wav


def load_audio(path: str | os.PathLike, rate: int = 16000) -> np.ndarray:
    """Mono float32 waveform of the first audio stream of any container, resampled to ``rate`` Hz.

    Mono is the mean of the channels and resampling uses soxr HQ, as in ``librosa.load(path, sr=rate)``.
    """
    if rate < 1:
        raise ValueError(f"audio rate must be >= 1 Hz, got {rate}")
    info = _probe_container(path)
    if not info.has_audio:
        raise MediaError(f"{_show(path)} has no audio track")
    return _decode_audio(info, rate)


@functools.lru_cache(maxsize=1)
def _have_soxr() -> bool:
    try:
        import soxr  # noqa: F401  (librosa's resampler, a dependency of librosa)
    except ImportError:
        return False
    return True


def resample(wav: np.ndarray, orig_rate: int, rate: int) -> np.ndarray:
    """Resample a mono waveform like ``librosa.resample`` (soxr HQ); the input as float32 if rates match."""
    wav = np.asarray(wav, dtype=np.float32)
    if orig_rate == rate:
        return wav
    if orig_rate < 1 or rate < 1:
        raise ValueError(f"sample rates must be >= 1 Hz, got {orig_rate} -> {rate}")
    try:
        import soxr  # librosa's own default backend: same output without librosa's multi-second cold start
    except ImportError:
        import librosa

        return librosa.resample(wav, orig_sr=orig_rate, target_sr=rate).astype(np.float32)
    out = soxr.resample(wav, orig_rate, rate, quality="HQ").astype(np.float32)
    return _fix_length(out, math.ceil(len(wav) * rate / orig_rate))  # librosa's fix=True length


def _fix_length(wav: np.ndarray, size: int) -> np.ndarray:
    """Trim or zero-pad to exactly ``size`` samples."""
    if len(wav) >= size:
        return wav[:size]
    return np.pad(wav, (0, size - len(wav)))


def _decode_audio_track(info: MediaInfo, rate: int, notices: list[str]) -> np.ndarray | None:
    """Audio of a video file; a broken or empty track degrades to video-only with a notice."""
    try:
        wav = _decode_audio(info, rate)
    except MediaError as exc:
        logger.warning("%s", exc)
        notices.append(f"audio track could not be decoded ({exc}): running video-only")
        return None
    return wav


# ------------------------------------------------------------------------------------------- decode


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
    ``lazy_frames=True`` decodes no frame yet: ``frames`` is a :class:`acckv_cli.frames.FrameReader` whose
    slices decode on demand (streaming reads one chunk at a time). ``check(info)``, if given, runs right
    after probing, before anything is decoded (e.g. the model's longest clip, ``acckv_cli.positions``).

    Raises ValueError for bad arguments (e.g. ``fps < 1``) and MediaError for unusable files.
    """
    start = time.perf_counter()
    _check_sampling_args(fps, min_frames, max_frames)
    if max_pixels < 1 or audio_rate < 1:
        raise ValueError(f"max_pixels and audio_rate must be >= 1 (got {max_pixels}, {audio_rate})")
    if min_pixels is not None and not 1 <= min_pixels <= max_pixels:
        raise ValueError(f"need 1 <= min_pixels <= max_pixels (got {min_pixels}, {max_pixels})")
    info = _probe_container(path)
    if check is not None:
        check(info)
    notices: list[str] = []
    frames = frame_times = sample_fps = audio = None
    if info.has_video:
        frames, frame_times, sample_fps = _decode_frames(info, fps, min_frames, max_frames, max_pixels, min_pixels,
                                                         lazy_frames)
        if info.has_audio:
            audio = _decode_audio_track(info, audio_rate, notices)
        else:
            notices.append("video has no audio track: running video-only")
    else:
        audio = _decode_audio(info, audio_rate)
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
