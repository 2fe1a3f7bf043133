"""The name of a saved compressed cache (`acckv index`), torch-free: commands tell a cache file from a clip
before anything heavy is imported (`cachefile` holds the format itself)."""

from __future__ import annotations

import os

SUFFIX = ".acckv"


def is_cache_path(path: str | os.PathLike) -> bool:
    """Whether a command argument names a cache file (by its suffix, as users name them)."""
    return str(path).lower().endswith(SUFFIX)
