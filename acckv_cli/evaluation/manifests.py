"""Manifests: the JSONL/CSV lists of {video, question[, answer, options, id, family]} that `batch` and `eval`
read, and the public benchmarks' own annotation files read into the same rows (`evaluation.formats`)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from acckv_cli.errors import Fail
from acckv_cli.evaluation.choices import LETTERS, answer_index, strip_letters


def read_rows(path: str | os.PathLike, benchmark: str | None = None,
              media_root: str | os.PathLike | None = None) -> list[dict]:
    """Rows of a manifest, or of a benchmark's annotation file when `benchmark` names its layout; videos
    resolved against `media_root` (default: the file's folder). Multiple-choice rows come out with `options`
    as bare texts and `answer` as the letter (`choice_fields`). Every problem with the file is a one-line
    usage error raised before any model loads; a video that does not exist is not (its rows fail alone)."""
    path = Path(path)
    if benchmark is not None:
        from acckv_cli.evaluation.formats import read_benchmark
        rows = read_benchmark(benchmark, path, media_root)
    else:
        rows = read_manifest_rows(path, media_root)
    for row in rows:
        choice_fields(row, f"{path}:{row['_line']}")
    return rows


def read_manifest_rows(manifest: Path, media_root: str | os.PathLike | None = None) -> list[dict]:
    """Rows of a JSONL or CSV manifest (`video` required; `question`, `answer`, `options`/`choices`, `id`,
    `family` optional), each with its line number (`_line`) and its video resolved against `media_root`, or
    else the manifest's folder. Every problem is a one-line usage error naming the file and line, raised
    before any model is loaded."""
    suffix = manifest.suffix.lower()
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise Fail(f"cannot read manifest {str(manifest)!r}: {exc.strerror if isinstance(exc, OSError) else exc}", 2)
    rows: list[dict] = []
    if suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise Fail(f"{manifest}:{n}: not valid JSON ({exc.msg})", 2) from None
            if not isinstance(row, dict):
                raise Fail(f"{manifest}:{n}: each line must be a JSON object with a \"video\" field", 2)
            rows.append({**row, "_line": n})
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "video" not in reader.fieldnames:
            raise Fail(f"{manifest}: the CSV header must have a 'video' column (and 'question', 'answer', 'id')", 2)
        rows = [{**row, "_line": n} for n, row in enumerate(reader, 2)]
    else:
        raise Fail(f"{str(manifest)!r} is neither a folder nor a .jsonl/.csv manifest "
                   "(a benchmark's own file needs --benchmark NAME)", 2)
    if media_root is not None and not Path(media_root).is_dir():
        raise Fail(f"--media-root {str(media_root)!r} is not a folder", 2)
    base = Path(media_root) if media_root is not None else manifest.parent
    for row in rows:
        video = row.get("video")
        if not isinstance(video, str) or not video.strip():
            raise Fail(f"{manifest}:{row['_line']}: missing \"video\"", 2)
        row["video"] = video if os.path.isabs(video) else str(base / video)
    return rows


def _options(value, where: str) -> list[str] | None:
    """A row's options: a list of strings, or in a CSV cell a JSON list or texts separated by " | "."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [part.strip() for part in text.split("|")]
        except json.JSONDecodeError:
            raise Fail(f"{where}: \"options\" is not a JSON list: {text[:60]!r}", 2) from None
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise Fail(f"{where}: \"options\" must be a list of strings", 2)
    options = [str(v).strip() for v in value]
    if not 2 <= len(options) <= len(LETTERS) or not all(options):
        raise Fail(f"{where}: a multiple-choice row needs 2 to {len(LETTERS)} non-empty options, "
                   f"not {len(options)}", 2)
    return options


def choice_fields(row: dict, where: str) -> None:
    """Make a row with `options` (or `choices`) a multiple-choice row, in place: options as bare texts
    (benchmarks' "A. " prefixes stripped, since the prompt adds its own letters) and the answer — a letter,
    an index or an option's text — as the option's letter. An answer that names no option is a usage error:
    it would score every answer wrong."""
    options = _options(row.get("options", row.get("choices")), where)
    row.pop("choices", None)
    if options is None:
        row.pop("options", None)
        return
    row["options"] = options = strip_letters(options)
    answer = row.get("answer")
    if answer in (None, ""):
        return
    index = answer_index(answer, options)
    if index is None:
        raise Fail(f"{where}: the answer {answer!r} is neither a letter nor the text of one of the "
                   f"{len(options)} options", 2)
    row["answer"] = LETTERS[index]
