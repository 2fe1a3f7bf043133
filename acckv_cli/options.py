"""The run options every model-running command shares, validated once, and their command-line form.

`RunOptions` travels from the command line to the library instead of a dozen positional arguments; it is
checked when it is built, before any model is loaded, so a bad value is a usage error (exit 2) at once.
Method specs are the same in every command: `-m NAME` or `-m NAME:key=value,key=value` (`acckv:tau=0.9`),
plus `-o key=value` for every method of the run.

Nothing here imports torch or transformers (the method dataclasses import torch lazily, `acckv_cli.lazy`):
every argument error comes back in a fraction of the time `import torch` takes (tests/test_imports.py).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from acckv_cli.errors import ProtocolError, UsageError

MIN_PIXELS_FLAG = 4 * 28 * 28
DEFAULT_METHOD = "acckv"
DEFAULT_BUDGET = "0.2"
# The protocols of `answer.session` (a test checks the two lists are equal); repeated here because that
# module imports torch and transformers, and a protocol is checked before either is imported.
PROTOCOLS = ("query-aware", "context", "prefill", "stream")
DEFAULT_PROTOCOL = "query-aware"  # of `ask` and `batch` (answer.pipeline's; measured: docs/commands.md)


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


def parse_methods(texts: list[str] | None, extra: list[str] | None = None, aliases: dict[str, str] | None = None,
                  default: tuple[str, ...] = (DEFAULT_METHOD,)) -> list[MethodSpec]:
    """Every `-m` of a command (or `default`), each with every `-o`; the same method twice is a usage error."""
    texts = list(texts or default)
    try:
        specs = [MethodSpec.parse(text, aliases, extra) for text in texts]
    except UsageError as exc:
        if extra and len(texts) > 1 and "has no parameter" in str(exc):  # -o reaches every method
            raise UsageError(f"{exc} (-o sets every method of the run; for one method write -m NAME:KEY=VALUE)")
        raise
    seen: set[str] = set()
    for spec in specs:
        if spec.label in seen:
            raise UsageError(f"-m {spec.label} is given twice")
        seen.add(spec.label)
    return specs


def single_method(texts: list[str] | None, extra: list[str] | None, command: str):
    """The one method of a command that runs one (`batch`, `inspect`): a second `-m` is a usage error, not
    silently dropped."""
    if texts and len(texts) > 1:
        raise UsageError(f"{command} runs one method, got -m {' -m '.join(texts)}; compare methods with "
                         f"`acckv ask CLIP QUESTION -m A -m B` or `acckv eval -m A -m B`")
    return parse_methods(texts, extra)[0]


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
        if model is not None and model.startswith("~"):  # a quoted "~/models/x" is a folder too
            model = os.path.expanduser(model)
        return cls(model, Device(device), Dtype(dtype), fps, max_pixels, max_new_tokens, official_fps)

    def __post_init__(self):
        if not 1 <= self.fps <= 30:
            raise UsageError("--fps must be between 1 and 30 (below 1, Qwen's audio and video chunks fall out of step)")
        if self.max_pixels is not None and self.max_pixels < MIN_PIXELS_FLAG:
            raise UsageError(f"--max-pixels must be at least {MIN_PIXELS_FLAG} (a 56×56 frame)")
        if self.max_new_tokens < 1:
            raise UsageError("--max-new-tokens must be at least 1")
        check_model(self.model)

    def load(self):
        """The model these options name (the built-in one by default)."""
        from acckv_cli.model.load import load_model
        return load_model(self.model, self.device.value, self.dtype.value)


def looks_like_path(model: str) -> bool:
    """A folder, not a hub id: hub ids are `name` or `owner/name`, never absolute, `./`, `~` or deeper."""
    return (os.path.isabs(model) or model.startswith((".", "~")) or model.count("/") > 1
            or (os.sep != "/" and os.sep in model) or model.endswith("/"))


def check_model(model: Optional[str]) -> None:
    """`--model` as a folder: it exists and holds a config.json. A hub id is checked when loading (in the
    local Hugging Face cache only: nothing is downloaded)."""
    if model is None:
        return
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"--model folder {model!r} has no config.json: give the folder of a Qwen2.5-Omni or "
                             f"Qwen3-Omni checkpoint (full or thinker-only)")
    elif path.exists():
        raise UsageError(f"--model {model!r} is a file: give the checkpoint's folder")
    elif looks_like_path(model):
        raise UsageError(f"--model folder not found: {model!r}")


def parse_budget(text: str | None, spec: MethodSpec | None = None):
    """The budget of `-b` (default 0.2). `full` keeps every entry whatever it is given: its budget is 1."""
    from acckv_cli.methods.budget import Budget

    if spec is not None and spec.name == "full":
        if text is not None:
            Budget.parse(text)  # still a usage error when malformed
        return Budget(1.0)
    return Budget.parse(DEFAULT_BUDGET if text is None else text)


def parse_protocol(text: str) -> str:
    name = text.strip()
    if name not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    return name


def parse_chunk_seconds(value: float | None, protocols) -> float | None:
    """`--chunk-seconds`: the step of `--protocol stream`, a whole number of Qwen2.5-Omni's 2-s audio/video
    chunks (None: the stream's own default); refused when nothing in `protocols` streams."""
    if value is None:
        return None
    if not (value >= 2 and value % 2 == 0):
        raise UsageError(f"--chunk-seconds {value:g} is not a multiple of Qwen's 2-s audio/video chunk (2, 4, 6, …)")
    if "stream" not in protocols:
        raise UsageError("--chunk-seconds sets the step of --protocol stream; add --protocol stream or drop it")
    return float(value)


def split_list(values: list[str] | None, default: str) -> list[str]:
    """A repeatable option whose values may also be comma lists (`-b 0.2 -b 0.1` = `-b 0.2,0.1`)."""
    out = [part.strip() for value in (values or [default]) for part in value.split(",")]
    return list(dict.fromkeys(p for p in out if p))
