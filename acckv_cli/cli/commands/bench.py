"""`acckv bench`: the cost of each method on a random 3B-shaped thinker, or of many questions about one clip."""

from __future__ import annotations

import json
from pathlib import Path

from acckv_cli.errors import Fail
from acckv_cli.options import MethodSpec, parse_budget, parse_chunk_seconds, parse_protocol
from acckv_cli.terminal import err, out, quiet_libraries

DTYPES = ("float32", "bfloat16")


def run(sizes, long, layers, dtype, methods, budgets, decode_steps, repeat, threads, out_json, plot, out_md,
        tiny) -> None:
    """Prefill overhead, decode speed, KV bytes and memory of every method, side by side in one process."""
    _precheck(dtype, methods, budgets)
    from acckv_cli.bench.config import DEFAULT_METHODS, config_from
    from acckv_cli.bench.costs import main_with

    quiet_libraries()
    try:
        cfg = config_from(sizes, long, layers, dtype, methods or ",".join(DEFAULT_METHODS), budgets, decode_steps,
                          threads, out_json, plot, tiny, repeat, out_md)
    except ValueError as exc:
        raise Fail(str(exc), 2) from None
    main_with(cfg, console=out, progress_console=err)


def run_questions(questions, protocols, sizes, layers, dtype, new_tokens, threads, out_json, tiny) -> None:
    """N questions about one clip, with and without media reuse (`bench/questions.py`)."""
    _precheck(dtype, None, None)
    protocol_list = tuple(parse_protocol(p) for p in protocols.split(",") if p.strip())
    import torch

    from acckv_cli.bench.config import parse_sizes
    from acckv_cli.bench.prompts import synthetic_prompt
    from acckv_cli.bench.questions import render, run_questions as measure
    from acckv_cli.bench.shapes import build_thinker, shape_for

    try:
        counts = tuple(sorted({int(q) for q in questions.split(",") if q.strip()}))
        (size,) = parse_sizes(sizes or "8k")
    except ValueError:
        raise Fail("--question-counts takes counts like 1,4,10 and --sizes one prompt length like 8k", 2) from None
    if not counts or counts[0] < 1:
        raise Fail("--question-counts takes positive counts like 1,4,10", 2)
    quiet_libraries()
    if threads:
        torch.set_num_threads(threads)
    shape = shape_for(tiny)
    thinker = build_thinker(shape, layers, getattr(torch, dtype))
    result = measure(thinker, synthetic_prompt(size, shape), counts, protocol_list, new_tokens=new_tokens,
                     progress=None if tiny else (lambda text: err.print(text, highlight=False)))
    result.update(model={"shape": shape.name, "layers": layers, "dtype": dtype},
                  machine={"torch_threads": torch.get_num_threads()})
    render(result, out)
    if out_json:
        Path(out_json).write_text(json.dumps(result, indent=1))


def run_stream(minutes, layers, dtype, methods, media_budget, chunk_seconds, threads, out_json, plot, out_md,
               tiny) -> None:
    """Streaming vs one-shot prefill against clip length (`bench/stream.py`)."""
    _precheck(dtype, (methods or "acckv").split(",")[0], None)
    parse_chunk_seconds(chunk_seconds, ["stream"])
    from acckv_cli.bench.stream import command

    quiet_libraries()
    command(minutes, layers, dtype, methods, media_budget, chunk_seconds, threads, out_json, plot, out_md, tiny,
            console=out, progress_console=err)


def _precheck(dtype: str, methods: str | None, budgets: str | None) -> None:
    """The options that need no torch to check, checked before torch is imported (sizes are checked after)."""
    if dtype not in DTYPES:
        raise Fail(f"--dtype must be float32 or bfloat16, not {dtype!r}", 2)
    for name in filter(None, (m.strip() for m in (methods or "").split(","))):
        MethodSpec.parse(name)
    for budget in filter(None, (b.strip() for b in (budgets or "").split(","))):
        parse_budget(budget)
