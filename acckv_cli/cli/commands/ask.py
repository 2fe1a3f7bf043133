"""`acckv ask`: answer questions about one clip and show what the compressed cache kept."""

from __future__ import annotations

import json
import os
import sys

from rich.panel import Panel
from rich.table import Table

from acckv_cli.errors import Fail
from acckv_cli.media.decode import probe
from acckv_cli.options import MethodSpec, ReportMode, RunOptions, parse_budget, parse_protocol
from acckv_cli.answer.pipeline import ask_clip, check_question, read_questions
from acckv_cli.answer.session import MEDIA_COMPRESSED
from acckv_cli.answer.report import render_layers, render_timeline
from acckv_cli.terminal import notice, out, quiet_libraries


def run(video: str, questions: list[str], questions_file: str | None, opts: RunOptions, spec: MethodSpec, budget: str,
        protocol: str, report: ReportMode, as_json: bool, given: frozenset[str] = frozenset()) -> None:
    """`given`: the options typed on the command line (a cache file refuses those that would change it)."""
    from acckv_cli.answer.cachefile import is_cache_path

    questions = [check_question(q) for q in questions]
    if questions_file is not None:
        questions += read_questions(questions_file)
    if not questions:
        raise Fail("no question: give one or more after VIDEO, or --questions FILE", 2)
    if is_cache_path(video):
        results = ask_cache_file(video, questions, opts, spec, budget, protocol, given)
    else:
        protocol = parse_protocol(protocol)
        parsed_budget = parse_budget(budget)
        probe(video)  # fail fast on a bad file before loading the model
        quiet_libraries()
        lm = opts.load()
        results = ask_clip(lm, video, questions, spec.name, parsed_budget, protocol, opts.fps, opts.max_pixels,
                           opts.max_new_tokens, spec.params, official_fps=opts.official_fps)
    for text in results[0].notices:
        notice(text)
    if as_json:
        for result in results:
            sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        return
    render_answers(results, report)


def ask_cache_file(path: str, questions: list[str], opts: RunOptions, spec: MethodSpec, budget: str, protocol: str,
                   given: frozenset[str]) -> list:
    """Answer from a saved cache (`acckv index`): its header is checked before the model loads, and an option
    that would change what the file holds (method, budget, protocol, preprocessing, dtype) is refused."""
    import dataclasses

    from acckv_cli.answer.cachefile import read_header
    from acckv_cli.answer.indexed import ask_file
    from acckv_cli.options import Dtype

    header = read_header(path)
    saved, clash = header["preprocessing"], []
    if given & {"method", "method_options"}:
        config = json.loads(json.dumps(spec.build().config()))  # as the header holds it (tuples become lists)
        if config.pop("method") != header["method"]["name"] or config != header["method"]["params"]:
            clash.append(f"method {header['method']['label']}")
    if "budget" in given and parse_budget(budget).value != header["budget"]["value"]:
        clash.append(f"budget {header['budget']['text']}")
    if "protocol" in given and parse_protocol(protocol) != header["protocol"]:
        clash.append(f"protocol {header['protocol']}")
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


def render_answers(results, report: ReportMode) -> None:
    several = len(results) > 1
    for result in results:
        out.print(Panel(result.answer or "(empty answer)", title=result.question if several else "answer",
                        title_align="left"))
    out.print(summary_table(results))
    if report == ReportMode.none:
        return
    first = results[0]
    shown = results[:1] if first.protocol in MEDIA_COMPRESSED else results  # one compression for all
    for result in shown:
        table = render_layers(result.report, full=report == ReportMode.full)
        if several and first.protocol not in MEDIA_COMPRESSED:
            table.title = f"{table.title} — {result.question}"
        out.print(table)
    if report == ReportMode.full:
        out.print(render_timeline(first.report))


def summary_table(results) -> Table:
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
