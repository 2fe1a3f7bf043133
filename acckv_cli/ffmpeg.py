"""Locate an ffmpeg executable without root: the one on PATH, else the binary shipped by imageio-ffmpeg."""

from __future__ import annotations

import functools
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
