"""What a media file holds: its audio and video streams, codecs, frame size and rate, sample rate, channels.

Probing parses the stderr of ``ffmpeg -i`` (imageio-ffmpeg ships no ffprobe). The exact frame count needs
an index of the video stream, which decord builds when frames are read (:func:`acckv_cli.media.probe` adds
it). User mistakes (missing file, text file named ``.mp4``, truncated download...) raise :class:`MediaError`
whose message is a single line naming the file.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Any

from acckv_cli.errors import MediaError
from acckv_cli.ffmpeg import ffmpeg_executable, file_url, stderr_reason

logger = logging.getLogger(__name__)

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
# Channel layout names printed by ffmpeg -> channel count.
_LAYOUT_CHANNELS = {
    "mono": 1, "stereo": 2, "downmix": 2, "2.1": 3, "3.0": 3, "3.0(back)": 3, "4.0": 4, "quad": 4,
    "quad(side)": 4, "3.1": 4, "5.0": 5, "5.0(side)": 5, "4.1": 5, "5.1": 6, "5.1(side)": 6, "6.0": 6,
    "6.0(front)": 6, "hexagonal": 6, "6.1": 7, "6.1(back)": 7, "6.1(front)": 7, "7.0": 7, "7.0(front)": 7,
    "7.1": 8, "7.1(wide)": 8, "7.1(wide-side)": 8, "octagonal": 8,
}


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


def _run_ffmpeg_probe(abs_path: str, shown: str) -> str:
    """Run ``ffmpeg -i`` (no output file) and return its stderr, where it prints the stream summary."""
    cmd = [ffmpeg_executable(), "-nostdin", "-hide_banner", "-i", file_url(abs_path)]
    logger.debug("probe: %s", cmd)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"timed out after {PROBE_TIMEOUT_S:.0f} s while reading {shown}") from exc
    # Exit status is always non-zero here (no output file was given); the stderr content decides.
    return proc.stderr.decode("utf-8", errors="replace")


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


def probe_container(path: str | os.PathLike) -> MediaInfo:
    """Describe a file from its container: streams, codecs, size, rate, duration; frame count left unknown."""
    abs_path = check_path(path)
    shown = quoted(path)
    stderr = _run_ffmpeg_probe(abs_path, shown)
    if not re.search(r"^Input #0", stderr, flags=re.M):
        container = _sniff_container(abs_path)
        if container:
            reason = stderr_reason(stderr, prefer=(r"moov atom not found",))
            raise MediaError(f"{shown} looks like {container} but is corrupt or truncated ({reason})")
        raise MediaError(f"{shown} is not a recognised audio or video file ({stderr_reason(stderr)})")
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
