"""The README is a user guide that points into docs/: its Python example runs, its links resolve, it stays short."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def local_links(markdown: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(markdown.read_text()) if "://" not in m.group(1)]


def test_python_api_example_runs(capsys):
    page = (ROOT / "docs" / "python-api.md").read_text()
    code = re.search(r"# Python API\s+```python\n(.*?)```", page, re.S).group(1)
    code = code.replace('load_model("/models/Qwen2.5-Omni-7B")', "load_model()")
    code = code.replace('"clip.mp4"', repr(str(ROOT / "samples" / "flute_red_circle.mp4")))
    exec(compile(code, "docs/python-api.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("flute")


def test_every_local_link_in_the_readme_and_docs_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = [f"{page.relative_to(ROOT)} -> {link}" for page in pages for link in local_links(page)
              if not (page.parent / link).exists()]
    assert broken == []
    assert any(link.startswith("docs/") for link in local_links(ROOT / "README.md"))


def test_the_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [gone](missing.md#part) [web](https://example.com)")
    assert local_links(page) == ["page.md", "missing.md"]


def test_the_readme_is_a_user_guide():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 350


def test_quick_start_is_two_command_lines_and_says_how_to_get_cpu_only_torch():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    setup = [b for b in re.findall(r"```bash\n(.*?)```", quick, re.S) if "python3 -m venv" in b]
    assert len(setup) == 2 and all(len(b.strip().splitlines()) == 1 for b in setup)  # the two command lines
    assert "GB" in quick and "--index-url https://download.pytorch.org/whl/cpu" in quick
    pins = dict(re.findall(r"(torch|torchvision)==([\d.]+)", quick))
    assert set(pins) == {"torch", "torchvision"}  # pinned inside pyproject's ranges: `pip install -e .` keeps them
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name, version in pins.items():
        low, high = re.search(rf'"{name}>=([\d.]+),<([\d.]+)"', pyproject).groups()
        as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
        assert as_tuple(low) <= as_tuple(version) < as_tuple(high), name
