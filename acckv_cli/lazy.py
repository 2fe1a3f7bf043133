"""torch, imported on first use: the method declarations and the token layout import this instead of torch.

`acckv methods`, `--help` and every argument check (method names and parameters, budgets, files) build the
method dataclasses; importing torch for that costs more than a second and ~600 MB, and a usage error must
come back at once. Code written against `torch` reads the same: `torch.cat(...)` imports torch the first time
any attribute is read, and each attribute is then cached on the proxy (no lookup cost after that).

`tests/test_imports.py` checks that `acckv_cli.methods` and `acckv_cli.options` import neither torch nor
transformers, so a module that needs torch at import time (a decorator, a base class) fails there.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class LazyModule:
    """Stands for the module `name`; the first attribute read imports it."""

    def __init__(self, name: str) -> None:
        self.__dict__["_lazy_name"] = name

    def __getattr__(self, attr: str) -> Any:  # only called for attributes not cached yet
        value = getattr(importlib.import_module(self.__dict__["_lazy_name"]), attr)
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_lazy_name']!r}>"


torch = LazyModule("torch")
functional = LazyModule("torch.nn.functional")


def no_grad(fn: F) -> F:
    """`@torch.no_grad()` without importing torch when the function is defined."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
