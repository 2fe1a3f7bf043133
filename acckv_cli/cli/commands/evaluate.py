"""`acckv eval`: protocols × methods × budgets on SynthAVQA or a manifest; summary, CSV, plot.

Every option, method spec and the manifest are checked before torch is imported. Results go to
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
from acckv_cli.options import ReportMode, RunOptions, parse_budget, parse_methods, parse_protocol
from acckv_cli.terminal import err, notice, out

DEFAULT_METHODS = ("full", "acckv", "snapkv", "h2o", "pyramidkv", "lookm", "fastv", "taskfocus", "streamingllm",
                   "random")
DEFAULT_ROOT = Path(".acckv") / "eval"
WRITTEN = ("results.jsonl", "summary.csv", "summary.json", "summary.md", "accuracy.png")


@dataclass
class Request:
    labels: list[str]
    budgets: list[str]
    protocols: tuple[str, ...]
    out_dir: Path
    items: list | None  # a manifest's items; None: SynthAVQA, written after the checks


def check(split: str, clips: int, manifest: str | None, methods: list[str], method_options: list[str],
          budgets: list[str], protocols: list[str], ablation: bool, out_dir: str | None, resume: bool,
          overwrite: bool) -> Request:
    """Every argument and the manifest, torch-free: a mistake is one line before any model is loaded."""
    from acckv_cli.evaluation.manifests import read_manifest

    protocol_list = tuple(parse_protocol(p) for p in protocols)
    if not protocol_list:
        raise Fail("--protocol needs at least one protocol", 2)
    specs = parse_methods(methods, method_options, ABLATIONS, default=DEFAULT_METHODS)
    labels = [spec.label for spec in specs]
    if ablation:
        labels += [m for m in ABLATIONS if m not in labels]
        parse_methods(labels, None, ABLATIONS)
    if not budgets:
        raise Fail("--budget needs at least one budget", 2)
    for b in budgets:
        parse_budget(b)
    if manifest is None and split not in ("validation", "test"):
        raise Fail("--split must be validation or test (the train split is for training only)", 2)
    if manifest is not None and not Path(manifest).is_file():
        raise Fail(f"manifest not found: {manifest!r}", 2)
    if clips < 1:
        raise Fail("--clips must be at least 1", 2)
    source = Path(manifest).stem if manifest else f"synthavqa-{split}-{clips}"
    folder = Path(out_dir) if out_dir is not None else DEFAULT_ROOT / source
    check_output(str(folder / "results.jsonl"), resume, overwrite, "--out-dir", creates_folder=True)
    items = read_manifest(manifest) if manifest else None  # a bad manifest fails before the model loads
    return Request(labels, budgets, protocol_list, folder, items)


def run(split: str, clips: int, manifest: str | None, methods: list[str], method_options: list[str],
        budgets: list[str], protocols: list[str], ablation: bool, out_dir: str | None, data_dir: str, resume: bool,
        overwrite: bool, opts: RunOptions, report: ReportMode, as_json: bool) -> None:
    request = check(split, clips, manifest, methods, method_options, budgets, protocols, ablation, out_dir, resume,
                    overwrite)
    from acckv_cli.evaluation import evaluate as ev
    from acckv_cli.evaluation.summary import plot_summary, summarise, summary_tables, write_summary
    from acckv_cli.terminal import quiet_libraries

    quiet_libraries()
    lm = opts.load()
    for text in lm.notices:
        notice(text)
    items = request.items if request.items is not None else ev.synthavqa_items(split, clips, Path(data_dir))
    rows = _run_with_progress(ev, lm, items, request, resume, opts)
    summary = summarise(rows)
    folder = request.out_dir
    write_summary(summary, folder)
    metric = "first_word" if any("first_word" in e for e in summary) else "agreement"
    plot_summary(summary, folder / "accuracy.png", metric)
    files = [str(folder / name) for name in WRITTEN]
    if as_json:
        sys.stdout.write(json.dumps({"summary": summary, "out_dir": str(folder), "files": files}) + "\n")
        return
    if report != ReportMode.none:
        for table in summary_tables(summary, f"answers from the compressed cache — {lm.name}",
                                    full=report == ReportMode.full):
            out.print(table)
    out.print(f"wrote {folder}/: {', '.join(WRITTEN)}", highlight=False)


def _run_with_progress(ev, lm, items, request: Request, resume: bool, opts: RunOptions) -> list[dict]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("evaluating", total=len(items))
        return ev.run_eval(lm, items, request.labels, request.budgets, request.out_dir, request.protocols,
                           resume=resume, max_new_tokens=opts.max_new_tokens, fps=opts.fps,
                           progress=lambda done: bar.advance(task, done))
