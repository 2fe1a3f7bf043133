"""Registry of compression methods by name (the `--method` values)."""

from __future__ import annotations

from acckv_cli.methods.base import CompressionMethod

METHODS: dict[str, type[CompressionMethod]] = {}


def register(cls: type[CompressionMethod]) -> type[CompressionMethod]:
    """Add a method class under its `name`; a second class with the same name is a programming error."""
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"a compression method named {cls.name!r} is already registered ({METHODS[cls.name].__name__})")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str, **params) -> CompressionMethod:
    """Instantiate a registered method; unknown names raise KeyError with the valid choices."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}") from None
    return cls(**params)
