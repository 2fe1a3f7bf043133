"""Micro-benchmark of the hot paths of issue #6: each method's per-layer compression step, the decode
attention kernel, and `LayerContext.mask`.

Builds a 1-layer Qwen2.5-Omni-3B-shaped thinker (random weights), runs one prefill of an N-token synthetic
prompt with the real hooks to capture the layer's inputs, then replays every method's per-layer step
(`Compression._compress`, what the hook runs) `--repeat` times and reports the best time. With
`--profile NAME`, torch.profiler's top ops for that method are printed too.

Before/after comparisons run this script twice, alternately, on two source trees:

    git archive HEAD acckv_cli | tar -x -C /tmp/before && cp -r acckv_cli/bench /tmp/before/acckv_cli/
    PYTHONPATH=/tmp/before python benchmarks/hot_paths.py --sizes 8k --threads 1 --out before.json
    python benchmarks/hot_paths.py --sizes 8k --threads 1 --out after.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from acckv_cli.bench.config import parse_sizes  # noqa: E402
from acckv_cli.bench.machine import machine_info  # noqa: E402
from acckv_cli.bench.prefill import capture_prefill, replay  # noqa: E402
from acckv_cli.bench.prompts import synthetic_prompt  # noqa: E402
from acckv_cli.bench.shapes import QWEN25_OMNI_3B, build_thinker  # noqa: E402
from acckv_cli.model.layout import Modality  # noqa: E402
from acckv_cli.methods import Budget, attention  # noqa: E402
from acckv_cli.methods.base import LayerContext  # noqa: E402


def best_of(fn, repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), times


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="8k")
    p.add_argument("--methods", default="acckv,acckv-nocal,snapkv,h2o,lookm,taskfocus")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers
    transformers.utils.logging.set_verbosity_error()
    shape = QWEN25_OMNI_3B
    thinker = build_thinker(shape, 1, torch.float32)
    module = thinker.get_decoder().layers[0].self_attn
    out = {"source": str(Path(attention.__file__).parent), "machine": machine_info(), "sizes": {}}
    print("methods from", out["source"], flush=True)
    for n in parse_sizes(args.sizes):
        prompt = synthetic_prompt(n, shape)
        _, inputs, _ = capture_prefill(thinker, prompt, 0.2)
        row = {}
        for name in args.methods.split(","):
            best, times = best_of(lambda: replay(thinker, prompt.layout, name, 0.2, inputs), args.repeat)
            row[name] = {"best_s": best, "all_s": times}
            print(f"N={n:6d} {name:12s} best {best * 1e3:9.1f} ms  all {[round(t * 1e3, 1) for t in times]}",
                  flush=True)
            if name == args.profile:
                from torch.profiler import ProfilerActivity, profile
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    replay(thinker, prompt.layout, name, 0.2, inputs)
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))
        # Decode attention kernel: one query against an n-entry cache, as acckv_sdpa runs it.
        q = torch.randn(1, shape.heads, 1, shape.head_dim)
        k = torch.randn(1, shape.kv_heads, n, shape.head_dim)
        v = torch.randn(1, shape.kv_heads, n, shape.head_dim)
        with torch.inference_mode():
            kernel = lambda: attention.acckv_sdpa(module, q, k, v, None, dropout=0.0, scaling=module.scaling)  # noqa: E731
            kernel()
            best, _ = best_of(kernel, 20)
        row["decode_attention_ms"] = best * 1e3
        print(f"N={n:6d} acckv_sdpa decode (q_len 1) {best * 1e3:.2f} ms", flush=True)
        # LayerContext.mask: the cost of rebuilding a modality mask (AccKV calls it ~15× per layer).
        saved = inputs[0]
        ctx = LayerContext(0, 1, module, saved["hidden"], saved["cos"], saved["sin"], saved["keys"], saved["values"],
                           prompt.layout, Budget(0.2), {})
        best, _ = best_of(lambda: ctx.mask(Modality.VIDEO), 50)
        row["mask_us"] = best * 1e6
        print(f"N={n:6d} LayerContext.mask {best * 1e6:.1f} µs per call", flush=True)
        out["sizes"][n] = row
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
