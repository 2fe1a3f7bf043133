"""What `acckv bench` (the cost mode) runs: sizes, layers, methods, budgets, steps; parsed from the options."""

from __future__ import annotations

from dataclasses import dataclass

from acckv_cli.bench.shapes import ModelShape, shape_for
from acckv_cli.methods import Budget

DEFAULT_SIZES = (2048, 8192, 16384)
LONG_SIZE = 32768
DEFAULT_BUDGETS = (0.2, 0.1)
# Order of the rows; `full` shows the cost of the framework itself (hooks + statistics, no eviction).
DEFAULT_METHODS = ("acckv", "snapkv", "pyramidkv", "h2o", "lookm", "streamingllm", "random", "fastv",
                   "taskfocus", "full")


@dataclass
class BenchConfig:
    sizes: tuple[int, ...] = DEFAULT_SIZES
    layers: int = 2
    dtype: str = "float32"
    methods: tuple[str, ...] = DEFAULT_METHODS
    budgets: tuple[float, ...] = DEFAULT_BUDGETS
    decode_steps: int = 16
    warmup_steps: int = 2
    repeat: int = 3
    threads: int | None = None
    tiny: bool = False
    seed: int = 0
    out_json: str | None = None
    plot: str | None = None
    out_md: str | None = None

    @property
    def shape(self) -> ModelShape:
        return shape_for(self.tiny)


def parse_sizes(text: str) -> tuple[int, ...]:
    out = []
    for part in str(text).split(","):
        part = part.strip().lower()
        if not part:
            continue
        out.append(int(float(part[:-1]) * 1024) if part.endswith("k") else int(part))
    if not out or min(out) < 64:
        raise ValueError(f"--sizes must list prompt lengths ≥ 64 (e.g. 2k,8k,16k), got {text!r}")
    return tuple(out)


def config_from(sizes: str | None, long: bool, layers: int, dtype: str, methods: str, budgets: str,
                decode_steps: int, threads: int | None, out_json: str | None, plot_path: str | None,
                tiny: bool = False, repeat: int = 3, out_md: str | None = None) -> BenchConfig:
    parsed = parse_sizes(sizes) if sizes else DEFAULT_SIZES
    if long and LONG_SIZE not in parsed:
        parsed = (*parsed, LONG_SIZE)
    if layers < 1:
        raise ValueError("--layers must be at least 1")
    if decode_steps < 1:
        raise ValueError("--decode-steps must be at least 1")
    if repeat < 1:
        raise ValueError("--repeat must be at least 1")
    budget_values = tuple(float(Budget.parse(b).value) for b in budgets.split(",") if b.strip())
    if not budget_values or any(b > 1 for b in budget_values):
        raise ValueError("--budgets must be ratios such as 0.2,0.1")
    return BenchConfig(sizes=parsed, layers=layers, dtype=dtype,
                       methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                       budgets=budget_values, decode_steps=decode_steps, threads=threads, tiny=tiny,
                       out_json=out_json, plot=plot_path, repeat=repeat, out_md=out_md)
