"""Importers for the annotation files of public audio-video benchmarks, one module per layout.

`read_benchmark(name, path, media_root)` turns a benchmark's own annotation file, as published, into the rows
a manifest holds (`formats.base`), with videos resolved against the media root and the benchmark's category
kept as the row's `family`; everything after that (protocols, methods, scoring, summaries) is the manifest
path. Adding a layout: one module with a `BenchmarkFormat` passed to `register`, imported below.
"""

from __future__ import annotations

import os
from pathlib import Path

from acckv_cli.errors import Fail
from acckv_cli.evaluation.formats.base import FORMATS, BenchmarkFormat, get_format, load_annotations, media_root_for
# importing a layout's module registers it
from acckv_cli.evaluation.formats import avqa, daily_omni, music_avqa, omnivideobench, videomme, worldsense  # noqa

__all__ = ["FORMATS", "BenchmarkFormat", "get_format", "read_benchmark"]


def read_benchmark(name: str, path: str | os.PathLike, media_root: str | os.PathLike | None = None) -> list[dict]:
    """The rows of a benchmark's annotation file, numbered (`_line`: the item's position, for messages).
    Problems with the file are one-line usage errors, raised before any model loads; a missing video is not."""
    fmt = get_format(name)
    path = Path(path)
    root = media_root_for(path, media_root)
    data = load_annotations(path)
    rows = [{**row, "_line": n} for n, row in enumerate(fmt.read(data, root, str(path)), 1)]
    if not rows:
        raise Fail(f"{path} holds no {fmt.name} question", 2)
    return rows
