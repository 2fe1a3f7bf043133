"""`acckv eval`: protocols × methods × budgets on SynthAVQA or a manifest; summary, CSV, plot.

Every option, method spec and the manifest are checked before torch is imported (`check`). Results go to
`.acckv/eval/<source>` by default (ignored by git, never into the repository's tracked `results/`), and the
command names every file it wrote.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from acckv_cli.cli.commands.batch import check_output
from acckv_cli.errors import Fail
from acckv_cli.evaluation.ablations import ABLATIONS
from acckv_cli.evaluation.items import SUITES, Item, check_evidence, read_manifest
from acckv_cli.options import ReportMode, RunOptions, parse_budget, parse_chunk_seconds, parse_methods, parse_protocol
from acckv_cli.terminal import err, notice, out

DEFAULT_METHODS = ("full", "acckv", "snapkv", "h2o", "pyramidkv", "lookm", "fastv", "taskfocus", "streamingllm",
                   "random", "uniform", "divprune")
REFERENCE_POINTS = ("oracle",)  # needs evidence: added by default only where every item has it (SynthAVQA)
DEFAULT_ROOT = Path(".acckv") / "eval"


@dataclass
class Request:
    """What eval was asked, checked."""

    labels: list[str]
    budgets: list[str]
    protocols: tuple[str, ...]
    suites: list[str]
    out_dir: Path
    items: list[Item] | None  # a manifest's items; None: SynthAVQA, generated after the checks
    chunk_seconds: float | None = None  # the step of the stream protocol (None: its default)


def check(split: str, clips: int, manifest: str | None, methods: list[str], method_options: list[str],
          budgets: list[str], protocols: list[str], ablation: bool, out_dir: str | None, resume: bool,
          overwrite: bool, suites: list[str], benchmark: str | None, media_root: str | None,
          chunk_seconds: float | None = None) -> Request:
    """Every argument and the manifest, torch-free: a mistake is one line before any model is imported."""
    suite_list = list(dict.fromkeys(s.strip() for text in suites for s in text.split(",") if s.strip()))
    for suite in suite_list:
        if suite not in SUITES:
            raise Fail(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}", 2)
    if manifest is not None and suite_list != ["core"]:
        raise Fail("--suite chooses generated SynthAVQA clips; it cannot be combined with --manifest", 2)
    protocol_list = tuple(parse_protocol(p) for p in protocols)
    if not protocol_list:
        raise Fail("--protocol needs at least one protocol", 2)
    chunk_seconds = parse_chunk_seconds(chunk_seconds, protocol_list)
    specs = parse_methods(methods, method_options, ABLATIONS, default=DEFAULT_METHODS)
    labels = [spec.label for spec in specs] + ([] if methods or manifest else list(REFERENCE_POINTS))
    if ablation:
        labels += [m for m in ABLATIONS if m not in labels]
    parse_methods(labels, None, ABLATIONS)  # the added ones too, every spec before any work
    if not budgets:
        raise Fail("--budget needs at least one budget", 2)
    for b in budgets:
        parse_budget(b)
    if manifest is None and split not in ("validation", "test"):
        raise Fail("--split must be validation or test (the train split is for training only)", 2)
    if manifest is not None and not Path(manifest).is_file():
        raise Fail(f"manifest not found: {manifest!r}", 2)
    if manifest is None and (benchmark is not None or media_root is not None):
        raise Fail(f"{'--benchmark' if benchmark is not None else '--media-root'} needs --manifest FILE (the "
                   "benchmark's annotation file)", 2)
    if clips < 1:
        raise Fail("--clips must be at least 1", 2)
    source = Path(manifest).stem if manifest else f"synthavqa-{split}-{clips}"
    folder = Path(out_dir) if out_dir is not None else DEFAULT_ROOT / source
    check_output(str(folder / "results.jsonl"), resume, overwrite, "--out-dir", creates_folder=True)
    # a bad manifest (or benchmark file) fails before the model loads; a missing video only fails its own rows
    items = read_manifest(manifest, benchmark, media_root) if manifest else None
    if items is not None:
        check_evidence(items, labels)  # e.g. the oracle on rows without "evidence"
    return Request(labels, budgets, protocol_list, suite_list, folder, items, chunk_seconds)


def run(split: str, clips: int, manifest: str | None, methods: list[str], method_options: list[str],
        budgets: list[str], protocols: list[str], ablation: bool, out_dir: str | None, data_dir: str, resume: bool,
        overwrite: bool, suites: list[str], opts: RunOptions, report: ReportMode, as_json: bool,
        benchmark: str | None = None, media_root: str | None = None, chunk_seconds: float | None = None) -> None:
    request = check(split, clips, manifest, methods, method_options, budgets, protocols, ablation, out_dir, resume,
                    overwrite, suites, benchmark, media_root, chunk_seconds)
    from acckv_cli.evaluation import evaluate as ev
    from acckv_cli.evaluation.summary import calibration, plot_summary, summarise, summarise_families, write_summary
    from acckv_cli.evaluation.tables import summary_tables
    from acckv_cli.terminal import quiet_libraries

    quiet_libraries()
    lm = opts.load()
    for text in lm.notices:
        notice(text)
    items = request.items
    if items is None:
        items = [item for suite in request.suites for item in ev.synthavqa_items(split, clips, Path(data_dir), suite)]
    rows = _run_with_progress(ev, lm, items, request, resume, opts)
    summary, families = summarise(rows), summarise_families(rows)
    folder = request.out_dir
    written = ["results.jsonl", *write_summary(summary, folder, families), "accuracy.png"]
    metric = next((m for m in ("first_word", "choice") if any(m in e for e in summary)), "agreement")
    plot_summary(summary, folder / "accuracy.png", metric)
    if as_json:
        sys.stdout.write(json.dumps({"summary": summary, "families": families, "calibration": calibration(summary),
                                     "out_dir": str(folder), "files": [str(folder / n) for n in written]}) + "\n")
        return
    if report != ReportMode.none:
        for table in summary_tables(summary, f"answers from the compressed cache — {lm.name}",
                                    full=report == ReportMode.full):
            out.print(table)
    for line in calibration(summary):
        out.print(f"calibration — {line}", highlight=False)
    out.print(f"wrote {folder}/: {', '.join(written)}", highlight=False)


def _run_with_progress(ev, lm, items: list[Item], request: Request, resume: bool, opts: RunOptions) -> list[dict]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("evaluating", total=len(items))
        return ev.run_eval(lm, items, request.labels, request.budgets, request.out_dir, request.protocols,
                           resume=resume, max_new_tokens=opts.max_new_tokens, fps=opts.fps,
                           progress=lambda done: bar.advance(task, done), chunk_seconds=request.chunk_seconds)
