"""acckv: offline audio-video question answering with modality-aware KV-cache compression (AccKV).

The tree is the data path, one subpackage per stage: `media` (a file → frames and a waveform) → `model`
(model inputs, token layout, generation) → `methods` (KV compression) → `answer` (answers and retention
reports from the compressed cache) → `evaluation` / `batch` → `cli`. Beside them: `bench` (costs), `synth`
(SynthAVQA), `demo` (the built-in model), `testing` (tiny offline models).

The Python API is importable from here; each name is imported on first use, so `import acckv_cli` stays
light (no torch until a name needs it).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "load_model": "acckv_cli.model.load",
    "ClipSession": "acckv_cli.answer.session",
    "get_method": "acckv_cli.methods",
    "Budget": "acckv_cli.methods",
    "decode_for_model": "acckv_cli.answer.pipeline",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'acckv_cli' has no attribute {name!r}")
