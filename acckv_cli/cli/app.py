"""The `acckv` command line: declares the commands and their options, nothing else.

Each command hands its validated `RunOptions` and its own flags to a body in `acckv_cli.cli.commands`
through `terminal.run`, which turns every expected failure into one line on stderr and an exit code
(0 success, 2 usage errors, 1 runtime failures). Click's own usage errors (missing argument, bad value)
are one line too (`terminal.OneLineErrors`). Heavy imports happen inside the bodies, so `--help` is fast.
"""

from __future__ import annotations

import logging
import sys
from typing import Optional

import typer

from acckv_cli import options as o
from acckv_cli.cli import flags as f
from acckv_cli.terminal import OneLineErrors, run

app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]},
                  help="Audio-video question answering with Qwen2.5-Omni and AccKV KV-cache compression.")

VIDEO_HELP = "Video (mp4, mkv, webm, mov, avi) or audio file (wav, flac, mp3, ogg)."
JSON_HELP = "Print JSON on stdout instead of tables."
BENCHMARK_HELP = ("Read the manifest as this benchmark's own annotation file: worldsense, daily-omni, videomme, avqa, "
                  "music-avqa or omnivideobench (docs/benchmarks.md).")
MEDIA_ROOT_HELP = "Folder the videos of the manifest or benchmark file are found in (default: the file's folder)."


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging and tracebacks on stderr.")):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def _given(ctx: typer.Context) -> frozenset[str]:
    """The options typed on the command line, not left at their defaults (a cache file refuses those that would
    change what it holds)."""
    return frozenset(name for name in ctx.params
                     if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP"))


@app.command()
def ask(
    ctx: typer.Context,
    video: str = typer.Argument(..., help=VIDEO_HELP + " Or a cache file from `acckv index` (FILE.acckv)."),
    questions: Optional[list[str]] = typer.Argument(None, help="One or more questions about the clip."),
    questions_file: Optional[str] = typer.Option(None, "--questions", "-q", help="File with one question per line "
                                                 "(asked after any given as arguments)."),
    model: Optional[str] = f.MODEL,
    method: str = f.METHOD,
    method_options: Optional[list[str]] = f.METHOD_OPTIONS,
    budget: str = f.BUDGET,
    protocol: str = f.PROTOCOL,
    device: o.Device = f.DEVICE,
    dtype: o.Dtype = f.DTYPE,
    fps: float = f.FPS,
    max_pixels: Optional[int] = f.MAX_PIXELS,
    max_new_tokens: int = f.MAX_NEW_TOKENS,
    official_fps: bool = f.OFFICIAL_FPS,
    report: o.ReportMode = typer.Option(o.ReportMode.compact, "--report", "-r",
                                        help="Retention table: compact, full (every layer) or none."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per question (JSON Lines) on stdout."),
):
    """Answer QUESTIONS about VIDEO from the compressed KV cache and show what it kept.

    The clip is decoded, encoded and its media prefilled once for all questions. Given a FILE.acckv saved by
    `acckv index`, the answers come from its cache: no decoding, encoders or media prefill.
    """
    from acckv_cli.cli.commands import ask as body
    run(lambda: body.run(video, questions or [], questions_file,
                         o.RunOptions.build(model, device, dtype, fps, max_pixels, max_new_tokens, official_fps),
                         o.MethodSpec.parse(method, extra=method_options), budget, protocol, report, as_json,
                         _given(ctx)))


@app.command("index")
def index_command(
    sources: list[str] = typer.Argument(..., metavar="VIDEO... | FOLDER", help="Clips to index (video or audio "
                                        "files), or folders searched recursively for them."),
    out_dir: str = typer.Option(".", "--out-dir", "-d", help="Folder for the <stem>.acckv files (made if missing)."),
    resume: bool = typer.Option(False, "--resume", help="Keep cache files already in --out-dir (their settings "
                                                        "must match) and index only the other clips."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace cache files already in --out-dir."),
    model: Optional[str] = f.MODEL,
    method: str = f.METHOD,
    method_options: Optional[list[str]] = f.METHOD_OPTIONS,
    budget: str = f.BUDGET,
    protocol: str = typer.Option("context", "--protocol", help="context (the media prefilled and compressed at "
                                 "once) or stream (long clips: 2 s at a time with a bounded cache); see `ask "
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
                         o.MethodSpec.parse(method, extra=method_options), budget, protocol))


@app.command()
def methods(as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
            options: bool = typer.Option(False, "--options", help="Also list every hyperparameter: type, default, "
                                                                  "allowed values (set them with -o key=value).")):
    """List the KV compression methods with one line each."""
    from acckv_cli.cli.commands import methods as body
    run(body.run, as_json, options)


@app.command("eval")
def eval_cmd(
    split: str = typer.Option("test", "--split", help="SynthAVQA split: validation or test (ignored with --manifest)."),
    clips: int = typer.Option(40, "--clips", "-n", help="SynthAVQA clips to use per suite (3 or 5 questions each)."),
    suites: Optional[list[str]] = typer.Option(None, "--suite", help="SynthAVQA suite, repeatable or comma list: "
                                               "core (one large shape and one long tone per answer), sparse (brief "
                                               "sounds, small or brief shapes, 8-30 s), long (sparse events, "
                                               "60-180 s); default core."),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="JSONL or CSV of video, question[, answer, "
                                                                    "options, family, id] instead of SynthAVQA."),
    benchmark: Optional[str] = typer.Option(None, "--benchmark", "--format", help=BENCHMARK_HELP),
    media_root: Optional[str] = typer.Option(None, "--media-root", help=MEDIA_ROOT_HELP),
    method_specs: Optional[list[str]] = typer.Option(None, "--method", "-m", help="Method to compare, repeatable: NAME "
                                                     "or NAME:key=value,... (default: full, acckv and every "
                                                     "baseline)."),
    budgets: str = typer.Option("0.2,0.1,0.05", "--budgets", help="Comma-separated media budgets."),
    protocols: str = typer.Option("query-aware,context", "--protocols",
                                  help="Comma-separated protocols (query-aware, context, prefill, stream); see "
                                       "`ask --help`."),
    ablation: bool = typer.Option(False, "--ablation", help="Also run AccKV with each component off and with "
                                                            "cross-modal merging."),
    max_new_tokens: int = typer.Option(4, "--max-new-tokens", help="Longest answer in tokens."),
    out_dir: str = typer.Option("results/eval", "--out-dir", help="Folder for results.jsonl, summary.csv/json "
                                                                        "and accuracy.png."),
    data_dir: str = typer.Option(".acckv/synthavqa", "--data-dir", help="Where SynthAVQA clips are written."),
    resume: bool = typer.Option(False, "--resume", help="Keep finished rows of a previous run and do only the rest."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the results of a previous run."),
    model: Optional[str] = f.MODEL,
    device: o.Device = f.DEVICE,
    dtype: o.Dtype = f.DTYPE,
    fps: float = f.FPS,
    official_fps: bool = f.OFFICIAL_FPS,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
):
    """Compare protocols × methods × budgets on answers computed from the compressed cache: first-word and
    exact accuracy per question family, agreement and KL of the first answer token with the full cache."""
    from acckv_cli.cli.commands import evaluate as body
    run(lambda: body.run(split, clips, manifest, method_specs or [], budgets, protocols, ablation, out_dir,
                         data_dir, resume, overwrite, suites or ["core"],
                         o.RunOptions.build(model, device, dtype, fps, None, max_new_tokens, official_fps), as_json,
                         benchmark, media_root))


@app.command("inspect")
def inspect_command(
    video: str = typer.Argument(..., help=VIDEO_HELP),
    question: str = typer.Argument("What is happening in this clip?", help="The question whose attention is measured."),
    model: Optional[str] = f.MODEL,
    device: o.Device = f.DEVICE,
    dtype: o.Dtype = f.DTYPE,
    fps: float = f.FPS,
    max_pixels: Optional[int] = f.MAX_PIXELS,
    official_fps: bool = f.OFFICIAL_FPS,
    plot: Optional[str] = typer.Option(None, "--plot", help="Write heatmaps to this PNG file."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
):
    """Show where the question's attention goes: per layer (audio/video/text, raw and after AccKV's A-R,
    AccKV's priority, the layer where video takes over) and per second of the clip."""
    from acckv_cli.cli.commands import inspect as body
    run(lambda: body.run(video, question, o.RunOptions.build(model, device, dtype, fps, max_pixels, 1, official_fps),
                         plot, as_json))


@app.command("batch")
def batch_command(
    source: str = typer.Argument(..., metavar="INPUT", help="Folder of clips and/or .acckv cache files (searched "
                                                            "recursively), one .acckv file, or a JSONL/CSV manifest "
                                                            "with video, question[, answer, id]."),
    out_path: str = typer.Option(..., "--out", help="Results file: one line per video × question."),
    question: Optional[str] = typer.Option(None, "--question", help="Ask this question of every video."),
    questions: Optional[str] = typer.Option(None, "--questions", "-q", help="File with one question per line, each "
                                                                            "asked of every video."),
    fmt: o.Format = typer.Option(o.Format.jsonl, "--format", help="Format of --out."),
    benchmark: Optional[str] = typer.Option(None, "--benchmark", help=BENCHMARK_HELP),
    media_root: Optional[str] = typer.Option(None, "--media-root", help=MEDIA_ROOT_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue an existing --out, skipping finished items."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: process only items whose index is I modulo N."),
    model: Optional[str] = f.MODEL,
    method: str = f.METHOD,
    method_options: Optional[list[str]] = f.METHOD_OPTIONS,
    budget: str = f.BUDGET,
    protocol: str = f.PROTOCOL,
    device: o.Device = f.DEVICE,
    dtype: o.Dtype = f.DTYPE,
    fps: float = f.FPS,
    max_pixels: Optional[int] = f.MAX_PIXELS,
    max_new_tokens: int = f.MAX_NEW_TOKENS,
    official_fps: bool = f.OFFICIAL_FPS,
    workers: Optional[int] = typer.Option(None, "--workers", help="Run on N Ray workers, each loading the model "
                                          "once and answering whole videos (pip install 'acckv[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to run on: auto (the one "
                                              "`ray start` made on this machine) or HOST:PORT; default: a local "
                                              "Ray instance with --workers workers."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", help="GPUs each Ray worker "
                                                    "reserves (e.g. 1 on a GPU cluster; default 0)."),
    cpus_per_worker: Optional[float] = typer.Option(None, "--cpus-per-worker", help="CPUs each Ray worker "
                                                    "reserves, and its torch threads (default 1)."),
):
    """Answer questions about many clips into a JSONL/CSV file (resumable, shardable; each video decoded,
    encoded and its media prefilled once for all its questions; --workers runs them on a Ray cluster)."""
    from acckv_cli.cli.commands import batch as body
    run(lambda: body.run(source, out_path, question, questions, fmt, resume, overwrite, shard,
                         o.RunOptions.build(model, device, dtype, fps, max_pixels, max_new_tokens, official_fps),
                         o.MethodSpec.parse(method, extra=method_options), budget, protocol, workers, ray_address,
                         gpus_per_worker, cpus_per_worker, benchmark, media_root))


@app.command()
def bench(
    sizes: Optional[str] = typer.Option(None, "--sizes", help="Comma-separated prompt lengths, e.g. 2k,8k,16k "
                                                              "(the default; 8k with --questions)."),
    long: bool = typer.Option(False, "--long", help="Add a 32k-token prompt."),
    layers: int = typer.Option(2, "--layers", help="Decoder layers of the 3B-shaped random model (the real one "
                                                   "has 36)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | bfloat16"),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated methods (default: all)."),
    budgets: str = typer.Option("0.2,0.1", "--budgets", help="Budgets to compress to (ratios)."),
    decode_steps: int = typer.Option(16, "--decode-steps", help="Timed decode steps per setting (after 2 warm-up "
                                                                "steps); new tokens per answer with --questions."),
    repeat: int = typer.Option(3, "--repeat", help="Runs of each method step shorter than 1 s (median reported)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: torch's)."),
    out_json: Optional[str] = typer.Option(None, "--out-json", help="Write all numbers to this JSON file."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write a PNG of decode time vs context length."),
    out_md: Optional[str] = typer.Option(None, "--out-md", help="Write the main numbers as Markdown tables."),
    questions: Optional[str] = typer.Option(None, "--questions", help="Many-questions mode: comma-separated "
                                            "question counts (e.g. 1,4,10) about one clip, with and without media "
                                            "reuse."),
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
    from acckv_cli.cli.commands import bench as body
    if stream:
        run(body.run_stream, minutes, layers, dtype, methods, media_budget, chunk_seconds, threads, out_json, plot,
            out_md, tiny)
    elif questions is not None:
        run(body.run_questions, questions, protocols, sizes, layers, dtype, decode_steps, threads, out_json, tiny)
    else:
        run(body.run, sizes, long, layers, dtype, methods, budgets, decode_steps, repeat, threads, out_json, plot,
            out_md, tiny)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
