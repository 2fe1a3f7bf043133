"""Manifests: the JSONL/CSV lists of {video, question[, answer, id, family]} that `batch` and `eval` read."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from acckv_cli.errors import Fail, UsageError


def read_manifest_rows(manifest: Path) -> list[dict]:
    """Rows of a JSONL or CSV manifest (`video` required; `question`, `answer`, `id`, `family` optional), each
    with its line number (`_line`) and its video resolved against the manifest's folder. Every problem is a
    one-line usage error naming the file and line, raised before any model is loaded."""
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
        raise Fail(f"{str(manifest)!r} is neither a folder nor a .jsonl/.csv manifest", 2)
    base = manifest.parent
    for row in rows:
        video = row.get("video")
        if not isinstance(video, str) or not video.strip():
            raise Fail(f"{manifest}:{row['_line']}: missing \"video\"", 2)
        row["video"] = video if os.path.isabs(video) else str(base / video)
    return rows


@dataclass
class Item:
    id: str
    video: str
    question: str
    answer: str | None = None
    family: str | None = None
    evidence: tuple[float, float] | None = None  # seconds [start, end) holding the answer (SynthAVQA)


def read_manifest(path: str | Path) -> list[Item]:
    """The items of a JSONL or CSV manifest (the reader `batch` uses); every row needs a question here, and may
    carry `evidence`: [start, end] seconds of the clip that hold the answer (long SynthAVQA manifests do)."""
    path = Path(path)
    items = []
    for row in read_manifest_rows(path):
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise UsageError(f"{path}:{row['_line']}: missing \"question\" (eval asks each row's own question)")
        answer = row.get("answer")
        items.append(Item(str(row.get("id") or f"{path.stem}-{row['_line']}"), row["video"], question.strip(),
                          None if answer in (None, "") else str(answer), row.get("family") or None,
                          _evidence(row.get("evidence"), path, row["_line"])))
    return items


def _evidence(value, path: Path, line: int) -> tuple[float, float] | None:
    """A manifest row's evidence span [start, end) in seconds, or None when the row has none."""
    if value in (None, ""):
        return None
    try:
        start, end = (float(x) for x in (json.loads(value) if isinstance(value, str) else value))
    except (TypeError, ValueError):
        raise UsageError(f"{path}:{line}: \"evidence\" must be [start, end] in seconds, not {value!r}") from None
    return start, end
