"""What a media file holds: its audio and video streams, codecs, frame size and rate, sample rate, channels.

The container is opened in-process with PyAV (``av``: FFmpeg's own libraries, bundled in its wheels), which
reads the same fields ``ffmpeg -i`` prints, as numbers rather than text: exact durations and frame rates
(``30000/1001``, not ``29.97``) and channel counts of any layout. ``benchmarks/probe_parity.py`` compares it
with the parser of ``ffmpeg -i``'s text it replaced, on every kind of file the tests use.

The exact frame count needs an index of the video stream, which decord builds when frames are read
(:func:`acckv_cli.media.decode.probe` adds it). User mistakes (missing file, text file named ``.mp4``, truncated
download...) raise :class:`MediaError` whose message is a single line naming the file.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

from acckv_cli.errors import MediaError
from acckv_cli.media.ffmpeg import file_url

VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".flv", ".wmv", ".3gp",
    ".ogv",
}
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus"}

PROBE_TIMEOUT_S = 120.0

# First bytes of common containers: a file that starts like a container but that FFmpeg cannot open is
# reported as corrupt/truncated rather than as "not a media file".
_MAGIC = (
    (4, b"ftyp", "MP4/MOV"), (4, b"moov", "MP4/MOV"), (4, b"mdat", "MP4/MOV"), (4, b"wide", "MP4/MOV"),
    (4, b"free", "MP4/MOV"), (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"), (0, b"RIFF", "RIFF (WAV/AVI)"),
    (0, b"OggS", "Ogg"), (0, b"fLaC", "FLAC"), (0, b"ID3", "MP3"), (0, b"FLV", "FLV"),
    (0, b"\x00\x00\x01\xba", "MPEG-PS"), (0, b"\x30\x26\xb2\x75", "ASF/WMV"),
)
# FFmpeg log lines that explain a failed open better than its error code ("Invalid data found ...").
_TELLING_LOGS = ("moov atom not found",)


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


# --------------------------------------------------------------------------------------------- paths


def quoted(path: str | os.PathLike) -> str:
    """Quote a path for a one-line message (repr escapes newlines and control characters)."""
    return repr(os.fspath(path))


def check_path(path: str | os.PathLike) -> str:
    """Return ``path`` as an absolute string, or raise MediaError if it cannot be a media file."""
    raw = os.fspath(path)
    if not os.path.lexists(raw):
        raise MediaError(f"media file not found: {quoted(raw)}")
    if not os.path.exists(raw):
        raise MediaError(f"media file is a broken symbolic link: {quoted(raw)}")
    if os.path.isdir(raw):
        raise MediaError(f"{quoted(raw)} is a directory, not a media file")
    if not os.path.isfile(raw):
        raise MediaError(f"{quoted(raw)} is not a regular file")
    if not os.access(raw, os.R_OK):
        raise MediaError(f"cannot read media file {quoted(raw)}: permission denied")
    if os.path.getsize(raw) == 0:
        raise MediaError(f"media file is empty (0 bytes): {quoted(raw)}")
    return os.path.abspath(raw)


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


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise MediaError("reading media files needs the `av` package (PyAV): pip install av") from exc
    return av


@contextlib.contextmanager
def _ffmpeg_log(av: Any) -> Iterator[list[tuple[int, str, str]]]:
    """FFmpeg's log lines (level, context, message) while the block runs: captured, never printed.

    PyAV's global log settings are restored after. Repeats are kept: PyAV would otherwise withhold a line
    it saw last time (a second open of the same truncated file) and flush it into a later capture.
    """
    level, skip_repeated = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)
    try:
        with av.logging.Capture(local=True) as logs:
            yield logs
    finally:
        av.logging.set_skip_repeated(skip_repeated)
        av.logging.set_level(level)


def _open_container(av: Any, abs_path: str, shown: str) -> Any:
    """``av.open`` the file, or raise a one-line MediaError saying why FFmpeg could not open it."""
    with _ffmpeg_log(av) as logs:
        try:
            return av.open(file_url(abs_path), timeout=PROBE_TIMEOUT_S)
        except av.error.ExitError as exc:  # the I/O interrupt of `timeout`
            raise MediaError(f"timed out after {PROBE_TIMEOUT_S:.0f} s while reading {shown}") from exc
        except av.FFmpegError as exc:
            reason = (exc.strerror or type(exc).__name__).strip()[:160]
            container = _sniff_container(abs_path)
            if container:
                told = [message.strip() for _, _, message in logs if message.strip() in _TELLING_LOGS]
                raise MediaError(f"{shown} looks like {container} but is corrupt or truncated "
                                 f"({(told or [reason])[0]})") from exc
            raise MediaError(f"{shown} is not a recognised audio or video file ({reason})") from exc


def _rate(value: Any) -> float | None:
    """A stream rate (a Fraction, 0 or None) as a positive float, or None."""
    return float(value) if value else None


def probe_container(path: str | os.PathLike) -> MediaInfo:
    """Describe a file from its container: streams, codecs, size, rates, duration; frame count left unknown.

    The first video stream that is not cover art and the first audio stream are described. Raises
    MediaError for unreadable files and files with no audio or video stream. A container that states no
    duration gives ``duration_s == 0.0``.
    """
    abs_path, shown = check_path(path), quoted(path)
    av = _import_av()
    with _open_container(av, abs_path, shown) as container:
        streams = container.streams
        cover_art = av.stream.Disposition.attached_pic  # a picture attached to an audio file is not video
        video = next((s for s in streams.video if not s.disposition & cover_art), None)
        audio = next(iter(streams.audio), None)
        if video is None and audio is None:
            raise MediaError(f"{shown} contains no audio or video stream")
        duration = container.duration  # microseconds (av.time_base); None when the container states none
        info = MediaInfo(path=os.fspath(path), duration_s=duration / av.time_base if duration and duration > 0 else 0.0,
                         has_video=video is not None, has_audio=audio is not None)
        if video is not None:
            ctx = video.codec_context
            info.video_codec = _codec_name(ctx)
            info.width, info.height = (ctx.width or None, ctx.height or None) if ctx is not None else (None, None)
            info.native_fps = _rate(video.average_rate) or _rate(video.base_rate)
        if audio is not None:
            ctx = audio.codec_context
            info.audio_codec = _codec_name(ctx)
            if ctx is not None:
                info.audio_rate, info.audio_channels = ctx.sample_rate or None, ctx.channels or None
    return info


def _codec_name(ctx: Any) -> str | None:
    """FFmpeg's name of the stream's codec ("mp3"), not of the decoder PyAV would pick ("mp3float")."""
    return ctx.codec.canonical_name if ctx is not None and ctx.codec is not None else None
