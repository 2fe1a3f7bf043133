"""`acckv bench`: the cost of each method on a random 3B-shaped thinker, of many questions about one clip, of
streaming, or of every method at a real checkpoint's full depth on a device (`--device`)."""

from __future__ import annotations

import json
import sys
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


def run_device(device, shape, sizes, layers, dtype, methods, budgets, decode_steps, out_json, out_md, tiny) -> None:
    """Every method at a real checkpoint's full depth on a device (`bench/device.py`); exit code 1 when the
    masked-full equivalence misses its tolerance."""
    if device not in ("cpu", "cuda") or dtype not in ("float32", "bfloat16", "float16"):
        raise Fail("--device takes cpu or cuda, and --dtype float32, bfloat16 or float16", 2)
    if (shape or "7b") not in ("3b", "7b"):
        raise Fail(f"--shape takes 3b or 7b, not {shape!r}", 2)
    for name in filter(None, (m.strip() for m in (methods or "").split(","))):
        MethodSpec.parse(name)  # names checked before torch is imported
    from acckv_cli.bench.config import parse_sizes  # (imports torch: sizes are checked after, as in `run`)

    try:
        parsed_sizes = parse_sizes(sizes) if sizes else None
        budget_values = tuple(float(b) for b in budgets.split(",") if b.strip())
    except ValueError as exc:
        raise Fail(str(exc) if "--sizes" in str(exc) else f"--budgets takes ratios like 0.2,0.1, not {budgets!r}", 2)
    if layers is not None and layers < 1 or decode_steps < 1 or not budget_values:
        raise Fail("--layers and --decode-steps must be at least 1, and --budgets list ratios", 2)
    quiet_libraries()
    from acckv_cli.bench.device import DeviceBenchConfig, markdown, run_device_bench
    from acckv_cli.methods import METHODS

    cfg = DeviceBenchConfig(shape="tiny" if tiny else (shape or "7b"), layers=layers, dtype=dtype, device=device,
                            budgets=budget_values, decode_steps=decode_steps, out_json=out_json)
    if parsed_sizes:
        cfg.sizes = parsed_sizes
    if methods:
        cfg.methods = tuple(m.strip() for m in methods.split(",") if m.strip())
        unknown = [m for m in cfg.methods if m not in METHODS]
        if unknown:
            raise Fail(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(sorted(METHODS))}", 2)
    try:
        result = run_device_bench(cfg, progress=lambda text: err.print(f"… {text}", highlight=False))
    except RuntimeError as exc:
        raise Fail(str(exc), 1) from None
    table = markdown(result)
    sys.stdout.write(table)  # plain Markdown: a Rich console would wrap the wide rows
    if out_md:
        Path(out_md).write_text(table)
    if not result["equivalence_ok"]:
        raise Fail("masked-full equivalence outside its tolerance (see the equivalence table)", 1)


def check_modes(device: str | None, shape: str | None, stream: bool, question_counts: str | None) -> None:
    """One bench mode per run; `--shape` belongs to the device bench."""
    modes = [name for name, on in (("--device", device is not None), ("--stream", stream),
                                   ("--question-counts", question_counts is not None)) if on]
    if len(modes) > 1:
        raise Fail(f"{' and '.join(modes)} are separate bench modes: give one", 2)
    if shape is not None and device is None:
        raise Fail("--shape chooses the model of the device bench: add --device cpu or --device cuda", 2)


def _precheck(dtype: str, methods: str | None, budgets: str | None) -> None:
    """The options that need no torch to check, checked before torch is imported (sizes are checked after)."""
    if dtype not in DTYPES:
        raise Fail(f"--dtype must be float32 or bfloat16, not {dtype!r}", 2)
    for name in filter(None, (m.strip() for m in (methods or "").split(","))):
        MethodSpec.parse(name)
    for budget in filter(None, (b.strip() for b in (budgets or "").split(","))):
        parse_budget(budget)
