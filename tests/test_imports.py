"""The package's import graph: the stages import only stages below them, commands never import `cli/app.py`,
and nothing forms a cycle."""
from __future__ import annotations

import ast
from pathlib import Path

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
    {"errors", "terminal", "testing"},  # shared and self-contained: no stage of the data path
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
