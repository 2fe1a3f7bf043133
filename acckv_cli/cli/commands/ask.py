"""`acckv ask`: answer questions about one clip and show what the compressed cache kept.

Every argument and the file are checked before torch is imported (`check`); several `-m` compare methods on
the same decoded clip, one answer block per method.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from acckv_cli.answer.cachename import is_cache_path
from acckv_cli.answer.questions import check_question, read_questions
from acckv_cli.errors import Fail
from acckv_cli.options import MethodSpec, ReportMode, RunOptions, parse_budget, parse_chunk_seconds, parse_protocol
from acckv_cli.terminal import new_table, notice, out, percent

if TYPE_CHECKING:
    from rich.table import Table

    from acckv_cli.answer.pipeline import AskResult


@dataclass
class Request:
    """What `ask` was asked, checked: the questions, each method with its budget, the protocol (and its step)."""

    video: str
    questions: list[str]
    runs: list[tuple[MethodSpec, object]]  # (method, methods.Budget)
    protocol: str
    chunk_seconds: float | None = None  # the step of --protocol stream (None: its default)


def check(video: str, questions: list[str], questions_file: str | None, specs: list[MethodSpec],
          budget: str | None, protocol: str, chunk_seconds: float | None = None) -> Request:
    """Every argument and the media file, torch-free: a mistake is one line before any model is loaded."""
    from acckv_cli.media.decode import probe

    asked = [check_question(q) for q in questions]
    if questions_file is not None:
        asked += read_questions(questions_file)
    if not asked:
        raise Fail("no question: give one or more after VIDEO, or --questions FILE", 2)
    protocol = parse_protocol(protocol)
    chunk_seconds = parse_chunk_seconds(chunk_seconds, [protocol])
    runs = [(spec, parse_budget(budget, spec)) for spec in specs]
    if budget is not None and len(specs) == 1 and specs[0].name == "full":
        notice("full keeps every entry: --budget is ignored")
    probe(video)  # fail fast on a bad file before loading the model
    return Request(video, asked, runs, protocol, chunk_seconds)


def run(video: str, questions: list[str], questions_file: str | None, opts: RunOptions, specs: list[MethodSpec],
        budget: str | None, protocol: str, report: ReportMode, as_json: bool,
        given: frozenset[str] = frozenset(), chunk_seconds: float | None = None) -> None:
    """`given`: the options typed on the command line (a cache file refuses those that would change it)."""
    if is_cache_path(video):
        answers = [ask_cache_file(video, cache_questions(questions, questions_file), opts, specs, budget, protocol,
                                  given)]
    else:
        answers = ask_video(check(video, questions, questions_file, specs, budget, protocol, chunk_seconds), opts)
    for text in answers[0][0].notices:
        notice(text)
    if as_json:
        for results in answers:
            for result in results:
                sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        return
    render_answers(answers, report)


def ask_video(request: Request, opts: RunOptions) -> list[list[AskResult]]:
    """Decode the clip once, then answer every question with every method asked (one list per method)."""
    from acckv_cli.answer.pipeline import STREAM, ask_decoded, decode_for_model
    from acckv_cli.terminal import quiet_libraries

    quiet_libraries()
    lm = opts.load()
    decoded = decode_for_model(lm, request.video, opts.fps, opts.max_pixels, opts.official_fps,
                               lazy_frames=request.protocol == STREAM)  # decoded once for every method
    answers = []
    for spec, parsed_budget in request.runs:
        results = ask_decoded(lm, decoded, request.questions, spec.name, parsed_budget, request.protocol,
                              opts.max_pixels, opts.max_new_tokens, spec.params, request.chunk_seconds)
        for result in results:
            result.method = spec.label  # `acckv:tau=0.9`, as asked
        answers.append(results)
    return answers


def cache_questions(questions: list[str], questions_file: str | None) -> list[str]:
    asked = [check_question(q) for q in questions] + (read_questions(questions_file) if questions_file else [])
    if not asked:
        raise Fail("no question: give one or more after VIDEO, or --questions FILE", 2)
    return asked


def ask_cache_file(path: str, questions: list[str], opts: RunOptions, specs: list[MethodSpec], budget: str | None,
                   protocol: str, given: frozenset[str]) -> list:
    """Answer from a saved cache (`acckv index`): its header is checked before the model loads, and an option
    that would change what the file holds (method, budget, protocol, preprocessing, dtype) is refused."""
    import dataclasses

    from acckv_cli.answer.cachefile import read_header
    from acckv_cli.answer.indexed import ask_file
    from acckv_cli.options import Dtype
    from acckv_cli.terminal import quiet_libraries

    if len(specs) > 1:
        raise Fail("a cache file holds one method's cache: give at most one -m with it", 2)
    spec = specs[0]
    header = read_header(path)
    saved, clash = header["preprocessing"], []
    if given & {"method", "method_options"}:
        config = json.loads(json.dumps(spec.build().config()))  # as the header holds it (tuples become lists)
        if config.pop("method") != header["method"]["name"] or config != header["method"]["params"]:
            clash.append(f"method {header['method']['label']}")
    if "budget" in given and parse_budget(budget).value != header["budget"]["value"]:
        clash.append(f"budget {header['budget']['text']}")
    if ("protocol" in given and parse_protocol(protocol) != header["protocol"]) or (
            "chunk_seconds" in given and header["protocol"] != "stream"):
        clash.append(f"protocol {header['protocol']}")
    elif "chunk_seconds" in given:  # the step a clip was streamed at made the file (its notices name it)
        clash.append("its own stream step")
    for name in ("fps", "max_pixels", "official_fps"):
        if name in given and getattr(opts, name) != saved[name]:
            clash.append(f"--{name.replace('_', '-')} {saved[name]}")
    if clash:
        raise Fail(f"{os.path.basename(path)} was indexed with {', '.join(clash)}: a saved cache cannot change; "
                   f"drop the option or index the clip again", 2)
    if opts.dtype == Dtype.auto:  # the keys and values were computed in this dtype: load the model in it
        opts = dataclasses.replace(opts, dtype=Dtype(header["model"]["dtype"]))
    elif opts.dtype.value != header["model"]["dtype"]:
        raise Fail(f"{os.path.basename(path)} holds {header['model']['dtype']} keys and values: pass --dtype "
                   f"{header['model']['dtype']} (or leave --dtype out)", 2)
    quiet_libraries()
    lm = opts.load()
    return ask_file(lm, path, questions, opts.max_new_tokens)


def render_answers(answers: list[list[AskResult]], report: ReportMode) -> None:
    """One block per method (its answers), the clip's summary, then each method's retention table(s)."""
    from rich.panel import Panel

    from acckv_cli.answer.report import render_layers, render_timeline
    from acckv_cli.answer.session import MEDIA_COMPRESSED  # one compression serves every question

    several_questions = len(answers[0]) > 1
    several_methods = len(answers) > 1
    for results in answers:
        for result in results:
            title = " · ".join(filter(None, [result.method if several_methods else "",
                                             result.question if several_questions else ""])) or "answer"
            out.print(Panel(result.answer or "(empty answer)", title=title, title_align="left"))
    out.print(summary_table(answers[0]))
    if several_methods:
        out.print(comparison_table(answers))
    if report == ReportMode.none:
        return
    for results in answers:
        first = results[0]
        shown = results[:1] if first.protocol in MEDIA_COMPRESSED else results  # one compression for all
        for result in shown:
            table = render_layers(result.report, full=report == ReportMode.full)
            if several_methods and result.method != result.report.method:
                table.title = f"{table.title} ({result.method})"
            if several_questions and first.protocol not in MEDIA_COMPRESSED:
                table.title = f"{table.title} — {result.question}"
            out.print(table)
        if report == ReportMode.full:
            out.print(render_timeline(first.report))


def summary_table(results: list[AskResult]) -> Table:
    """The clip and the first method's costs, as label / value lines (values wrap; nothing is cut)."""
    from acckv_cli.answer.session import MEDIA_COMPRESSED

    first = results[0]
    summary = new_table(None, "", "", left=("", ""), show_header=False, box=None)
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
                                f"MB, media kept {percent(first.kv['media_kept_ratio'] or 0)} "
                                f"({first.method} @ {first.budget.describe()}, protocol {first.protocol})")
    tm = first.timings
    if "cache_file" in m:
        summary.add_row("cache file", f"{os.path.basename(m['cache_file'])} read in {tm['load_s']:.3f} s: no decode, "
                                      f"encoders or media prefill")
    summary.add_row("time", f"decode {tm['decode_s']:.2f} s · encode {tm['encode_s']:.2f} s · media prefill "
                            f"{tm['media_prefill_s']:.2f} s · question {tm['question_prefill_s']:.2f} s · "
                            f"generate {tm['generate_s']:.2f} s")
    if len(results) > 1:
        rest = sum(r.timings["question_prefill_s"] + r.timings["generate_s"] + r.timings["media_prefill_s"]
                   for r in results[1:])
        summary.add_row("", f"{len(results) - 1} more question(s): {rest:.2f} s (decode, encoders"
                            f"{', compression' if first.protocol in MEDIA_COMPRESSED else ''} and media prefill reused)")
    return summary


def comparison_table(answers: list[list[AskResult]]) -> Table:
    """One row per method: budget, media and KV kept, and the time its questions took."""
    table = new_table("methods compared on the same clip", "method", "budget", "media kept", "KV MB", "time s",
                      left=("method",))
    for results in answers:
        first = results[0]
        seconds = sum(r.timings["media_prefill_s"] + r.timings["question_prefill_s"] + r.timings["generate_s"]
                      for r in results)
        table.add_row(first.method, first.budget.describe(), percent(first.kv["media_kept_ratio"]),
                      f"{first.kv['kv_bytes'] / 2**20:.2f}", f"{seconds:.2f}")
    return table
