"""The `.acckv` file: a clip's compressed media cache on disk, and the checks that make reading it safe.

`acckv index` writes one per clip; `acckv ask FILE.acckv` answers from it without decoding, encoding or
prefilling the media again (`acckv_cli.answer.indexed`). The file is a safetensors file — plain tensors and
a JSON header, never pickle, so loading one cannot run code — holding exactly what `ClipSession.answer`
needs to continue from the media cache the `context` (or `stream`) protocol left.

Tensors (shapes for layer i holding k_i entries of a P-token prefix):

* `layer.{i}.keys`, `layer.{i}.values` [1, KV, k_i, D]: the kept (and merged) entries, in cache order,
  post-RoPE, in the model's dtype;
* `layer.{i}.keep` [k_i] or [KV, k_i] (per KV head): their prompt indices, for the retention report;
* `layout.*` [P] and [3, P]: the prefix's `TokenLayout` (modality, time, frame pair, cell, mRoPE positions);
* `prompt.input_ids` [1, P]: the prompt up to the end of the media (system + media + closing delimiters);
* `prompt.video_grid_thw`, `prompt.video_second_per_grid`, `prompt.feature_attention_mask`: what the model's
  `get_rope_index` needs to place any question after the media (the whole prompt's 3-D positions);
* `prompt.rope_deltas` [1, 1]: the prefix's mRoPE delta (max position + 1 − length), for a caller that
  continues with transformers' `generate` (our answer path passes explicit positions instead).

The header (safetensors metadata key `acckv`, one JSON object) holds the format version, the acckv version,
the model's identity (family, config hash, a fingerprint of the weights, dtype), method and parameters,
budget, protocol, preprocessing, the source file's name, size and content hash, the clip's duration, the
per-layer report records, the full cache's size, and a SHA-256 over the header and every tensor.

Integer tensors are stored in the narrowest integer type that holds their values (prompt indices and
positions fit int16 for any clip the model can place) and cast back on reading: lossless, and a few bytes
per token less in every file. Keys and values are never converted.

Every way a file can be unusable is one `CacheFileError` (a usage error: one line, exit code 2): not a cache,
truncated, corrupt (checksum), an old format, a newer acckv, another model. Writes go to a hidden temporary
name in the same folder and are renamed only when complete (`os.replace` is atomic), so a killed writer
leaves no file under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch

from acckv_cli import __version__
from acckv_cli.answer.cachename import SUFFIX, is_cache_path  # noqa: F401 (re-exported)
from acckv_cli.errors import UsageError
from acckv_cli.model.layout import TokenLayout

FORMAT = "acckv-media-cache"
FORMAT_VERSION = 1
META_KEY = "acckv"
MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header
LAYOUT_FIELDS = ("modality", "time_s", "frame_pair", "row", "col", "positions")
ROPE_INPUTS = ("video_grid_thw", "video_second_per_grid", "feature_attention_mask")
_NARROW = (torch.uint8, torch.int16, torch.int32)


class CacheFileError(UsageError):
    """An unusable cache file (not a cache, truncated, corrupt, another format, version or model): exit 2."""



@dataclass
class CacheState:
    """The media cache of one clip, as `ClipSession.media_cache` left it (everything on one device).

    keys/values: per layer [1, KV, k, D]; keep: per layer [k] or [KV, k] int64; records: per layer the
    report's JSON fields (budget, KV bytes, the method's statistics; `keep` apart); layout: the prefix
    (P tokens); prompt: `input_ids` [1, P] and the `get_rope_index` inputs, plus `rope_deltas` [1, 1].
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    keep: list[torch.Tensor]
    records: list[dict]
    layout: TokenLayout
    prompt: dict[str, torch.Tensor]

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for i, (k, v, keep) in enumerate(zip(self.keys, self.values, self.keep)):
            out.update({f"layer.{i}.keys": k, f"layer.{i}.values": v, f"layer.{i}.keep": keep})
        out.update({f"layout.{name}": getattr(self.layout, name) for name in LAYOUT_FIELDS})
        out.update({f"prompt.{name}": t for name, t in self.prompt.items()})
        return {name: t.detach().cpu().contiguous() for name, t in out.items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], header: dict) -> "CacheState":
        n = header["cache"]["layers"]
        layer = [[tensors[f"layer.{i}.{part}"] for i in range(n)] for part in ("keys", "values", "keep")]
        layout = TokenLayout(*(tensors[f"layout.{name}"] for name in LAYOUT_FIELDS),
                             seconds_per_chunk=header["prompt"]["seconds_per_chunk"])
        prompt = {name.split(".", 1)[1]: t for name, t in tensors.items() if name.startswith("prompt.")}
        return cls(*layer, header["records"], layout, prompt)


# --- identities -------------------------------------------------------------------------------------------

_IDENTITIES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_VOLATILE = {"transformers_version", "dtype", "torch_dtype", "architectures"}  # not what the model computes


def _scrub(value):
    """A config dict without what differs between two loads of one checkpoint (paths, dtypes, versions)."""
    if isinstance(value, dict):
        return {str(k): _scrub(v) for k, v in value.items() if not str(k).startswith("_") and k not in _VOLATILE}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def weights_fingerprint(thinker: torch.nn.Module, per_tensor: int = 64) -> str:
    """SHA-256 over every tensor's name, shape and `per_tensor` values at evenly spaced places.

    Not a hash of every byte (that costs seconds per GB on each `ask`): a sample that tells two checkpoints
    apart — fine-tuning or another size changes sampled values and shapes — in milliseconds. The values are
    hashed as loaded, so the same checkpoint in another dtype is another fingerprint (and another cache).
    """
    digest = hashlib.sha256()
    samples = []
    for name, tensor in sorted(thinker.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        n, k = flat.numel(), min(per_tensor, flat.numel())
        # evenly spaced, in integers: a float linspace rounds past the end of tensors above 2**24 elements
        index = torch.arange(k, device=flat.device) * (n - 1) // max(k - 1, 1)
        samples.append(flat[index].float())
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
    digest.update(torch.cat(samples).cpu().numpy().tobytes())  # one transfer from a GPU
    return digest.hexdigest()


def model_identity(lm) -> dict:
    """Who computed the keys and values: family, config hash, weights fingerprint, dtype and cache shape.

    Cached per loaded thinker, so `batch` over many files fingerprints the model once.
    """
    thinker = lm.thinker
    if thinker not in _IDENTITIES:
        config = _scrub(thinker.config.to_dict())
        text = thinker.config.get_text_config(decoder=True)
        _IDENTITIES[thinker] = {
            "family": lm.family.name,
            "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest(),
            "weights_fingerprint": weights_fingerprint(thinker),
            "layers": text.num_hidden_layers, "kv_heads": text.num_key_value_heads,
            "head_dim": getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads}
    return {"name": lm.name, **_IDENTITIES[thinker], "dtype": str(lm.dtype).removeprefix("torch.")}


def check_model(header: dict, lm, path: str) -> None:
    """Refuse a model other than the one that computed the file's keys and values (their dtype first, as it
    is the one a user fixes with a flag)."""
    saved, have = header["model"], model_identity(lm)
    name = Path(path).name
    if saved["dtype"] != have["dtype"]:
        raise CacheFileError(f"{name} holds {saved['dtype']} keys and values but the model is loaded in "
                             f"{have['dtype']}: pass --dtype {saved['dtype']}")
    if any(saved[k] != have[k] for k in ("family", "config_sha256", "weights_fingerprint")):
        raise CacheFileError(f"{name} was made with another model ({saved['name']}, {saved['family']}, weights "
                             f"{saved['weights_fingerprint'][:12]}) than the one loaded ({have['name']}, "
                             f"{have['family']}, weights {have['weights_fingerprint'][:12]}): pass the --model "
                             f"it was indexed with, or index the clip again")


def source_identity(path: str) -> dict:
    """The indexed file's name, size and SHA-256 (to tell later which clip a cache came from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"name": os.path.basename(path), "size": os.path.getsize(path), "sha256": digest.hexdigest()}


# --- writing ---------------------------------------------------------------------------------------------

def _narrow(tensor: torch.Tensor) -> tuple[torch.Tensor, str | None]:
    """The tensor in the narrowest integer dtype that holds its values, and the dtype to restore (or None)."""
    if tensor.dtype not in (torch.int64, torch.int32) or tensor.numel() == 0:
        return tensor, None
    low, high = int(tensor.min()), int(tensor.max())
    for dtype in _NARROW:
        info = torch.iinfo(dtype)
        if info.min <= low and high <= info.max and dtype != tensor.dtype:
            return tensor.to(dtype), str(tensor.dtype).removeprefix("torch.")
    return tensor, None


def _digest(header: dict, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the header (without its checksum) and every tensor's name, dtype, shape and bytes."""
    body = {k: v for k, v in header.items() if k != "checksum"}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def write(path: str | os.PathLike, state: CacheState, header: dict) -> int:
    """Write `state` and `header` to `path` atomically; return the file's size in bytes."""
    from safetensors.torch import save_file

    tensors, casts = {}, {}
    for name, tensor in state.tensors().items():
        tensors[name], original = _narrow(tensor)
        if original is not None:
            casts[name] = original
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "acckv_version": __version__, **header,
              "casts": casts, "records": state.records}
    header["cache"] = {**header.get("cache", {}), "layers": len(state.keys)}
    header = json.loads(json.dumps(header))  # as a reader will see it (int keys become strings), then hashed
    header["checksum"] = {"sha256": _digest(header, tensors)}
    path = Path(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder: the rename cannot cross devices
    try:
        save_file(tensors, str(temp), metadata={META_KEY: json.dumps(header)})
        with open(temp, "rb") as fh:
            os.fsync(fh.fileno())  # the bytes are on disk before the name points at them
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # as an ordinary new file (the writer may have made it private)
        os.replace(temp, path)
    except BaseException:  # KeyboardInterrupt too: never leave the temporary file behind
        temp.unlink(missing_ok=True)
        raise
    return path.stat().st_size


# --- reading ---------------------------------------------------------------------------------------------

def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(text).split(".")[:3])
    except ValueError:
        return (0,)


def _check_version(header: dict, name: str) -> None:
    version = header.get("format_version")
    writer = header.get("acckv_version", "?")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise CacheFileError(f"{name} was written by a newer acckv ({writer}, cache format {version}); this acckv "
                             f"({__version__}) reads format {FORMAT_VERSION}: upgrade acckv or index the clip again")
    if version != FORMAT_VERSION:
        raise CacheFileError(f"{name} has cache format {version!r}, which this acckv ({__version__}) does not read "
                             f"(format {FORMAT_VERSION}): index the clip again")


def _parse(head: bytes, size: int, name: str) -> tuple[dict, int]:
    """The acckv header and the file size its tensors need, from the file's first bytes (`size` in all)."""
    if size < 8:
        raise CacheFileError(f"{name} is {'empty' if size == 0 else f'{size} bytes'}: not an acckv cache file "
                             f"(truncated?)")
    (length,) = struct.unpack("<Q", head[:8])
    if not 2 <= length <= MAX_HEADER or head[8:9] != b"{":
        raise CacheFileError(f"{name} is not an acckv cache file (make one with `acckv index VIDEO`)")
    if 8 + length > size:
        ours = f'"{META_KEY}"'.encode() in head[8:]
        raise CacheFileError(f"{name} is truncated ({size} bytes, its header alone needs {8 + length})" if ours else
                             f"{name} is not an acckv cache file (make one with `acckv index VIDEO`)")
    try:
        table = json.loads(head[8:8 + length])
        meta = table.pop("__metadata__", None) or {}
    except (ValueError, UnicodeDecodeError, AttributeError):
        raise CacheFileError(f"{name} is corrupt: its header is not valid JSON") from None
    if META_KEY not in meta:
        raise CacheFileError(f"{name} is not an acckv cache file (a safetensors file without an acckv header)")
    try:
        header = json.loads(meta[META_KEY])
        needed = 8 + length + max((int(t["data_offsets"][1]) for t in table.values()), default=0)
    except (ValueError, TypeError, KeyError, IndexError):
        raise CacheFileError(f"{name} is corrupt: its acckv header is not valid") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CacheFileError(f"{name} is not an acckv cache file (its header names no acckv cache format)")
    _check_version(header, name)
    if needed > size:
        raise CacheFileError(f"{name} is truncated ({size} of {needed} bytes)")
    return header, needed


def _head(path: str) -> tuple[bytes, int]:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            first = fh.read(8)
            length = struct.unpack("<Q", first)[0] if len(first) == 8 else 0
            # an implausible length is not a cache: read one more byte, not what it claims
            return first + fh.read(length if 2 <= length <= MAX_HEADER else 1), size
    except FileNotFoundError:
        raise CacheFileError(f"cache file not found: {path!r}") from None
    except IsADirectoryError:
        raise CacheFileError(f"{path!r} is a directory, not a cache file") from None
    except OSError as exc:
        raise CacheFileError(f"cannot read {path!r}: {exc.strerror or exc}") from None


def read_header(path: str) -> dict:
    """The header of a cache file, checked (not a cache, truncated, format, version): reads the header only."""
    head, size = _head(path)
    return _parse(head, size, Path(path).name)[0]


def read(path: str, device: torch.device | str = "cpu") -> tuple[dict, CacheState]:
    """The header and the state of a cache file, every byte checked against the header's checksum."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    name = Path(path).name
    head, size = _head(path)
    header, needed = _parse(head, size, name)
    with open(path, "rb") as fh:
        data = fh.read()
    if len(data) != needed:  # trailing bytes: not what `write` produced
        raise CacheFileError(f"{name} is corrupt: {len(data)} bytes where its header describes {needed}")
    try:
        tensors = load(data)
    except SafetensorError as exc:
        raise CacheFileError(f"{name} is corrupt: {str(exc).splitlines()[0]}") from None
    if header.get("checksum", {}).get("sha256") != _digest(header, tensors):
        raise CacheFileError(f"{name} is corrupt: its checksum does not match (damaged on disk or in transfer); "
                             f"index the clip again")
    for tensor_name, dtype in header["casts"].items():
        tensors[tensor_name] = tensors[tensor_name].to(getattr(torch, dtype))
    try:
        state = CacheState.from_tensors(tensors, header)
    except KeyError as exc:
        raise CacheFileError(f"{name} is corrupt: it lacks {exc.args[0]}") from None
    move = lambda ts: [t.to(device) for t in ts]  # noqa: E731
    state.keys, state.values = move(state.keys), move(state.values)
    return header, state
