"""The package's import graph: the stages import only stages below them, commands never import `cli/app.py`,
and nothing forms a cycle."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "acckv_cli"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, top_level_only: bool, modules: set[str]) -> set[str]:
    """acckv_cli modules imported by `path` (module level only, or anywhere in it); `from P import m` of a
    submodule m counts as importing m, not P's `__init__`."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
            names |= submodules if len(submodules) == len(node.names) else submodules | {base}
    return {n for n in names if n.startswith("acckv_cli")}


def graph(top_level_only: bool) -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imported(path, top_level_only, set(modules)) & set(modules) - {name}
            for name, path in modules.items()}


def unresolved_imports() -> list[tuple[str, str]]:
    """(module, name) for every acckv_cli import, anywhere in a module, that names no module or package."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return sorted((name, dep) for name, path in modules.items()
                  for dep in imported(path, False, set(modules)) - set(modules))


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else path + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_no_module_imports_the_cli():
    importers = sorted(m for m, deps in graph(top_level_only=False).items() if "acckv_cli.cli.app" in deps)
    assert importers == ["acckv_cli.__main__"]  # `python -m acckv_cli` is the only other way in


def test_no_import_cycles_at_module_level():
    assert find_cycle(graph(top_level_only=True)) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# The data path, bottom to top. A module may import its own stage and the stages below it, anywhere in the
# module (function-level imports included: a lazy import upwards is still a dependency upwards).
STAGES = [
    {"errors", "lazy", "terminal", "testing"},  # shared and self-contained: no stage of the data path
    {"media", "synth"},              # synth writes its clips with media's ffmpeg
    {"model"},
    {"methods"},
    {"answer"},
    {"options"},                     # the validated request: checks names against methods, model, protocols
    {"evaluation", "bench"},
    {"batch"},
    {"cli", "demo", "__main__"},     # demo's training loop runs evaluation's scorer
]


def stage_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    if top == "__init__":
        return len(STAGES)  # the package root re-exports the public API lazily: above everything
    return next(i for i, names in enumerate(STAGES) if top in names)


def upward_imports(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, d) for m, deps in edges.items() for d in deps
                  if d != "acckv_cli" and stage_of(d) > stage_of(m))


def test_every_import_names_a_module():
    """A module moved without updating an import (even a lazy one inside a function) fails here, not in use."""
    assert unresolved_imports() == []


def test_every_module_belongs_to_a_stage():
    for module in graph(top_level_only=False):
        stage_of(module)  # StopIteration names a new top-level module that no stage lists


def test_each_stage_imports_only_stages_below_it():
    assert upward_imports(graph(top_level_only=False)) == []


def test_the_stage_check_finds_an_upward_import():
    edges = {"acckv_cli.methods.acckv": {"acckv_cli.cli.app", "acckv_cli.model.layout"}}
    assert upward_imports(edges) == [("acckv_cli.methods.acckv", "acckv_cli.cli.app")]


def test_the_top_level_stays_small():
    modules = [p for p in PACKAGE.glob("*.py")]
    packages = [p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()]
    assert len(modules) <= 12 and len(packages) >= 5


# ---------------------------------------------------------------------------- what an argument check imports
# Every command checks its arguments and files before it imports torch or transformers (a usage error must come
# back at once, not after ~1-8 s of imports). Measured as the import graph, not the clock: each case runs the
# command line in a fresh interpreter and reports which heavy modules were imported by the time it returned.
HEAVY = ("torch", "transformers")
ROOT = Path(__file__).resolve().parents[1]
CLIP = str(ROOT / "samples" / "flute_red_circle.mp4")
PROBE = """
import json, sys
from acckv_cli.cli.app import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def heavy_imports(*args: str, cwd: Path = ROOT) -> tuple[int, list[str]]:
    # this checkout's package, whatever the working folder (an installed acckv may point elsewhere)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=120)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report["code"], report["heavy"]


@pytest.mark.parametrize("args", [
    ["ask", "missing.mp4", "What plays?"],                                  # a missing file
    ["ask", CLIP, "What plays?", "-b", "150%"],                             # a budget
    ["ask", CLIP, "What plays?", "--protocol", "later"],                    # a protocol
    ["ask", CLIP, "What plays?", "-m", "acckv", "-o", "merge=none"],        # a method parameter
    ["ask", CLIP, "What plays?", "-o", "head_reduction=bogus"],             # a method parameter's value
    ["ask", CLIP, "What plays?", "--model", "/no/such/model"],              # a model folder
    ["ask", CLIP, ""],                                                      # an empty question
    ["inspect", CLIP, "What plays?", "-m", "snapkv"],
    ["batch", "samples", "--question", "q", "--out", "r.jsonl", "-m", "nope"],
    ["batch", "samples", "--question", "q", "--out", "r.jsonl", "--shard", "3/2"],
    ["eval", "--manifest", "missing.jsonl"],                                # a manifest
    ["eval", "-b", "abc"],
    ["bench", "--methods", "nope"],
    ["ask", CLIP, "What plays?", "--protocol", "stream", "--chunk-seconds", "3"],   # a stream step
    ["ask", CLIP, "What plays?", "--chunk-seconds", "4"],                   # a step without streaming
    ["batch", "samples", "--question", "q", "--out", "r.jsonl", "--chunk-seconds", "5", "--protocol", "stream"],
    ["eval", "--protocol", "context", "--chunk-seconds", "4"],
    ["bench", "--stream", "--chunk-seconds", "3"],
    ["bench", "--device", "tpu"],
    ["bench", "--device", "cpu", "--methods", "nope"],
    ["bench", "--shape", "7b"],                                             # --shape without --device
])
def test_argument_errors_import_neither_torch_nor_transformers(args, tmp_path):
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    code, heavy = heavy_imports(*args, cwd=tmp_path)
    assert code == 2 and heavy == []


@pytest.mark.parametrize("args", [["methods"], ["methods", "--options", "--json"], ["--help"], ["ask", "--help"],
                                  ["eval", "-h"]])
def test_methods_and_help_import_neither_torch_nor_transformers(args):
    code, heavy = heavy_imports(*args)
    assert code in (0, None) and heavy == []


def test_the_import_probe_sees_torch():
    """The probe can fail: a command that runs the model does import torch."""
    code, heavy = heavy_imports("ask", CLIP, "What instrument plays?", "--max-new-tokens", "1", "--json")
    assert code in (0, None) and "torch" in heavy


def test_method_dataclasses_build_without_torch():
    code = ("import sys; from acckv_cli.methods import METHODS, get_method; "
            "[get_method(name) for name in METHODS]; print(sorted(m for m in %r if m in sys.modules))" % (HEAVY,))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_lazy_torch_is_torch():
    import torch

    from acckv_cli.lazy import functional, no_grad, torch as lazy_torch

    assert lazy_torch.cat is torch.cat and functional.softmax is torch.nn.functional.softmax

    @no_grad
    def grad_enabled():
        return torch.is_grad_enabled()

    assert torch.is_grad_enabled() and not grad_enabled()
