"""The registry of benchmark layouts and what every importer shares: loading an annotation file, finding a
video under the media root, and the row shape they all produce.

A row is what a manifest line holds after reading (`evaluation.manifests`): `video` (a path; it may not
exist — that row becomes one error row when it is run, never a crash), `question`, `answer` (a letter for
multiple choice, text otherwise), `options` (a list, multiple choice only), `family` (the benchmark's own
category) and `id`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from acckv_cli.errors import Fail

VIDEO_SUFFIXES = (".mp4", ".MP4", ".mkv", ".webm", ".avi", ".mov")


@dataclass(frozen=True)
class BenchmarkFormat:
    """One public layout: how to turn its annotation data into rows.

    name:   what `--benchmark` takes;
    source: the published layout followed (repository or dataset card, and the version looked at);
    fields: the fields read, as the docs list them;
    read:   (parsed annotation data, media root, file name for messages) → rows.
    """

    name: str
    source: str
    fields: str
    read: Callable[[Any, Path, str], Iterable[dict]]


FORMATS: dict[str, BenchmarkFormat] = {}


def register(fmt: BenchmarkFormat) -> BenchmarkFormat:
    if fmt.name in FORMATS:
        raise ValueError(f"benchmark format {fmt.name!r} is registered twice")
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> BenchmarkFormat:
    """The format called `name`; an unknown name is a one-line usage error listing the known ones."""
    key = name.strip().lower()
    if key not in FORMATS:
        raise Fail(f"unknown benchmark format {name!r}; choose from {', '.join(sorted(FORMATS))}", 2)
    return FORMATS[key]


def load_annotations(path: Path) -> Any:
    """The parsed annotation file: JSON (a list or an object), JSON Lines (a list), or Parquet (a list of rows;
    needs pyarrow, which this project does not install: Video-MME and WorldSense publish Parquet on the hub)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise Fail(f"{path}: reading Parquet needs pyarrow (pip install pyarrow), or convert the file to JSON "
                       "Lines first", 2) from None
        return pq.read_table(path).to_pylist()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise Fail(f"cannot read {str(path)!r}: {exc.strerror if isinstance(exc, OSError) else exc}", 2) from None
    try:
        if suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Fail(f"{path}: not valid JSON{' Lines' if suffix == '.jsonl' else ''} ({exc.msg}, line {exc.lineno})",
                   2) from None


def find_video(root: Path, *stems: str) -> str:
    """The first existing file among root/stem (as given, then with each video suffix); when none exists, the
    first candidate, so that the row's error names where the video was expected."""
    candidates = []
    for stem in stems:
        stem = str(stem).strip()
        if not stem:
            continue
        base = root / stem
        has_suffix = Path(stem).suffix.lower() in {s.lower() for s in VIDEO_SUFFIXES}  # ids may hold dots
        candidates += [base] if has_suffix else [base.with_name(base.name + s) for s in VIDEO_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return str(candidates[0]) if candidates else str(root)


def relative(value: object) -> str:
    """A path from an annotation file, made relative ("./videos/x.mp4" → "videos/x.mp4")."""
    text = str(value).strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text


def need(record: dict, key: str, where: str) -> Any:
    """record[key], or a one-line usage error naming the item and the missing field."""
    value = record.get(key) if isinstance(record, dict) else None
    if value is None or (isinstance(value, str) and not value.strip()):
        raise Fail(f"{where}: missing {key!r}", 2)
    return value


def as_list(value: object, where: str, key: str) -> list:
    """A list field; some layouts store lists as the text of a Python/JSON list (MUSIC-AVQA's "type")."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        import ast
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, (list, tuple)):
            return list(parsed)
    raise Fail(f"{where}: {key!r} must be a list, not {value!r}", 2)


def media_root_for(annotations: Path, media_root: str | os.PathLike | None) -> Path:
    """The folder videos are resolved against: --media-root, or else the annotation file's folder."""
    if media_root is None:
        return annotations.resolve().parent
    root = Path(media_root)
    if not root.is_dir():
        raise Fail(f"--media-root {str(root)!r} is not a folder", 2)
    return root
