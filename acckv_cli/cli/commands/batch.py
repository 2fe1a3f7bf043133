"""`acckv batch`: validate everything before the model loads, then run locally or on Ray, then summarise."""

from __future__ import annotations

import contextlib
import logging
import os

from acckv_cli.batch.local import (LineWriter, Options, Tally, collect_items, finished_keys, parse_shard, run_items,
                             shard)
from acckv_cli.errors import Fail
from acckv_cli.options import Format, MethodSpec, RunOptions, parse_budget, parse_chunk_seconds, parse_protocol
from acckv_cli.answer.questions import read_questions
from acckv_cli.terminal import err, new_table, notice, out, percent, quiet_libraries


def run(source: str, out_path: str, question: str | None, questions_file: str | None, fmt: Format,
        resume: bool, overwrite: bool, shard_text: str | None, opts: RunOptions, spec: MethodSpec, budget: str | None,
        protocol: str, workers: int | None = None, ray_address: str | None = None,
        gpus_per_worker: float | None = None, cpus_per_worker: float | None = None, benchmark: str | None = None,
        media_root: str | None = None, chunk_seconds: float | None = None) -> None:
    """With `workers` the items run on a Ray cluster (`acckv_cli.batch.ray_workers`); the driver still writes `--out`."""
    protocol = parse_protocol(protocol)
    chunk_seconds = parse_chunk_seconds(chunk_seconds, [protocol])
    if question is not None and questions_file is not None:
        raise Fail("pass --question or --questions, not both", 2)
    shard_i, shard_n = parse_shard(shard_text)
    ray_cfg = _ray_config(workers, ray_address, gpus_per_worker, cpus_per_worker, opts)
    parsed_budget = parse_budget(budget, spec)  # `full`: 1, whatever -b says (it keeps every entry)
    if budget is not None and spec.name == "full":
        notice("full keeps every entry: --budget is ignored")
    questions = [question] if question is not None else (read_questions(questions_file) if questions_file else None)
    items, duplicates = collect_items(source, questions, spec.label, str(parsed_budget), protocol, benchmark,
                                      media_root)
    check_output(out_path, resume, overwrite)

    mine = shard(items, shard_i, shard_n)
    finished = finished_keys(out_path, fmt.value) if resume else set()
    todo = [it for it in mine if it.key not in finished]
    if duplicates:
        notice(f"{duplicates} duplicate item(s) (same video and question) listed once")
    lm = None
    if todo and ray_cfg is None:
        quiet_libraries()
        lm = opts.load()
        for text in lm.notices:
            notice(text)
    tally = Tally(skipped=len(mine) - len(todo))
    with contextlib.ExitStack() as stack:
        ray = None
        if todo and ray_cfg is not None:  # before the output file: a cluster without room is a usage error
            from acckv_cli.batch import ray_workers as ray_batch
            stats = ray_batch.RayStats()
            ray = stack.enter_context(ray_batch.cluster(ray_cfg, logging.getLogger("acckv_cli").isEnabledFor(
                logging.DEBUG)))
        writer = stack.enter_context(LineWriter(out_path, fmt.value, truncate=overwrite))
        if todo:
            label = " ".join(filter(None, [f"shard {shard_i}/{shard_n}" if shard_n > 1 else "",
                                           f"on {ray_cfg.workers} Ray worker(s)" if ray_cfg else ""]))
            options = Options(spec.name, parsed_budget, protocol, opts.fps, opts.max_pixels, opts.max_new_tokens,
                              spec.params, spec.label, opts.official_fps, chunk_seconds)
            with _progress() as bar:
                task = bar.add_task(label, total=len(todo))
                advance = lambda item: bar.advance(task)  # noqa: E731
                try:
                    if ray is None:
                        ran = run_items(lm, todo, options, writer.write, on_item=advance)
                    else:
                        ran = ray_batch.run(todo, options, writer.write, ray_cfg, on_item=advance, stats=stats,
                                            ray=ray)
                except KeyboardInterrupt:
                    bar.stop()
                    raise Fail(f"interrupted; finished lines are in {out_path}: rerun with --resume to continue",
                               130) from None
            tally.done, tally.failed, tally.kept_ratios, tally.seconds = (ran.done, ran.failed, ran.kept_ratios,
                                                                          ran.seconds)
            if ray is not None and (stats.deaths or stats.retried or stats.gave_up):
                notice(f"{stats.deaths} Ray worker failure(s); {stats.retried} item(s) retried on another worker, "
                       f"{stats.gave_up} given up")
    out.print(summary_table(tally, len(mine), out_path))


def check_output(out_path: str, resume: bool, overwrite: bool, what: str = "--out", creates_folder: bool = False) -> None:
    """The same rule for every command that writes results: never clobber without --overwrite (nor with
    --resume as well). `creates_folder`: the command makes the folder of `out_path` itself."""
    if resume and overwrite:
        raise Fail("--resume and --overwrite exclude each other", 2)
    if os.path.isdir(out_path):
        raise Fail(f"{what} {out_path!r} is a directory", 2)
    if os.path.exists(out_path) and not (resume or overwrite):
        raise Fail(f"{out_path!r} exists: pass --resume to continue it or --overwrite to replace it", 2)
    parent = os.path.dirname(os.path.abspath(out_path))
    if creates_folder and os.path.exists(parent) and not os.path.isdir(parent):
        raise Fail(f"{what} {parent!r} is not a directory", 2)
    if not creates_folder and not os.path.isdir(parent):
        raise Fail(f"folder of {what} does not exist: {parent!r}", 2)


def _ray_config(workers, address, gpus_per_worker, cpus_per_worker, opts: RunOptions):
    """The Ray run's settings, checked; None for a local run (Ray options without --workers are an error)."""
    if workers is None:
        given = [name for name, value in (("--ray-address", address), ("--gpus-per-worker", gpus_per_worker),
                                           ("--cpus-per-worker", cpus_per_worker)) if value is not None]
        if given:
            raise Fail(f"{given[0]} needs --workers N (the number of Ray workers)", 2)
        return None
    from acckv_cli.batch.ray_workers import RayConfig, check_config, import_ray

    cfg = RayConfig(workers, address.strip() if address else address, gpus_per_worker or 0.0,
                    1.0 if cpus_per_worker is None else cpus_per_worker, opts.model, opts.device.value,
                    opts.dtype.value)
    check_config(cfg)
    import_ray()  # the install hint before any work or output file
    return cfg


def _progress():
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    return Progress(TextColumn("[bold]batch[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err)


def summary_table(tally: Tally, total: int, out_path: str):
    table = new_table(f"batch summary → {out_path}", "items", "done", "failed", "skipped (resumed)", "time",
                      "mean KV kept")
    mean = percent(sum(tally.kept_ratios) / len(tally.kept_ratios)) if tally.kept_ratios else "–"
    table.add_row(str(total), str(tally.done), str(tally.failed), str(tally.skipped), f"{tally.seconds:.1f} s", mean)
    return table
