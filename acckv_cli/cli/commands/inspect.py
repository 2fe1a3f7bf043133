"""`acckv inspect`: where the question's attention goes, per layer and per second (one prefill, full cache).

Arguments, the method and the file are checked before torch is imported.
"""

from __future__ import annotations

import json
import os
import sys

from acckv_cli.answer.questions import check_question
from acckv_cli.answer.cachename import is_cache_path
from acckv_cli.errors import Fail
from acckv_cli.options import MethodSpec, RunOptions
from acckv_cli.terminal import err, notice, out

PLOT_SUFFIXES = (".png", ".pdf", ".svg")
MEASURED = "acckv"  # inspect shows AccKV's scores, weights and priorities; other methods have none of them


def check(video: str, question: str, spec: MethodSpec, plot_path: str | None) -> str:
    from acckv_cli.media.decode import probe

    if is_cache_path(video):  # the attention it measures needs the whole prompt, which a cache no longer holds
        raise Fail(f"inspect needs the clip itself, not a cache file: run it on the video {os.path.basename(video)} "
                   f"was indexed from", 2)
    question = check_question(question)
    if spec.name != MEASURED:
        raise Fail(f"inspect measures AccKV's scores and priorities: -m takes acckv with its options (e.g. "
                   f"-m acckv:score_queries=all), not {spec.name}", 2)
    if plot_path is not None:
        if os.path.splitext(plot_path)[1].lower() not in PLOT_SUFFIXES:
            raise Fail(f"--plot must name a .png file (or .pdf, .svg), not {plot_path!r}", 2)
        folder = os.path.dirname(os.path.abspath(plot_path))
        if not os.path.isdir(folder):
            raise Fail(f"folder of --plot does not exist: {folder!r}", 2)
    probe(video)  # fail fast on a bad file before loading the model
    return question


def run(video: str, question: str, opts: RunOptions, spec: MethodSpec, plot_path: str | None, as_json: bool) -> None:
    question = check(video, question, spec, plot_path)
    from acckv_cli.answer.inspection import inspect_clip, plot, render_layers, render_timeline
    from acckv_cli.terminal import quiet_libraries

    quiet_libraries()
    lm = opts.load()
    result = inspect_clip(lm, video, question, opts.fps, opts.max_pixels, opts.official_fps, acckv=spec.build())
    if plot_path is not None:
        try:
            plot(result, plot_path)
        except OSError as exc:
            raise Fail(f"cannot write --plot {plot_path!r}: {exc.strerror or exc}", 2) from None
    for text in result["notices"]:
        notice(text)
    if plot_path is not None:
        err.print(f"wrote {plot_path}", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    out.print(render_layers(result))
    out.print(render_timeline(result))
