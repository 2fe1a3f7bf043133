"""Manifests: the JSONL/CSV lists of {video, question[, answer, id, family]} that `batch` and `eval` read."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from acckv_cli.errors import Fail


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
