"""Locate an ffmpeg executable without root (the one on PATH, else imageio-ffmpeg's), and name local files to FFmpeg."""

from __future__ import annotations

import functools
import re
import shutil

from acckv_cli.errors import FFmpegNotFound


@functools.lru_cache(maxsize=1)
def ffmpeg_executable() -> str:
    """Return the path of an ffmpeg executable (PATH first, then imageio-ffmpeg's bundled binary)."""
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # imageio-ffmpeg missing or its binary unusable
        raise FFmpegNotFound(
            "no ffmpeg executable found: install ffmpeg or `pip install imageio-ffmpeg`"
        ) from exc


def file_url(abs_path: str) -> str:
    """FFmpeg input URL for a local file (for the ffmpeg executable and for PyAV alike).

    The explicit ``file:`` protocol and absolute path mean a leading dash is never taken for an option
    and a colon in the name (``http:x.mp4``) is never taken for a protocol.
    """
    return "file:" + abs_path


def stderr_reason(stderr: str) -> str:
    """The most telling line of an ffmpeg failure, shortened for a one-line message."""
    for pattern in (r"Error opening input: (.+)", r"Invalid data found[^\n]*"):
        match = re.search(pattern, stderr)
        if match:
            return (match.group(1) if match.groups() else match.group(0)).strip()[:160]
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1][:160] if lines else "unknown error"
