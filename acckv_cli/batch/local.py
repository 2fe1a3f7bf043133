"""`acckv batch`: many clips × questions into one JSONL (or CSV) file, resumable and shardable.

Work list: a folder (searched recursively for the video and audio extensions of `acckv_cli.media.probe`; hidden
files and folders skipped), a JSONL/CSV manifest of rows {video, question[, answer, options, id]} or a public
benchmark's own annotation file (`--benchmark NAME`, `acckv_cli.evaluation.formats`), crossed with
`--question`/`--questions` where a row (or the folder) has no question. Items are sorted by video path
(stable, so a manifest keeps its row order per video) and numbered; `--shard I/N` keeps the items whose
number is I modulo N.

Encode once, ask many: each video is decoded, its media run through the processor and encoders, and
prefilled once for all its questions (`pipeline.iter_answers` over one `session.ClipSession`); under the
`context` protocol the media cache is also compressed once, under `query-aware` each question compresses
its own copy of it.

Output: one line per item, written with a single `write()` of the complete line on an O_APPEND file
descriptor, so a killed run leaves only complete lines (a partial last line, should one exist anyway, is
cut off by `--resume`). Each line carries a stable `key` (sha1 of video path + question + method + budget +
protocol) that `--resume` uses to skip finished items.

`--workers N` runs the same per-video code (`run_video`) on a Ray cluster, this process still the only
writer: `acckv_cli.batch.ray_workers`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from acckv_cli.errors import Fail
from acckv_cli.evaluation.choices import format_question, letter, parse_choice
from acckv_cli.evaluation.manifests import read_rows
from acckv_cli.terminal import classify, notice
from acckv_cli.media.probe import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from acckv_cli.options import DEFAULT_PROTOCOL

MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS
FORMATS = ("jsonl", "csv")
CSV_COLUMNS = ["id", "key", "video", "question", "options", "expected", "method", "budget", "protocol", "answer",
               "choice", "error",
               "kv_bytes", "kv_bytes_full", "kv_kept_ratio", "media_kept_ratio", "video_kept_ratio",
               "audio_kept_ratio", "text_kept_ratio", "tokens_video", "tokens_audio", "tokens_text", "decode_s",
               "encode_s", "media_prefill_s", "question_prefill_s", "generate_s", "total_s", "reused",
               "modalities", "notices"]


@dataclass
class Item:
    index: int            # position in the sorted work list (before sharding)
    id: str
    video: str            # path as found in the folder, or resolved against the manifest's folder
    question: str
    expected: str | None  # the manifest's `answer`, if any (a letter for multiple choice)
    key: str = ""
    options: list[str] | None = None  # multiple choice: the options' texts

    @property
    def prompt(self) -> str:
        """What the model is asked: the question, or the question with its lettered options (`choices`)."""
        return format_question(self.question, self.options) if self.options else self.question


@dataclass
class Options:
    """How every item of a run is answered (the method as a registry name and its hyperparameters)."""

    method: str = "acckv"
    budget: object = None          # methods.Budget
    protocol: str = DEFAULT_PROTOCOL
    fps: float = 2.0
    max_pixels: int | None = None
    max_new_tokens: int = 32
    method_params: dict = field(default_factory=dict)
    method_label: str | None = None  # as written on the command line (`acckv:tau=0.9`); default: `method`
    official_fps: bool = False
    chunk_seconds: float | None = None  # the step of --protocol stream (None: its default)

    @property
    def label(self) -> str:
        return self.method_label or self.method


@dataclass
class Tally:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    kept_ratios: list[float] = field(default_factory=list)
    seconds: float = 0.0


def item_key(video: str, question: str, method: str, budget: str, protocol: str = DEFAULT_PROTOCOL) -> str:
    """Stable identity of an item: absolute video path, question, method, budget and protocol."""
    raw = json.dumps([os.path.abspath(video), question, method, budget, protocol], ensure_ascii=False)
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()[:20]


# ------------------------------------------------------------------------------------------ work list


def _folder_rows(folder: Path, extensions: frozenset[str] | set[str] | None = None) -> list[dict]:
    from acckv_cli.answer.cachefile import SUFFIX

    extensions = MEDIA_EXTENSIONS | {SUFFIX} if extensions is None else extensions  # clips and their caches
    rows = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in extensions:
            continue
        if path.is_dir():
            continue
        rows.append({"video": str(folder / rel), "rel": rel.as_posix()})
    rows.sort(key=lambda r: r["rel"])
    return rows


def media_files(folder: str | Path) -> list[Path]:
    """Video and audio files under `folder` (recursively, hidden ones skipped), sorted by relative path."""
    return [Path(row["video"]) for row in _folder_rows(Path(folder), MEDIA_EXTENSIONS)]


def collect_items(source: str, questions: list[str] | None, method: str, budget: str,
                  protocol: str = DEFAULT_PROTOCOL, benchmark: str | None = None,
                  media_root: str | None = None) -> tuple[list[Item], int]:
    """The sorted, numbered work list and the number of duplicate items dropped (`benchmark`: read `source` as
    that benchmark's annotation file; `media_root`: where a manifest's videos are)."""
    from acckv_cli.answer.questions import check_question
    from acckv_cli.answer.cachename import is_cache_path

    path = Path(source)
    if not path.exists():
        raise Fail(f"batch input not found: {source!r}", 2)
    # a folder (of clips and/or .acckv files) or one .acckv file: the questions come from the command line
    is_folder = path.is_dir() or is_cache_path(path)
    if is_folder and (benchmark is not None or media_root is not None):
        raise Fail(f"{'--benchmark' if benchmark is not None else '--media-root'} needs a manifest or annotation "
                   "file as INPUT, not a folder", 2)
    rows = (_folder_rows(path) if path.is_dir() else [{"video": str(path), "rel": path.name}] if is_folder
            else read_rows(path, benchmark, media_root))
    if is_folder and not questions:
        raise Fail("a folder has no questions: pass --question \"...\" or --questions FILE", 2)
    entries = []
    for n, row in enumerate(rows):
        own = row.get("question")
        own = own.strip() if isinstance(own, str) and own.strip() else None
        asked = [own] if own else (questions or [])
        if not asked:
            raise Fail(f"{source}:{row['_line']}: no question; add a \"question\" field or pass --question", 2)
        expected = row.get("answer")
        base_id = str(row["id"]) if row.get("id") not in (None, "") else (row["rel"] if is_folder else f"row{row['_line']}")
        for j, q in enumerate(asked):
            item_id = base_id if len(asked) == 1 else f"{base_id}#{j}"
            entries.append(Item(-1, item_id, row["video"], check_question(q),
                                None if expected in (None, "") else str(expected), options=row.get("options")))
    entries.sort(key=lambda it: it.video)  # stable: rows / questions keep their order within a video
    items, seen = [], set()
    for it in entries:
        it.key = item_key(it.video, it.prompt, method, budget, protocol)  # the options are part of what is asked
        if it.key in seen:
            continue
        seen.add(it.key)
        it.index = len(items)
        items.append(it)
    return items, len(entries) - len(items)


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise Fail(f"--shard must be I/N with 0 ≤ I < N (e.g. 0/4), not {text!r}", 2)
    return int(m.group(1)), int(m.group(2))


def shard(items: list[Item], i: int, n: int) -> list[Item]:
    return [it for it in items if it.index % n == i]


# ------------------------------------------------------------------------------------------ output


def finished_keys(path: str, fmt: str) -> set[str]:
    """Keys of the items already in an output file; a partial last line is cut off first."""
    if not os.path.exists(path):
        return set()
    with open(path, "rb") as fh:
        data = fh.read()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as fh:
            fh.truncate(cut)
        notice(f"removed a partial last line ({len(data) - cut} bytes) from {path}")
        data = data[:cut]
    text = data.decode("utf-8", errors="replace")
    keys: set[str] = set()
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        if rows and "key" not in rows[0]:
            raise Fail(f"{path} is not an `acckv batch` CSV file (no 'key' column); use --overwrite or another --out", 2)
        if rows:
            col = rows[0].index("key")
            keys = {r[col] for r in rows[1:] if len(r) > col}
        return keys
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            keys.add(json.loads(line)["key"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise Fail(f"{path}:{n}: not an `acckv batch` result line; use --overwrite or another --out", 2) from None
    return keys


class LineWriter:
    """Appends complete lines, each with one `os.write` on an O_APPEND descriptor (no user-space buffer)."""

    def __init__(self, path: str, fmt: str, truncate: bool):
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self.fd = os.open(path, flags, 0o644)
        self.fmt = fmt
        if fmt == "csv" and os.fstat(self.fd).st_size == 0:
            self._write(self._csv_line(CSV_COLUMNS))

    def write(self, record: dict) -> None:
        if self.fmt == "csv":
            self._write(self._csv_line([_csv_cell(v) for v in flat_record(record).values()]))
        else:
            self._write(json.dumps(record, ensure_ascii=False) + "\n")

    @staticmethod
    def _csv_line(cells: list) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        return buf.getvalue()

    def _write(self, line: str) -> None:
        data = line.encode("utf-8")
        written = os.write(self.fd, data)  # regular files: the whole line in one call
        while written < len(data):  # not expected on a local file system; never leave half a line
            data = data[written:]
            written = os.write(self.fd, data)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> "LineWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _csv_cell(value) -> str:
    if value is None:
        return ""
    text = str(value)
    return " ".join(text.splitlines()) if ("\n" in text or "\r" in text) else text  # one record per line


def flat_record(record: dict) -> dict:
    """The CSV columns of a result record."""
    kept, tokens, tm = record.get("kept") or {}, record.get("tokens") or {}, record.get("timings") or {}
    flat = {"id": record["id"], "key": record["key"], "video": record["video"], "question": record["question"],
            "options": " | ".join(record.get("options") or []) or None,
            "expected": record.get("expected"), "method": record["method"], "budget": record["budget"],
            "protocol": record.get("protocol"), "answer": record.get("answer"), "choice": record.get("choice"),
            "error": record.get("error"),
            "kv_bytes": record.get("kv_bytes"), "kv_bytes_full": record.get("kv_bytes_full"),
            "kv_kept_ratio": kept.get("kv"), "media_kept_ratio": kept.get("media"),
            "video_kept_ratio": kept.get("video"), "audio_kept_ratio": kept.get("audio"),
            "text_kept_ratio": kept.get("text"), "tokens_video": tokens.get("video"),
            "tokens_audio": tokens.get("audio"), "tokens_text": tokens.get("text"),
            "decode_s": tm.get("decode_s"), "encode_s": tm.get("encode_s"),
            "media_prefill_s": tm.get("media_prefill_s"), "question_prefill_s": tm.get("question_prefill_s"),
            "generate_s": tm.get("generate_s"), "total_s": tm.get("total_s"),
            "reused": " ".join(record.get("reused") or []),
            "modalities": " ".join(record.get("modalities") or []), "notices": "; ".join(record.get("notices") or [])}
    assert list(flat) == CSV_COLUMNS
    return flat


# ------------------------------------------------------------------------------------------ running


def _base_record(item: Item, options: Options) -> dict:
    return {"id": item.id, "key": item.key, "video": item.video, "question": item.question,
            **({"options": item.options} if item.options else {}),
            "expected": item.expected, "method": options.label,
            "budget": options.budget.number if options.budget is not None else None,
            "protocol": options.protocol, "answer": None, "error": None}


def _error_record(item: Item, options: Options, exc: Exception, seconds: float) -> dict:
    return {**_base_record(item, options), "error": str(classify(exc)), "kv_bytes": None, "kv_bytes_full": None,
            "kept": None, "tokens": None, "timings": {"total_s": round(seconds, 4)}, "reused": None,
            "modalities": None, "notices": []}


def _result_record(item: Item, options: Options, result, lm, seconds: float) -> dict:
    summary = result.report.summary()
    timings = {**result.timings, "total_s": round(seconds, 4)}
    chosen = {"choice": letter(parse_choice(result.answer, item.options))} if item.options else {}  # None: unread
    return {**_base_record(item, options), "answer": result.answer, **chosen, "budget": result.budget.number,
            "kv_bytes": result.kv["kv_bytes"], "kv_bytes_full": result.kv["kv_bytes_full"],
            "kept": {"kv": summary["kv_kept_ratio"], "media": summary["media_kept_ratio"],
                     "video": summary["video_kept_ratio"], "audio": summary["audio_kept_ratio"],
                     "text": summary["text_kept_ratio"]},
            "tokens": result.tokens, "timings": timings, "reused": result.reused,
            "modalities": result.media["modalities"],
            "notices": [n for n in result.notices if n not in lm.notices]}


def group_by_video(items: list[Item]) -> list[list[Item]]:
    """Runs of consecutive items of one video (the work list is sorted by video, so one run per video)."""
    groups: list[list[Item]] = []
    for item in items:
        if groups and groups[-1][0].video == item.video:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def run_video(lm, items: list[Item], options: Options):
    """Yield one record per item of one video, in order: decode, encoders and media prefill run once.

    The one per-video code path: the local runner (`run_items`) and the Ray workers (`acckv_cli.batch.ray_workers`)
    both call it. A failure (bad file, model error) becomes that item's `error`; nothing is raised except
    KeyboardInterrupt and SystemExit. `total_s` of an item is the time spent on it, not on its consumer.
    """
    from acckv_cli.answer.cachename import is_cache_path
    from acckv_cli.answer.pipeline import STREAM, decode_for_model, iter_answers

    t0 = time.perf_counter()
    from_file = is_cache_path(items[0].video)  # a saved cache: its own method, budget and protocol apply
    try:
        if from_file:
            from acckv_cli.answer.indexed import iter_file_answers
            results = iter_file_answers(lm, items[0].video, [it.prompt for it in items], options.max_new_tokens)
        else:
            decoded = decode_for_model(lm, items[0].video, options.fps, options.max_pixels, options.official_fps,
                                       lazy_frames=options.protocol == STREAM)  # streamed: frames per chunk
            results = iter_answers(lm, decoded, [it.prompt for it in items], options.method, options.budget,
                                   options.protocol, options.max_pixels, options.max_new_tokens,
                                   options.method_params, options.chunk_seconds)
    except Exception as exc:  # one bad file is one error per item, never the end of the run
        results = iter([exc] * len(items))
    for item, result in zip(items, results):
        seconds = time.perf_counter() - t0
        if isinstance(result, Exception):
            yield _error_record(item, options, result, seconds)
        else:
            record = _result_record(item, options, result, lm, seconds)
            if from_file:
                record.update(method=result.method, protocol=result.protocol)
            yield record
        t0 = time.perf_counter()


def add_to_tally(tally: Tally, record: dict) -> None:
    """Add one written record to the tally."""
    if record["error"] is None:
        tally.done += 1
        tally.kept_ratios.append(record["kept"]["kv"])
    else:
        tally.failed += 1


def run_items(lm, items: list[Item], options: Options, write, on_item=None) -> Tally:
    """Answer every item, decoding, encoding and prefilling each video once for all its consecutive items.

    `write(record)` is called once per item, in order; `on_item(item)` after it (progress).
    A failure (bad file, model error) becomes that item's `error`; nothing is raised except
    KeyboardInterrupt and SystemExit.
    """
    tally = Tally()
    start = time.perf_counter()
    for group in group_by_video(items):
        for item, record in zip(group, run_video(lm, group, options)):
            write(record)
            add_to_tally(tally, record)
            if on_item is not None:
                on_item(item)
    tally.seconds = time.perf_counter() - start
    return tally
