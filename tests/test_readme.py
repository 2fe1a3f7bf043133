"""The README's Python example runs as written (on the built-in model and a sample clip)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_python_api_example_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"### Python API\s+```python\n(.*?)```", readme, re.S).group(1)
    code = code.replace('load_model("/models/Qwen2.5-Omni-7B")', "load_model()")
    code = code.replace('"clip.mp4"', repr(str(ROOT / "samples" / "flute_red_circle.mp4")))
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("flute")
