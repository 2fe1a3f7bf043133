"""The `acckv` command line (Typer). Thin: parsing, error mapping and rendering only.

Exit codes: 0 success, 2 usage errors (bad options, unusable input files), 1 runtime failures.
Every expected error is one line on stderr; `--verbose` adds the traceback through `logging`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from enum import Enum
from typing import Optional

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Audio-video question answering with Qwen2.5-Omni and AccKV KV-cache compression.")
out = Console()                 # stdout: human output, or exactly one JSON object with --json
err = Console(stderr=True)      # notices, progress, errors
log = logging.getLogger("acckv_cli")


# Options shared by the commands that run the model (one definition, one help text).
MODEL_OPTION = typer.Option(None, "--model", help="Hub id (already cached) or local folder of a Qwen2.5-Omni "
                                                  "checkpoint; default: the built-in model.")
METHOD_OPTION = typer.Option("acckv", "--method", help="KV compression method (see `acckv methods`).")
BUDGET_OPTION = typer.Option("0.2", "--budget", help="Media entries kept per layer: a ratio of the media tokens (0.2, "
                                                      "20%) or a count (160); text is always kept on top.")
DEVICE_OPTION = typer.Option("auto", "--device", help="auto | cpu | cuda")
DTYPE_OPTION = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16")
FPS_OPTION = typer.Option(2.0, "--fps", help="Frames sampled per second (at least 1, as Qwen's 2-s chunks need).")
MAX_PIXELS_OPTION = typer.Option(None, "--max-pixels", help="Pixel cap per frame (default: the model's, at most 768·28²).")
MAX_NEW_TOKENS_OPTION = typer.Option(32, "--max-new-tokens", help="Longest answer in tokens.")


class ReportMode(str, Enum):
    compact = "compact"
    full = "full"
    none = "none"


class Fail(Exception):
    """An expected failure with its exit code; the message is shown as one line."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _classify(exc: Exception) -> Fail:
    """Map known exceptions to one-line messages and exit codes."""
    from acckv_cli.media import MediaError
    from acckv_cli.methods import BudgetError, CompressionError
    from acckv_cli.model import ModelUnavailable
    from acckv_cli.pipeline import UsageError
    from acckv_cli.session import ProtocolError

    if isinstance(exc, Fail):
        return exc
    if isinstance(exc, (MediaError, UsageError, BudgetError, ProtocolError)):
        return Fail(str(exc), 2)
    if isinstance(exc, (ModelUnavailable, CompressionError)):
        return Fail(str(exc), 1)
    if isinstance(exc, MemoryError):
        return Fail("out of memory: lower --max-pixels or --fps, or use a shorter clip", 1)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return Fail(f"unexpected {type(exc).__name__}: {first} (rerun with --verbose for details)", 1)


def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except typer.Exit:
        raise
    except Exception as exc:  # every failure becomes one line and an exit code, never a traceback
        log.debug("failure", exc_info=True)
        fail = _classify(exc)
        err.print(f"[red]error:[/red] {fail}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(fail.code) from None


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging and tracebacks on stderr.")):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def _parse_budget(text: str):
    from acckv_cli.methods import Budget
    return Budget.parse(text)


PROTOCOL_HELP = ("Where the cache is compressed relative to the question: query-aware (media + question "
                 "compressed, then the assistant header and the answer run through the compressed cache), "
                 "context (media compressed before any question; one compressed cache serves every question) or "
                 "prefill (the whole prompt prefilled before compressing: the first answer token comes from the "
                 "full cache, so short answers cannot see compression) or stream (long clips: decoded, encoded "
                 "and prefilled 2 s at a time, the cache compressed after each chunk so memory stays flat; then "
                 "as context).")


@app.command()
def ask(
    video: str = typer.Argument(..., help="Video (mp4, mkv, webm, mov, avi) or audio file (wav, flac, mp3, ogg)."),
    questions: Optional[list[str]] = typer.Argument(None, help="One or more questions about the clip."),
    questions_file: Optional[str] = typer.Option(None, "--questions", help="File with one question per line "
                                                                           "(asked after any given as arguments)."),
    model: Optional[str] = MODEL_OPTION,
    method: str = METHOD_OPTION,
    budget: str = BUDGET_OPTION,
    protocol: str = typer.Option("query-aware", "--protocol", help=PROTOCOL_HELP),
    device: str = DEVICE_OPTION,
    dtype: str = DTYPE_OPTION,
    fps: float = FPS_OPTION,
    max_pixels: Optional[int] = MAX_PIXELS_OPTION,
    max_new_tokens: int = MAX_NEW_TOKENS_OPTION,
    report: ReportMode = typer.Option(ReportMode.compact, help="Retention table: compact, full (every layer) or none."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per question (JSON Lines) on stdout."),
):
    """Answer QUESTIONS about VIDEO from the compressed KV cache and show what it kept.

    The clip is decoded, encoded and its media prefilled once for all questions.
    """
    _run(_ask, video, questions or [], questions_file, model, method, budget, protocol, device, dtype, fps,
         max_pixels, max_new_tokens, report, as_json)


def _check_options(device: str, dtype: str, fps: float, max_pixels: Optional[int], max_new_tokens: int) -> None:
    if device not in ("auto", "cpu", "cuda"):
        raise Fail(f"--device must be auto, cpu or cuda, not {device!r}", 2)
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise Fail(f"--dtype must be auto, float32, bfloat16 or float16, not {dtype!r}", 2)
    if not 1 <= fps <= 30:
        raise Fail("--fps must be between 1 and 30 (below 1, Qwen's audio and video chunks fall out of step)", 2)
    if max_pixels is not None and max_pixels < 4 * 28 * 28:
        raise Fail(f"--max-pixels must be at least {4 * 28 * 28} (a 56×56 frame)", 2)
    if max_new_tokens < 1:
        raise Fail("--max-new-tokens must be at least 1", 2)


def _ask(video, questions, questions_file, model, method, budget, protocol, device, dtype, fps, max_pixels,
         max_new_tokens, report, as_json):
    from acckv_cli.methods import METHODS
    from acckv_cli.pipeline import ask_clip, check_question, read_questions
    from acckv_cli.session import check_protocol

    _check_options(device, dtype, fps, max_pixels, max_new_tokens)
    questions = [check_question(q) for q in questions]
    if questions_file is not None:
        questions += read_questions(questions_file)
    if not questions:
        raise Fail("no question: give one or more after VIDEO, or --questions FILE", 2)
    if method not in METHODS:
        raise Fail(f"unknown --method {method!r}; choose one of: {', '.join(sorted(METHODS))}", 2)
    check_protocol(protocol)
    parsed_budget = _parse_budget(budget)
    from acckv_cli.media import probe
    probe(video)  # fail fast on a bad file before loading the model
    _quiet_libraries()
    from acckv_cli.model import load_model
    lm = load_model(model, device, dtype)
    results = ask_clip(lm, video, questions, method, parsed_budget, protocol, fps, max_pixels, max_new_tokens)
    if as_json:
        for notice in results[0].notices:
            err.print(f"note: {notice}", highlight=False)
        for result in results:
            sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        return
    _render_answers(results, report)


def _render_answers(results, report: ReportMode) -> None:
    from acckv_cli.report import render_layers, render_timeline

    for notice in results[0].notices:
        err.print(f"[yellow]note:[/yellow] {notice}", highlight=False)
    several = len(results) > 1
    for result in results:
        out.print(Panel(result.answer or "(empty answer)", title=result.question if several else "answer",
                        title_align="left"))
    first = results[0]
    summary = Table(show_header=False, box=None)
    m = first.media
    summary.add_row("model", first.model)
    summary.add_row("modalities", ", ".join(m["modalities"]))
    if "frames" in m:
        summary.add_row("video", f"{m['frames']} frames at {m['sampled_fps']:g} fps, {m['frame_size'][0]}×"
                                 f"{m['frame_size'][1]} px ({m['pixels_per_frame']} pixels), "
                                 f"{m['tokens_per_frame_pair']} tokens per frame pair")
    t = first.tokens
    summary.add_row("tokens", f"{t['total']} = video {t['video']} + audio {t['audio']} + text {t['text']}")
    summary.add_row("KV cache", f"{first.kv['kv_bytes'] / 2**20:.2f} MB kept of {first.kv['kv_bytes_full'] / 2**20:.2f} "
                                f"MB, media kept {100 * (first.kv['media_kept_ratio'] or 0):.1f} % "
                                f"({first.method} @ {first.budget}, protocol {first.protocol})")
    tm = first.timings
    summary.add_row("time", f"decode {tm['decode_s']:.2f} s · encode {tm['encode_s']:.2f} s · media prefill "
                            f"{tm['media_prefill_s']:.2f} s · question {tm['question_prefill_s']:.2f} s · "
                            f"generate {tm['generate_s']:.2f} s")
    if several:
        rest = sum(r.timings["question_prefill_s"] + r.timings["generate_s"] + r.timings["media_prefill_s"]
                   for r in results[1:])
        summary.add_row("", f"{len(results) - 1} more question(s): {rest:.2f} s (decode, encoders"
                            f"{'' if first.protocol not in ('context', 'stream') else ', compression'} and media "
                            f"prefill reused)")
    out.print(summary)
    if report == ReportMode.none:
        return
    shown = results[:1] if first.protocol in ("context", "stream") else results  # one compression for all
    for result in shown:
        table = render_layers(result.report, full=report == ReportMode.full)
        if several and first.protocol not in ("context", "stream"):
            table.title = f"{table.title} — {result.question}"
        out.print(table)
    if report == ReportMode.full:
        out.print(render_timeline(first.report))


@app.command()
def methods(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")):
    """List the KV compression methods with one line each."""
    from acckv_cli.methods import METHODS

    rows = [{"name": name, "summary": cls.summary, "paper": cls.paper or None,
             "defaults": cls().config()} for name, cls in sorted(METHODS.items())]
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table(title="KV compression methods")
    table.add_column("name")
    table.add_column("what it does")
    for row in rows:
        table.add_row(row["name"], row["summary"])
    out.print(table)


@app.command("eval")
def eval_cmd(
    split: str = typer.Option("test", help="SynthAVQA split: validation or test (ignored with --manifest)."),
    n: int = typer.Option(40, help="SynthAVQA clips to use (3 questions each)."),
    manifest: Optional[str] = typer.Option(None, help="JSONL of {video, question[, answer, family]} instead of SynthAVQA."),
    methods: str = typer.Option("full,acckv,snapkv,h2o,pyramidkv,lookm,fastv,taskfocus,streamingllm,random",
                                help="Comma-separated method specs; parameters as acckv:tau=0.9;budget_split=joint "
                                     "(use ';' between parameters on the command line)."),
    budgets: str = typer.Option("0.2,0.1,0.05", help="Comma-separated media budgets."),
    protocols: str = typer.Option("query-aware,context", "--protocols",
                                  help="Comma-separated protocols (query-aware, context, prefill, stream); see "
                                       "`ask --help`."),
    ablation: bool = typer.Option(False, help="Also run AccKV with each component off and with cross-modal merging."),
    max_new_tokens: int = typer.Option(4, "--max-new-tokens", help="Longest answer in tokens."),
    out_dir: str = typer.Option("results/eval", help="Folder for results.jsonl, summary.csv/json and accuracy.png."),
    data_dir: str = typer.Option(".acckv/synthavqa", help="Where SynthAVQA clips are written as mp4 files."),
    resume: bool = typer.Option(False, help="Keep finished rows of a previous run and do only the rest."),
    model: Optional[str] = MODEL_OPTION,
    device: str = DEVICE_OPTION,
    dtype: str = DTYPE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
):
    """Compare protocols × methods × budgets on answers computed from the compressed cache: first-word and
    exact accuracy per question family, agreement and KL of the first answer token with the full cache."""
    _run(_eval, split, n, manifest, methods, budgets, protocols, ablation, max_new_tokens, out_dir, data_dir,
         resume, model, device, dtype, as_json)


def _eval(split, n, manifest, methods, budgets, protocols, ablation, max_new_tokens, out_dir, data_dir, resume,
          model, device, dtype, as_json):
    from pathlib import Path

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from acckv_cli import evaluate as ev
    from acckv_cli.methods import Budget

    from acckv_cli.session import check_protocol

    _check_options(device, dtype, 2.0, None, max_new_tokens)
    protocol_list = tuple(check_protocol(p.strip()) for p in protocols.split(",") if p.strip())
    if not protocol_list:
        raise Fail("--protocols needs at least one protocol", 2)
    method_list = [m.strip().replace(";", ",") for m in methods.split(",") if m.strip()]
    method_list = _regroup_specs(method_list)
    if ablation:
        method_list += [m for m in ev.ABLATIONS if m not in method_list]
    for spec in method_list:
        try:
            ev.parse_method_spec(spec)
        except (KeyError, TypeError, ValueError) as exc:
            raise Fail(f"bad method spec {spec!r}: {str(exc).strip(chr(39))}", 2) from None
    budget_list = [b.strip() for b in budgets.split(",") if b.strip()]
    for b in budget_list:
        Budget.parse(b)
    if split not in ("validation", "test") and manifest is None:
        raise Fail("--split must be validation or test (the train split is for training only)", 2)
    if manifest is not None and not Path(manifest).is_file():
        raise Fail(f"manifest not found: {manifest!r}", 2)
    _quiet_libraries()
    from acckv_cli.model import load_model
    lm = load_model(model, device, dtype)
    for notice in lm.notices:
        err.print(f"[yellow]note:[/yellow] {notice}", highlight=False)
    items = ev.read_manifest(manifest) if manifest else ev.synthavqa_items(split, n, Path(data_dir))
    out_path = Path(out_dir)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("evaluating", total=len(items))
        rows = ev.run_eval(lm, items, method_list, budget_list, out_path, protocol_list, resume=resume,
                           max_new_tokens=max_new_tokens, progress=lambda done: bar.advance(task, done))
    summary = ev.summarise(rows)
    ev.write_summary(summary, out_path)
    metric = "first_word" if any("first_word" in e for e in summary) else "agreement"
    ev.plot_summary(summary, out_path / "accuracy.png", metric)
    if as_json:
        sys.stdout.write(json.dumps({"summary": summary, "out_dir": str(out_path)}) + "\n")
        return
    out_table = Table(title=f"answers from the compressed cache — {lm.name}", title_justify="left")
    columns = [c for c in ev.COLUMNS if any(e.get(c) is not None for e in summary)]
    for c in columns:
        out_table.add_column(c, justify="left" if c in ("protocol", "method") else "right")
    for e in summary:
        out_table.add_row(*[_fmt(e.get(c)) for c in columns])
    out.print(out_table)
    out.print(f"results: {out_path / 'results.jsonl'}, {out_path / 'summary.csv'}, {out_path / 'accuracy.png'}")


def _regroup_specs(parts: list[str]) -> list[str]:
    """Re-join `acckv:tau=0.9,budget_split=joint` that the comma split cut into pieces."""
    specs: list[str] = []
    for part in parts:
        if "=" in part and ":" not in part and specs and ":" in specs[-1]:
            specs[-1] += "," + part
        else:
            specs.append(part)
    return specs


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


@app.command("inspect")
def inspect_command(
    video: str = typer.Argument(..., help="Video (mp4, mkv, webm, mov, avi) or audio file (wav, flac, mp3, ogg)."),
    question: str = typer.Argument("What is happening in this clip?", help="The question whose attention is measured."),
    model: Optional[str] = MODEL_OPTION,
    device: str = DEVICE_OPTION,
    dtype: str = DTYPE_OPTION,
    fps: float = FPS_OPTION,
    max_pixels: Optional[int] = MAX_PIXELS_OPTION,
    plot: Optional[str] = typer.Option(None, "--plot", help="Write heatmaps to this PNG file."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
):
    """Show where the question's attention goes: per layer (audio/video/text, raw and after AccKV's A-R,
    AccKV's priority, the layer where video takes over) and per second of the clip."""
    from acckv_cli.inspect import command
    _run(command, video, question, model, device, dtype, fps, max_pixels, plot, as_json)


@app.command("batch")
def batch_command(
    source: str = typer.Argument(..., metavar="INPUT", help="Folder of clips (searched recursively) or a JSONL/CSV "
                                                            "manifest with video, question[, answer, id]."),
    out_path: str = typer.Option(..., "--out", help="Results file: one line per video × question."),
    question: Optional[str] = typer.Option(None, help="Ask this question of every video."),
    questions: Optional[str] = typer.Option(None, help="File with one question per line, each asked of every video."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl | csv"),
    resume: bool = typer.Option(False, "--resume", help="Continue an existing --out, skipping finished items."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    shard: Optional[str] = typer.Option(None, help="I/N: process only items whose index is I modulo N."),
    model: Optional[str] = MODEL_OPTION,
    method: str = METHOD_OPTION,
    budget: str = BUDGET_OPTION,
    protocol: str = typer.Option("query-aware", "--protocol", help=PROTOCOL_HELP),
    device: str = DEVICE_OPTION,
    dtype: str = DTYPE_OPTION,
    fps: float = FPS_OPTION,
    max_pixels: Optional[int] = MAX_PIXELS_OPTION,
    max_new_tokens: int = MAX_NEW_TOKENS_OPTION,
):
    """Answer questions about many clips into a JSONL/CSV file (resumable, shardable; each video decoded,
    encoded and its media prefilled once for all its questions)."""
    from acckv_cli.batch import command
    _run(command, source, out_path, question, questions, fmt, resume, overwrite, shard, model, method, budget,
         protocol, device, dtype, fps, max_pixels, max_new_tokens)


@app.command()
def bench(
    sizes: Optional[str] = typer.Option(None, help="Comma-separated prompt lengths, e.g. 2k,8k,16k (the default)."),
    long: bool = typer.Option(False, "--long", help="Add a 32k-token prompt."),
    layers: int = typer.Option(2, help="Decoder layers of the 3B-shaped random model (the real one has 36)."),
    dtype: str = typer.Option("float32", help="float32 | bfloat16"),
    methods: Optional[str] = typer.Option(None, help="Comma-separated methods (default: all)."),
    budgets: str = typer.Option("0.2,0.1", help="Budgets to compress to (ratios)."),
    decode_steps: int = typer.Option(16, help="Timed decode steps per setting (after 2 warm-up steps)."),
    repeat: int = typer.Option(3, help="Runs of each method step shorter than 1 s (the median is reported)."),
    threads: Optional[int] = typer.Option(None, help="torch threads (default: torch's)."),
    out_json: Optional[str] = typer.Option(None, help="Write all numbers to this JSON file."),
    plot: Optional[str] = typer.Option(None, help="Write a PNG of decode time vs context length."),
    out_md: Optional[str] = typer.Option(None, help="Write the main numbers as Markdown tables."),
    questions: Optional[str] = typer.Option(None, "--questions", help="Many-questions mode: comma-separated "
                                            "question counts (e.g. 1,4,10) about one clip (--sizes, default 8k), "
                                            "with and without media reuse."),
    protocols: str = typer.Option("query-aware,context", "--protocols", help="Protocols of the many-questions mode."),
    stream: bool = typer.Option(False, "--stream", help="Streaming mode: peak memory, KV bytes and time of streaming "
                                "vs one-shot prefill against clip length (--minutes), one fresh process per point."),
    minutes: str = typer.Option("1,2,5,10", "--minutes", help="Clip lengths of the streaming mode, in minutes."),
    media_budget: int = typer.Option(1024, "--media-budget", help="Media entries kept per layer in the streaming mode."),
    chunk_seconds: float = typer.Option(2.0, "--chunk-seconds", help="Seconds of clip per streaming step "
                                        "(a multiple of Qwen's 2-s chunk)."),
    tiny: bool = typer.Option(False, "--tiny", hidden=True),
):
    """Benchmark prefill overhead, decode speed, KV bytes and memory of every method (random 3B-shaped thinker),
    with --questions the cost of many questions about one clip, or with --stream streaming vs one-shot prefill."""
    if stream:
        from acckv_cli.bench_stream import command
        _run(command, minutes, layers, dtype, methods, media_budget, chunk_seconds, threads, out_json, plot, out_md,
             tiny, console=out, progress_console=err)
        return
    if questions is not None:
        _run(_bench_questions, questions, protocols, sizes, layers, dtype, decode_steps, threads, out_json, tiny)
        return
    _run(_bench, sizes, long, layers, dtype, methods, budgets, decode_steps, repeat, threads, out_json, plot, out_md,
         tiny)


def _bench_questions(questions, protocols, sizes, layers, dtype, new_tokens, threads, out_json, tiny):
    import torch

    from acckv_cli.bench import QWEN25_OMNI_3B, TINY, build_thinker, parse_sizes, synthetic_prompt
    from acckv_cli.bench_questions import render, run_questions
    from acckv_cli.session import check_protocol

    if dtype not in ("float32", "bfloat16"):
        raise Fail(f"--dtype must be float32 or bfloat16, not {dtype!r}", 2)
    try:
        counts = tuple(sorted({int(q) for q in questions.split(",") if q.strip()}))
        (size,) = parse_sizes(sizes or "8k")
    except ValueError:
        raise Fail("--questions takes counts like 1,4,10 and --sizes one prompt length like 8k", 2) from None
    if not counts or counts[0] < 1:
        raise Fail("--questions takes positive counts like 1,4,10", 2)
    protocol_list = tuple(check_protocol(p.strip()) for p in protocols.split(",") if p.strip())
    _quiet_libraries()
    if threads:
        torch.set_num_threads(threads)
    shape = TINY if tiny else QWEN25_OMNI_3B
    thinker = build_thinker(shape, layers, getattr(torch, dtype))
    result = run_questions(thinker, synthetic_prompt(size, shape), counts, protocol_list, new_tokens=new_tokens,
                           progress=lambda text: err.print(text, highlight=False) if not tiny else None)
    result.update(model={"shape": shape.name, "layers": layers, "dtype": dtype},
                  machine={"torch_threads": torch.get_num_threads()})
    render(result, out)
    if out_json:
        from pathlib import Path
        Path(out_json).write_text(json.dumps(result, indent=1))


def _bench(sizes, long, layers, dtype, methods, budgets, decode_steps, repeat, threads, out_json, plot, out_md, tiny):
    if dtype not in ("float32", "bfloat16"):
        raise Fail(f"--dtype must be float32 or bfloat16, not {dtype!r}", 2)
    _quiet_libraries()
    from acckv_cli.bench import DEFAULT_METHODS, config_from, main_with
    try:
        cfg = config_from(sizes, long, layers, dtype, methods or ",".join(DEFAULT_METHODS), budgets, decode_steps,
                          threads, out_json, plot, tiny, repeat, out_md)
    except ValueError as exc:
        raise Fail(str(exc), 2) from None
    main_with(cfg, console=out, progress_console=err)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
