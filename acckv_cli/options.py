"""The run options every model-running command shares, validated once, and their command-line form.

`RunOptions` travels from the command line to the library instead of a dozen positional arguments; it is
checked when it is built, before any model is loaded, so a bad value is a usage error (exit 2) at once.
Method specs are the same in every command: `NAME` or `NAME:key=value,key=value` (`acckv:tau=0.9`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional


from acckv_cli.errors import UsageError

MIN_PIXELS_FLAG = 4 * 28 * 28


class Device(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Dtype(str, enum.Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class ReportMode(str, enum.Enum):
    compact = "compact"
    full = "full"
    none = "none"


class Format(str, enum.Enum):
    jsonl = "jsonl"
    csv = "csv"


@dataclass(frozen=True)
class MethodSpec:
    """A method and its hyperparameters, as written on the command line (`label`)."""

    label: str
    name: str
    params: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, aliases: dict[str, str] | None = None,
              extra: list[str] | None = None) -> "MethodSpec":
        """`name` or `name:key=value,...` (an alias such as `acckv-no-AF` first resolves to its spec), plus
        `extra` `key=value` settings (`-o`); the method is built once here so that an unknown name, field or
        value is a usage error before any work."""
        from acckv_cli.methods import get_method

        label = text.strip()
        spec = (aliases or {}).get(label, label)
        name, _, rest = spec.partition(":")
        parts = [p.strip() for p in rest.split(",")] + [p.strip() for p in extra or []]
        if extra:
            label = f"{name.strip()}:{','.join(filter(None, parts))}"
        params = {}
        for part in filter(None, parts):
            key, eq, value = part.partition("=")
            if not eq:
                raise UsageError(f"bad method spec {label!r}: parameter {part!r} must look like key=value")
            params[key.strip()] = value.strip()  # converted to the field's type by get_method
        try:
            method = get_method(name.strip(), **params)
            params = {key: getattr(method, key) for key in params}  # typed: "0.9" -> 0.9
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None  # "unknown method 'x'; choose one of: …"
        except (TypeError, ValueError) as exc:
            raise UsageError(f"bad method spec {label!r}: {exc}") from None
        return cls(label, name.strip(), params)

    def build(self):
        from acckv_cli.methods import get_method
        return get_method(self.name, **self.params)


@dataclass(frozen=True)
class RunOptions:
    """How to load the model and prepare a clip (validated when built)."""

    model: Optional[str] = None
    device: Device = Device.auto
    dtype: Dtype = Dtype.auto
    fps: float = 2.0
    max_pixels: Optional[int] = None
    max_new_tokens: int = 32
    official_fps: bool = False

    @classmethod
    def build(cls, model: Optional[str], device: Device, dtype: Dtype, fps: float, max_pixels: Optional[int],
              max_new_tokens: int, official_fps: bool) -> "RunOptions":
        return cls(model, Device(device), Dtype(dtype), fps, max_pixels, max_new_tokens, official_fps)

    def __post_init__(self):
        if not 1 <= self.fps <= 30:
            raise UsageError("--fps must be between 1 and 30 (below 1, Qwen's audio and video chunks fall out of step)")
        if self.max_pixels is not None and self.max_pixels < MIN_PIXELS_FLAG:
            raise UsageError(f"--max-pixels must be at least {MIN_PIXELS_FLAG} (a 56×56 frame)")
        if self.max_new_tokens < 1:
            raise UsageError("--max-new-tokens must be at least 1")

    def load(self):
        """The model these options name (the built-in one by default)."""
        from acckv_cli.model.load import load_model
        return load_model(self.model, self.device.value, self.dtype.value)


def parse_budget(text: str):
    from acckv_cli.methods import Budget
    return Budget.parse(text)


def parse_protocol(text: str) -> str:
    from acckv_cli.answer.session import check_protocol
    return check_protocol(text.strip())
