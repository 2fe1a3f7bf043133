"""The `acckv` command line: declares the commands and their options, nothing else.

Each command hands its validated `RunOptions` and its own flags to a body in `acckv_cli.cli.commands`
through `terminal.run`, which turns every expected failure into one line on stderr and an exit code
(0 success, 2 usage errors, 1 runtime failures). Click's own usage errors (missing argument, bad value)
are one line too (`terminal.OneLineErrors`). Nothing here imports torch: the bodies check every argument
and file first and import the model stages only then, so `--help`, `acckv methods` and a usage error are
fast (tests/test_imports.py). The examples in each command's help are run by tests/test_help.py.
"""

from __future__ import annotations

from typing import Optional

import typer

from acckv_cli import options as o
from acckv_cli.cli import flags as f
from acckv_cli.terminal import OneLineErrors, run, set_verbose

app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]},
                  help="Audio-video question answering with Qwen2.5-Omni or Qwen3-Omni (the thinker) and AccKV "
                       "KV-cache compression. Every command takes -h; -v/--verbose goes before or after the "
                       "command.")


def examples(*lines: str) -> str:
    """An epilog of command lines, kept as written (`\\b`: Click does not rewrap the paragraph)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logs, and a failure's traceback, on "
                                                                       "stderr (also accepted after the command).")):
    set_verbose(verbose)


def _given(ctx: typer.Context) -> frozenset[str]:
    """The options typed on the command line, not left at their defaults (a cache file refuses those that would
    change what it holds)."""
    return frozenset(name for name in ctx.params
                     if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP"))


@app.command(epilog=examples(
    'acckv ask samples/flute_red_circle.mp4 "What instrument plays?"',
    'acckv ask samples/drum_then_violin.mp4 "What plays first?" "What plays after the drum?" -b 10%',
    'acckv ask samples/flute_red_circle.mp4 "What instrument plays?" -m acckv -m snapkv:window_size=16',
    'acckv ask samples/flute_red_circle.mp4 "What instrument plays?" -m acckv -o tau=0.9 -o merge_target=none',
    'acckv ask samples/bell.wav "What instrument plays?" -m full --json'))
def ask(
    ctx: typer.Context,
    video: str = f.VIDEO,
    questions: Optional[list[str]] = typer.Argument(None, metavar="QUESTION",
                                                    help="One or more questions about the clip."),
    questions_file: Optional[str] = typer.Option(None, "--questions", "-q", metavar="FILE",
                                                 help="File with one question per line (asked after any given as "
                                                      "arguments)."),
    model: Optional[str] = f.MODEL,
    method: Optional[list[str]] = f.METHODS_COMPARED,
    method_options: Optional[list[str]] = f.METHOD_OPTIONS,
    budget: Optional[str] = f.BUDGET,
    protocol: str = f.PROTOCOL,
    device: o.Device = f.DEVICE,
    dtype: o.Dtype = f.DTYPE,
    fps: float = f.FPS,
    max_pixels: Optional[int] = f.MAX_PIXELS,
    max_new_tokens: int = f.MAX_NEW_TOKENS,
    official_fps: bool = f.OFFICIAL_FPS,
    chunk_seconds: Optional[float] = f.CHUNK_SECONDS,
    report: o.ReportMode = typer.Option(o.ReportMode.compact, "--report", "-r",
                                        help="Retention table: compact (a sample of layers, fits 80 columns), full "
                                             "(every layer, every column, the per-second timeline) or none."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per question (JSON Lines) on stdout."),
    verbose: bool = f.VERBOSE,
):
    """Answer QUESTIONs about VIDEO from the compressed KV cache and show what it kept.

    The clip is decoded, encoded and its media prefilled once for all questions. Given a FILE.acckv saved by
    `acckv index`, the answers come from its cache: no decoding, encoders or media prefill.
    """
    from acckv_cli.cli.commands import ask as body
    run(lambda: body.run(video, questions or [], questions_file,
                         o.RunOptions.build(model, device, dtype, fps, max_pixels, max_new_tokens, official_fps),
                         o.parse_methods(method, method_options), budget, protocol, report, as_json, _given(ctx),
                         chunk_seconds))


@app.command("index")
def index_command(
    sources: list[str] = typer.Argument(..., metavar="VIDEO... | FOLDER", help="Clips to index (video or audio "
                                        "files), or folders searched recursively for them."),
    out_dir: str = typer.Option(".", "--out-dir", "-d", help="Folder for the <stem>.acckv files (made if missing)."),
    resume: bool = typer.Option(False, "--resume", help="Keep cache files already in --out-dir (their settings "
                                                        "must match) and index only the other clips."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace cache files already in --out-dir."),
    model: Optional[str] = f.MODEL,
    method: Optional[str] = f.METHOD,
    method_options: Optional[list[str]] = f.METHOD_OPTIONS,
    budget: Optional[str] = f.BUDGET,
    protocol: str = typer.Option("context", "--protocol", help="context (the media prefilled and compressed at "
                                 "once) or stream (long clips: a step at a time with a bounded cache); see `ask "
                                 "--help`. Answers from the file equal `ask VIDEO` with this protocol."),
    device: o.Device = f.DEVICE,
    dtype: o.Dtype = f.DTYPE,
    fps: float = f.FPS,
    max_pixels: Optional[int] = f.MAX_PIXELS,
    official_fps: bool = f.OFFICIAL_FPS,
):
    """Save each clip's compressed media cache to <stem>.acckv, to answer questions later with `acckv ask
    FILE.acckv` (or `batch`) without decoding, encoders or media prefill."""
    from acckv_cli.cli.commands import index as body
    run(lambda: body.run(sources, out_dir, resume, overwrite,
                         o.RunOptions.build(model, device, dtype, fps, max_pixels, 32, official_fps),
                         o.parse_methods([method] if method else None, method_options)[0], o.DEFAULT_BUDGET if budget is None else budget,
                         protocol))


@app.command(epilog=examples("acckv methods", "acckv methods --options"))
def methods(as_json: bool = typer.Option(False, "--json", help="Print every method with its options as JSON."),
            options: bool = typer.Option(False, "--options", help="Also list every hyperparameter: type, default, "
                                                                  "allowed values (set them with -o key=value)."),
            verbose: bool = f.VERBOSE):
    """List the KV compression methods with one line each."""
    from acckv_cli.cli.commands import methods as body
    run(body.run, as_json, options)


@app.command("eval", epilog=examples(
    "acckv eval --split validation -n 2 -m full -m acckv -m snapkv -b 0.2,0.1 --protocol context",
    "acckv eval -n 2 -m acckv -m acckv:merge_target=none -o coverage=none -b 10% --out-dir .acckv/eval/merge"))
def eval_cmd(
    split: str = typer.Option("test", "--split", metavar="validation|test",
                              help="SynthAVQA split (ignored with --manifest)."),
    clips: int = typer.Option(40, "--clips", "-n", metavar="N",
                              help="SynthAVQA clips to use per suite (3 or 5 questions each)."),
    suites: Optional[list[str]] = typer.Option(None, "--suite", metavar="SUITE[,...]",
                                               help="SynthAVQA suite, repeatable or comma list: core (one large "
                                                    "shape and one long tone per answer), sparse (brief sounds, "
                                                    "small or brief shapes, 8-30 s), long (sparse events, 60-180 s); "
                                                    "default core."),
    manifest: Optional[str] = typer.Option(None, "--manifest", metavar="FILE",
                                           help="JSONL or CSV of video, question[, answer, options, family, id] "
                                                "instead of SynthAVQA."),
    benchmark: Optional[str] = typer.Option(None, "--benchmark", "--format", metavar="NAME", help=f.BENCHMARK_HELP),
    media_root: Optional[str] = typer.Option(None, "--media-root", metavar="FOLDER", help=f.MEDIA_ROOT_HELP),
    method_specs: Optional[list[str]] = typer.Option(None, "--method", "-m", metavar=f.METHOD_METAVAR,
                                                     help="Method to compare, repeatable, e.g. -m acckv:tau=0.9 "
                                                          "(default: full, acckv and every baseline, and oracle "
                                                          "on SynthAVQA)."),
    method_options: Optional[list[str]] = f.METHOD_OPTIONS,
    budgets: Optional[list[str]] = typer.Option(None, "--budget", "--budgets", "-b", metavar="BUDGET[,BUDGET...]",
                                                help="Media budgets, repeatable or comma-separated (default "
                                                     "0.2,0.1,0.05); `full` runs once, at 100 %."),
    protocols: Optional[list[str]] = typer.Option(None, "--protocol", "--protocols", metavar="PROTOCOL[,...]",
                                                  help=f"Protocols, repeatable or comma-separated, of "
                                                       f"{', '.join(o.PROTOCOLS)} (default query-aware,context; "
                                                       f"see `acckv ask --help`)."),
    ablation: bool = typer.Option(False, "--ablation", help="Also run AccKV with each component off and with "
                                                            "cross-modal merging."),
    max_new_tokens: int = typer.Option(4, "--max-new-tokens", metavar="N", help="Longest answer in tokens."),
    out_dir: Optional[str] = typer.Option(None, "--out-dir", metavar="FOLDER",
                                          help="Folder for results.jsonl, summary.csv/json/md and accuracy.png "
                                               "(default .acckv/eval/<split or manifest name>)."),
    data_dir: str = typer.Option(".acckv/synthavqa", "--data-dir", metavar="FOLDER",
                                 help="Where SynthAVQA clips are written."),
    resume: bool = typer.Option(False, "--resume", help="Keep finished rows of a previous run and do only the rest."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the results of a previous run."),
    model: Optional[str] = f.MODEL,
    device: o.Device = f.DEVICE,
    dtype: o.Dtype = f.DTYPE,
    fps: float = f.FPS,
    official_fps: bool = f.OFFICIAL_FPS,
    chunk_seconds: Optional[float] = f.CHUNK_SECONDS,
    report: o.ReportMode = typer.Option(o.ReportMode.compact, "--report", "-r",
                                        help="Summary table: compact (accuracy, agreement, KL; fits 80 columns), "
                                             "full (every column of summary.csv) or none."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    verbose: bool = f.VERBOSE,
):
    """Compare protocols × methods × budgets on answers computed from the compressed cache: first-word and
    exact accuracy per question family, agreement and KL of the first answer token with the full cache."""
    from acckv_cli.cli.commands import evaluate as body
    run(lambda: body.run(split, clips, manifest, method_specs or [], method_options or [],
                         o.split_list(budgets, "0.2,0.1,0.05"), o.split_list(protocols, "query-aware,context"),
                         ablation, out_dir, data_dir, resume, overwrite, suites or ["core"],
                         o.RunOptions.build(model, device, dtype, fps, None, max_new_tokens, official_fps), report,
                         as_json, benchmark, media_root, chunk_seconds))


@app.command("inspect", epilog=examples(
    'acckv inspect samples/guitar_bell_flute.mp4 "Which instrument plays while the star is visible?" --plot attn.png',
    'acckv inspect samples/flute_red_circle.mp4 "What instrument plays?" -m acckv:score_queries=all'))
def inspect_command(
    video: str = f.VIDEO,
    question: str = typer.Argument("What is happening in this clip?", metavar="QUESTION",
                                   help="The question whose attention is measured."),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", metavar=f.METHOD_METAVAR,
                                               help="AccKV with the options whose scores and priorities are shown, "
                                                    "e.g. -m acckv:score_queries=all (inspect measures AccKV; "
                                                    "nothing is evicted)."),
    method_options: Optional[list[str]] = f.METHOD_OPTIONS,
    model: Optional[str] = f.MODEL,
    device: o.Device = f.DEVICE,
    dtype: o.Dtype = f.DTYPE,
    fps: float = f.FPS,
    max_pixels: Optional[int] = f.MAX_PIXELS,
    official_fps: bool = f.OFFICIAL_FPS,
    plot: Optional[str] = typer.Option(None, "--plot", metavar="FILE", help="Write heatmaps to this PNG (or .pdf, "
                                                                            ".svg) file."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
    verbose: bool = f.VERBOSE,
):
    """Show where the question's attention goes: per layer (audio/video/text, raw and after AccKV's A-R,
    AccKV's priority, the layer where video takes over) and per second of the clip."""
    from acckv_cli.cli.commands import inspect as body
    run(lambda: body.run(video, question, o.RunOptions.build(model, device, dtype, fps, max_pixels, 1, official_fps),
                         o.single_method(method, method_options, "inspect"), plot, as_json))


@app.command("batch", epilog=examples(
    'acckv batch samples/ --question "What instrument plays?" --out results.jsonl -b 0.5',
    "acckv batch samples/ -q questions.txt --out results.csv --format csv -m snapkv:window_size=16 --overwrite"))
def batch_command(
    source: str = typer.Argument(..., metavar="INPUT", help="Folder of clips and/or .acckv cache files (searched "
                                                            "recursively), one .acckv file, or a JSONL/CSV manifest "
                                                            "with video, question[, answer, id]."),
    out_path: str = typer.Option(..., "--out", metavar="FILE", help="Results file: one line per video × question."),
    question: Optional[str] = typer.Option(None, "--question", metavar="QUESTION",
                                           help="Ask this question of every video."),
    questions: Optional[str] = typer.Option(None, "--questions", "-q", metavar="FILE",
                                            help="File with one question per line, each asked of every video."),
    fmt: o.Format = typer.Option(o.Format.jsonl, "--format", help="Format of --out."),
    benchmark: Optional[str] = typer.Option(None, "--benchmark", metavar="NAME", help=f.BENCHMARK_HELP),
    media_root: Optional[str] = typer.Option(None, "--media-root", metavar="FOLDER", help=f.MEDIA_ROOT_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue an existing --out, skipping finished items."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="I/N",
                                        help="Process only items whose index is I modulo N."),
    model: Optional[str] = f.MODEL,
    method: Optional[list[str]] = f.METHOD,
    method_options: Optional[list[str]] = f.METHOD_OPTIONS,
    budget: Optional[str] = f.BUDGET,
    protocol: str = f.PROTOCOL,
    device: o.Device = f.DEVICE,
    dtype: o.Dtype = f.DTYPE,
    fps: float = f.FPS,
    max_pixels: Optional[int] = f.MAX_PIXELS,
    max_new_tokens: int = f.MAX_NEW_TOKENS,
    official_fps: bool = f.OFFICIAL_FPS,
    chunk_seconds: Optional[float] = f.CHUNK_SECONDS,
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="Run on N Ray workers, each loading "
                                          "the model once and answering whole videos (pip install 'acckv[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="auto|HOST:PORT",
                                              help="Ray cluster to run on: auto (the one `ray start` made on this "
                                                   "machine) or HOST:PORT; default: a local Ray instance with "
                                                   "--workers workers."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", metavar="GPUS",
                                                    help="GPUs each Ray worker reserves (e.g. 1 on a GPU cluster; "
                                                         "default 0)."),
    cpus_per_worker: Optional[float] = typer.Option(None, "--cpus-per-worker", metavar="CPUS",
                                                    help="CPUs each Ray worker reserves, and its torch threads "
                                                         "(default 1)."),
    verbose: bool = f.VERBOSE,
):
    """Answer questions about many clips into a JSONL/CSV file (resumable, shardable; each video decoded,
    encoded and its media prefilled once for all its questions; --workers runs them on a Ray cluster)."""
    from acckv_cli.cli.commands import batch as body
    run(lambda: body.run(source, out_path, question, questions, fmt, resume, overwrite, shard,
                         o.RunOptions.build(model, device, dtype, fps, max_pixels, max_new_tokens, official_fps),
                         o.single_method(method, method_options, "batch"), budget, protocol, workers, ray_address,
                         gpus_per_worker, cpus_per_worker, benchmark, media_root, chunk_seconds))


@app.command()
def bench(
    sizes: Optional[str] = typer.Option(None, "--sizes", metavar="SIZES",
                                        help="Comma-separated prompt lengths, e.g. 2k,8k,16k (the default; 8k with "
                                             "--question-counts)."),
    long: bool = typer.Option(False, "--long", help="Add a 32k-token prompt."),
    layers: Optional[int] = typer.Option(None, "--layers", metavar="N",
                                         help="Decoder layers of the random model (default 2; with --device, all of "
                                              "--shape's: 28 for 7b)."),
    device: Optional[str] = typer.Option(None, "--device", metavar="cpu|cuda",
                                         help="Device bench: every method with its hooks at the full depth of "
                                              "--shape (default 7b), KV bytes, peak device memory, decode "
                                              "ms/token, masked-full equivalence (default sizes 8k,32k)."),
    shape: Optional[str] = typer.Option(None, "--shape", metavar="3b|7b",
                                        help="Decoder shape of the --device bench's random model (default 7b)."),
    dtype: str = typer.Option("float32", "--dtype", metavar="float32|bfloat16", help="Weights dtype."),
    methods: Optional[str] = typer.Option(None, "--methods", metavar="NAMES",
                                          help="Comma-separated methods (default: all)."),
    budgets: str = typer.Option("0.2,0.1", "--budgets", metavar="BUDGETS", help="Budgets to compress to (ratios)."),
    decode_steps: int = typer.Option(16, "--decode-steps", metavar="N",
                                     help="Timed decode steps per setting (after 2 warm-up steps); new tokens per "
                                          "answer with --question-counts."),
    repeat: int = typer.Option(3, "--repeat", metavar="N",
                               help="Runs of each method step shorter than 1 s (median reported)."),
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N", help="torch threads (default: torch's)."),
    out_json: Optional[str] = typer.Option(None, "--out-json", metavar="FILE", help="Write all numbers to this JSON "
                                                                                    "file."),
    plot: Optional[str] = typer.Option(None, "--plot", metavar="FILE",
                                       help="Write a PNG of decode time vs context length."),
    out_md: Optional[str] = typer.Option(None, "--out-md", metavar="FILE",
                                         help="Write the main numbers as Markdown tables."),
    question_counts: Optional[str] = typer.Option(None, "--question-counts", metavar="COUNTS",
                                                  help="Many-questions mode: comma-separated numbers of questions "
                                                       "(e.g. 1,4,10) about one clip, with and without media reuse."),
    protocols: str = typer.Option("query-aware,context", "--protocols", metavar="PROTOCOLS",
                                  help="Protocols of the many-questions mode."),
    stream: bool = typer.Option(False, "--stream", help="Streaming mode: peak memory, KV bytes and time of streaming "
                                "vs one-shot prefill against clip length (--minutes), one fresh process per point."),
    minutes: str = typer.Option("1,2,5,10", "--minutes", metavar="MINUTES",
                                help="Clip lengths of the streaming mode, in minutes."),
    media_budget: int = typer.Option(1024, "--media-budget", metavar="N",
                                     help="Media entries kept per layer in the streaming mode."),
    chunk_seconds: Optional[float] = typer.Option(None, "--chunk-seconds", metavar="SECONDS",
                                                  help="Seconds of clip per streaming step (a multiple of Qwen's "
                                                       "2-s chunk; default: as `ask`, the fewest 2-s chunks "
                                                       "holding 512 tokens)."),
    tiny: bool = typer.Option(False, "--tiny", hidden=True),
    verbose: bool = f.VERBOSE,
):
    """Benchmark prefill overhead, decode speed, KV bytes and memory of every method (random 3B-shaped thinker),
    with --question-counts the cost of many questions about one clip, or with --stream streaming vs one-shot
    prefill."""
    from acckv_cli.cli.commands import bench as body
    run(body.check_modes, device, shape, stream, question_counts)
    if device is not None:
        run(body.run_device, device, shape, sizes, layers, dtype, methods, budgets, decode_steps, out_json, out_md,
            tiny)
    elif stream:
        run(body.run_stream, minutes, 2 if layers is None else layers, dtype, methods, media_budget, chunk_seconds,
            threads, out_json, plot, out_md, tiny)
    elif question_counts is not None:
        run(body.run_questions, question_counts, protocols, sizes, 2 if layers is None else layers, dtype,
            decode_steps, threads, out_json, tiny)
    else:
        run(body.run, sizes, long, 2 if layers is None else layers, dtype, methods, budgets, decode_steps, repeat,
            threads, out_json, plot, out_md, tiny)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
