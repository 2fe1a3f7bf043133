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
    return cls(**checked_params(cls, params))


def checked_params(cls: type[CompressionMethod], params: dict) -> dict:
    """`params` converted to and checked against each field's declared type. Text values (from the command
    line, `tau=0.9`) are converted; an int is a valid float. An unknown name or a value that does not fit
    is a ValueError naming the field."""
    types = {opt["name"]: opt["type"] for opt in cls.options()}
    out = {}
    for key, value in params.items():
        if key not in types:
            raise ValueError(f"{cls.name} has no parameter {key!r}; it has: {', '.join(types) or 'none'}")
        out[key] = _fit(cls.name, key, value, types[key])
    return out


def _fit(method: str, key: str, value, declared: str):
    optional = declared.endswith("| None")
    base = declared.split("|")[0].strip()
    if isinstance(value, str) and base != "str":
        if optional and value.lower() == "none":
            return None
        value = _from_text(value, base)
    if value is None and optional:
        return value
    if base == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    python_type = {"bool": bool, "int": int, "float": float, "str": str}.get(base)
    if python_type is not None and (not isinstance(value, python_type) or (base == "int" and isinstance(value, bool))):
        raise ValueError(f"{method} parameter {key!r} must be {declared}, not {value!r}")
    return value


def _from_text(text: str, base: str):
    lowered = text.strip().lower()
    if base == "bool" and lowered in ("true", "false", "1", "0", "yes", "no"):
        return lowered in ("true", "1", "yes")
    for cast in {"int": (int,), "float": (float,)}.get(base, ()):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
