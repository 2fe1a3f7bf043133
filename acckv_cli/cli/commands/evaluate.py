"""`acckv eval`: protocols × methods × budgets on SynthAVQA or a manifest; summary, CSV, plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.table import Table

from acckv_cli.evaluation import evaluate as ev
from acckv_cli.evaluation.summary import COLUMNS, plot_summary, summarise, write_summary
from acckv_cli.cli.commands.batch import check_output
from acckv_cli.errors import Fail
from acckv_cli.options import MethodSpec, RunOptions, parse_budget, parse_protocol
from acckv_cli.terminal import err, notice, out, quiet_libraries

DEFAULT_METHODS = ("full", "acckv", "snapkv", "h2o", "pyramidkv", "lookm", "fastv", "taskfocus", "streamingllm",
                   "random")


def run(split: str, clips: int, manifest: str | None, methods: list[str], budgets: str, protocols: str,
        ablation: bool, out_dir: str, data_dir: str, resume: bool, overwrite: bool, opts: RunOptions,
        as_json: bool) -> None:
    protocol_list = tuple(parse_protocol(p) for p in protocols.split(",") if p.strip())
    if not protocol_list:
        raise Fail("--protocols needs at least one protocol", 2)
    labels = list(methods or DEFAULT_METHODS)
    if ablation:
        labels += [m for m in ev.ABLATIONS if m not in labels]
    for label in labels:
        MethodSpec.parse(label, ev.ABLATIONS)  # every spec checked before any work
    budget_list = [b.strip() for b in budgets.split(",") if b.strip()]
    for b in budget_list:
        parse_budget(b)
    if manifest is None and split not in ("validation", "test"):
        raise Fail("--split must be validation or test (the train split is for training only)", 2)
    if manifest is not None and not Path(manifest).is_file():
        raise Fail(f"manifest not found: {manifest!r}", 2)
    if clips < 1:
        raise Fail("--clips must be at least 1", 2)
    out_path = Path(out_dir)
    check_output(str(out_path / "results.jsonl"), resume, overwrite, "--out-dir", creates_folder=True)
    items = ev.read_manifest(manifest) if manifest else None  # a bad manifest fails before the model loads
    if items is not None:
        ev.check_evidence(items, labels)  # e.g. the oracle on rows without "evidence": before the model loads
    quiet_libraries()
    lm = opts.load()
    for text in lm.notices:
        notice(text)
    if items is None:
        items = ev.synthavqa_items(split, clips, Path(data_dir))
    rows = _run_with_progress(lm, items, labels, budget_list, out_path, protocol_list, resume, opts)
    summary = summarise(rows)
    write_summary(summary, out_path)
    metric = "first_word" if any("first_word" in e for e in summary) else "agreement"
    plot_summary(summary, out_path / "accuracy.png", metric)
    if as_json:
        sys.stdout.write(json.dumps({"summary": summary, "out_dir": str(out_path)}) + "\n")
        return
    out.print(summary_table(summary, lm.name))
    out.print(f"results: {out_path / 'results.jsonl'}, {out_path / 'summary.csv'}, {out_path / 'accuracy.png'}")


def _run_with_progress(lm, items, labels, budgets, out_path, protocols, resume, opts: RunOptions) -> list[dict]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("evaluating", total=len(items))
        return ev.run_eval(lm, items, labels, budgets, out_path, protocols, resume=resume,
                           max_new_tokens=opts.max_new_tokens, fps=opts.fps,
                           progress=lambda done: bar.advance(task, done))


def summary_table(summary: list[dict], model: str) -> Table:
    table = Table(title=f"answers from the compressed cache — {model}", title_justify="left")
    columns = [c for c in COLUMNS if any(e.get(c) is not None for e in summary)]
    for c in columns:
        table.add_column(c, justify="left" if c in ("protocol", "method") else "right")
    for e in summary:
        table.add_row(*[_fmt(e.get(c)) for c in columns])
    return table


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
