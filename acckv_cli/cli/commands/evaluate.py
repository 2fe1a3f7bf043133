"""`acckv eval`: protocols × methods × budgets on SynthAVQA or a manifest; summary, CSV, plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.table import Table

from acckv_cli.evaluation import evaluate as ev
from acckv_cli.evaluation.summary import COLUMNS, calibration, plot_summary, summarise, summarise_families, write_summary
from acckv_cli.cli.commands.batch import check_output
from acckv_cli.errors import Fail
from acckv_cli.options import MethodSpec, RunOptions, parse_budget, parse_protocol
from acckv_cli.terminal import err, notice, out, quiet_libraries

DEFAULT_METHODS = ("full", "acckv", "snapkv", "h2o", "pyramidkv", "lookm", "fastv", "taskfocus", "streamingllm",
                   "random", "uniform", "divprune")
REFERENCE_POINTS = ("oracle",)  # needs evidence: added by default only where every item has it (SynthAVQA)


def run(split: str, clips: int, manifest: str | None, methods: list[str], budgets: str, protocols: str,
        ablation: bool, out_dir: str, data_dir: str, resume: bool, overwrite: bool, suites: list[str],
        opts: RunOptions, as_json: bool, benchmark: str | None = None, media_root: str | None = None) -> None:
    suite_list = list(dict.fromkeys(s.strip() for text in suites for s in text.split(",") if s.strip()))
    for suite in suite_list:
        if suite not in ev.SUITES:
            raise Fail(f"unknown suite {suite!r}; choose from {', '.join(ev.SUITES)}", 2)
    if manifest is not None and suite_list != ["core"]:
        raise Fail("--suite chooses generated SynthAVQA clips; it cannot be combined with --manifest", 2)
    protocol_list = tuple(parse_protocol(p) for p in protocols.split(",") if p.strip())
    if not protocol_list:
        raise Fail("--protocols needs at least one protocol", 2)
    labels = list(methods or DEFAULT_METHODS) + ([] if methods or manifest else list(REFERENCE_POINTS))
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
    if manifest is None and (benchmark is not None or media_root is not None):
        raise Fail(f"{'--benchmark' if benchmark is not None else '--media-root'} needs --manifest FILE (the "
                   "benchmark's annotation file)", 2)
    if clips < 1:
        raise Fail("--clips must be at least 1", 2)
    out_path = Path(out_dir)
    check_output(str(out_path / "results.jsonl"), resume, overwrite, "--out-dir", creates_folder=True)
    # a bad manifest (or benchmark file) fails before the model loads; a missing video only fails its own rows
    items = ev.read_manifest(manifest, benchmark, media_root) if manifest else None
    if items is not None:
        ev.check_evidence(items, labels)  # e.g. the oracle on rows without "evidence": before the model loads
    quiet_libraries()
    lm = opts.load()
    for text in lm.notices:
        notice(text)
    if items is None:
        items = [item for suite in suite_list for item in ev.synthavqa_items(split, clips, Path(data_dir), suite)]
    rows = _run_with_progress(lm, items, labels, budget_list, out_path, protocol_list, resume, opts)
    summary, families = summarise(rows), summarise_families(rows)
    write_summary(summary, out_path, families)
    metric = next((m for m in ("first_word", "choice") if any(m in e for e in summary)), "agreement")
    plot_summary(summary, out_path / "accuracy.png", metric)
    if as_json:
        sys.stdout.write(json.dumps({"summary": summary, "families": families, "calibration": calibration(summary),
                                     "out_dir": str(out_path)}) + "\n")
        return
    out.print(summary_table(summary, lm.name))
    for line in calibration(summary):
        out.print(f"calibration — {line}", highlight=False)
    out.print(f"results: {out_path / 'results.jsonl'}, {out_path / 'summary.csv'}, {out_path / 'accuracy.png'}; "
              f"per family: {out_path / 'summary_families.md'}")


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
