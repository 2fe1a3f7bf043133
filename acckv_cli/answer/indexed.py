"""Index once, ask later: a clip's compressed media cache made once, saved, and answered from later.

`index_clip` runs exactly what `ask VIDEO --protocol context` (or `stream`) runs before its first question —
decode, processor, encoders, media prefill and compression, through `pipeline.open_session` and
`ClipSession.media_cache_for` — and exports that state (`export_state`); `cachefile.write` saves it.
`iter_file_answers` reads it back into a `ClipSession` whose media cache is the saved one
(`restore_session`), and `ClipSession.answer` then runs unchanged: the question and the assistant header
through the restored cache at the whole prompt's positions (recomputed by the model's own `get_rope_index`
from the saved prompt), greedy decoding, cut back after each question. So answers from a file are the
answers from the video, token for token (tests/test_index.py), and a file's answers cost only reading it
plus the question's own tokens.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from acckv_cli.answer import cachefile
from acckv_cli.answer.cachefile import CacheState
from acckv_cli.answer.pipeline import (STREAM, AskResult, check_question, decode_for_model, media_summary,
                                       open_session, pixel_cap, token_counts)
from acckv_cli.answer.report import RetentionReport
from acckv_cli.answer.session import Answer, ClipSession, MediaCache, ProtocolError, cache_from, snapshot
from acckv_cli.methods import Budget, get_method
from acckv_cli.model.generation import eos_token_ids
from acckv_cli.model.load import LoadedModel
from acckv_cli.model.prompt import MediaPrompt

# The protocols whose media cache is compressed before any question, so one saved cache serves every question.
INDEX_PROTOCOLS = ("context", STREAM)


def check_index_protocol(protocol: str) -> str:
    if protocol not in INDEX_PROTOCOLS:
        raise ProtocolError(f"a saved cache holds the media compressed before any question: index with --protocol "
                            f"context or stream, not {protocol}")
    return protocol


# --- exporting -------------------------------------------------------------------------------------------

def export_state(session: ClipSession, media_cache: MediaCache) -> CacheState:
    """What `answer()` reads of a session and its compressed media cache, as plain tensors and JSON records."""
    prompt, records = session.prompt, sorted(media_cache.run.layers, key=lambda r: r["layer"])
    layout = prompt.layout
    # what `get_rope_index` returns beside the positions: every text token after the media sits at its index
    # plus this delta (both families: max + 1 − length)
    deltas = (layout.positions.max() + 1 - len(layout)).reshape(1, 1)
    inputs = getattr(prompt, "inputs", {})  # (a benchmark's synthetic prompt has token ids only)
    rope = {name: inputs[name] for name in cachefile.ROPE_INPUTS if name in inputs}
    return CacheState(keys=[k for k, _ in media_cache.saved], values=[v for _, v in media_cache.saved],
                      keep=[r["keep"] for r in records],
                      records=[{k: v for k, v in r.items() if k != "keep"} for r in records], layout=layout,
                      prompt={"input_ids": prompt.input_ids[:, :prompt.length], **rope, "rope_deltas": deltas})


@dataclass(frozen=True)
class IndexRequest:
    """How a clip is indexed: the method (registry name, typed parameters, command-line label), budget,
    protocol and preprocessing."""

    method: str = "acckv"
    params: tuple = ()           # (key, value) pairs, hashable
    label: str | None = None
    budget: Budget = Budget(0.2)
    protocol: str = "context"
    fps: float = 2.0
    max_pixels: int | None = None
    official_fps: bool = False

    def settings(self) -> dict:
        """The header fields a resumed `index` compares with an existing file."""
        config = get_method(self.method, **dict(self.params)).config()
        settings = {"method": {"name": config.pop("method"), "params": config},
                    "budget": {"value": self.budget.value, "text": str(self.budget)}, "protocol": self.protocol,
                    "preprocessing": {"fps": self.fps, "max_pixels": self.max_pixels, "official_fps": self.official_fps}}
        return json.loads(json.dumps(settings))  # as a file's header holds them (tuples become lists)


def index_clip(lm: LoadedModel, path: str, request: IndexRequest) -> tuple[dict, CacheState]:
    """Decode, encode, prefill and compress the clip at `path` as `ask` would; return (header, state)."""
    check_index_protocol(request.protocol)
    method = get_method(request.method, **dict(request.params))
    source = cachefile.source_identity(path)
    decoded = decode_for_model(lm, path, fps=request.fps, max_pixels=request.max_pixels,
                               official_fps=request.official_fps, lazy_frames=request.protocol == STREAM)
    session = open_session(lm, decoded, request.protocol, request.max_pixels)
    media_cache = session.media_cache_for(request.protocol, method, request.budget)
    summary = RetentionReport.from_run(media_cache.run, session.prompt.layout).summary()
    settings = request.settings()
    settings["method"]["label"] = request.label or request.method
    settings["preprocessing"]["pixel_cap"] = pixel_cap(lm, request.max_pixels)
    header = {
        "model": cachefile.model_identity(lm), **settings,
        "source": {**source, "path": path, "duration_s": round(decoded.info.duration_s, 3)},
        "media": media_summary(decoded, session.prompt.inputs, lm.family.patch_size),
        "prompt": {"length": session.prompt.length, "suffix": session.prompt.suffix,
                   "use_audio_in_video": session.prompt.use_audio_in_video,
                   "seconds_per_chunk": session.prompt.layout.seconds_per_chunk,
                   "notices": list(dict.fromkeys([*decoded.notices, *session.prompt.notices]))},
        "cache": {"kv_bytes": summary["kv_bytes_after"], "kv_bytes_full": summary["kv_bytes_before"],
                  "media_kept_ratio": summary["media_kept_ratio"],
                  "entries": [int(k.shape[2]) for k, _ in media_cache.saved]},
        "index_timings": {"decode_s": round(session.decode_s, 4), "encode_s": round(session.encode_s, 4),
                          "media_prefill_s": round(media_cache.prefill_s, 4)},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return header, export_state(session, media_cache)


def index_to_file(lm: LoadedModel, path: str, out_path: str | Path, request: IndexRequest) -> int:
    """Index the clip at `path` into `out_path` (written atomically); return the file's size in bytes."""
    header, state = index_clip(lm, path, request)
    return cachefile.write(out_path, state, header)


# --- restoring -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SavedMethod:
    """The method a saved cache was compressed with, as reports need it (its name and parameters)."""

    name: str
    params: dict


@dataclass
class SavedRun:
    """A compression run read back from a file: what `RetentionReport.from_run` and `answer()` read."""

    method: SavedMethod
    budget: Budget
    layers: list[dict]


class RestoredSession(ClipSession):
    """A session whose media cache comes from a cache file: the encoders never run (there are no media
    inputs), and every answer lists decode, encode and media prefill as reused — they were paid at indexing."""

    @property
    def embedded(self) -> dict:
        raise ProtocolError("a clip answered from a cache file has no media inputs: only the protocol it was "
                            "indexed with runs")

    def answer(self, *args, **kwargs) -> Answer:
        answer = super().answer(*args, **kwargs)
        answer.reused = ["decode", "encode", "media_prefill"]
        return answer


def restore_session(lm: LoadedModel, prompt, header: dict, state: CacheState) -> tuple[ClipSession, MediaCache]:
    """A session over `prompt` (the saved one, or a benchmark's synthetic one) and the saved media cache."""
    eos = eos_token_ids(lm.thinker, lm.processor.tokenizer) if lm.processor is not None else None
    session = RestoredSession.from_prompt(lm, prompt, None, eos)
    cache = cache_from(lm.thinker.config, list(zip(state.keys, state.values)))
    run = SavedRun(SavedMethod(header["method"]["name"], header["method"]["params"]),
                   Budget(header["budget"]["value"]),
                   [{**record, "keep": keep} for record, keep in zip(state.records, state.keep)])
    return session, MediaCache(cache, snapshot(cache), run, None, 0.0)


def saved_prompt(lm: LoadedModel, header: dict, state: CacheState) -> MediaPrompt:
    """The clip's media prompt as `MediaPrompt.build` made it, without pixels or features: ids, the inputs
    `get_rope_index` reads (so `question()` places any question exactly), and the saved layout."""
    inputs = {name: t.to(lm.device) for name, t in state.prompt.items() if name != "rope_deltas"}
    return MediaPrompt(lm, inputs, header["prompt"]["use_audio_in_video"], header["prompt"]["suffix"], 0.0,
                       list(header["prompt"]["notices"]), _layout=state.layout)


def open_file(lm: LoadedModel, path: str) -> tuple[dict, ClipSession, MediaCache]:
    """Read and check a cache file for `lm`: the header first (a wrong model is refused before the tensors are
    read), then every byte; return (header, session, media cache)."""
    cachefile.check_model(cachefile.read_header(path), lm, path)
    header, state = cachefile.read(path, lm.device)
    session, media_cache = restore_session(lm, saved_prompt(lm, header, state), header, state)
    return header, session, media_cache


def iter_file_answers(lm: LoadedModel, path: str, questions: list[str], max_new_tokens: int = 32):
    """Yield one `AskResult` per question answered from the cache file at `path`, or the exception it raised
    (`batch` records it and goes on); a file that cannot be used is every question's failure."""
    questions = [check_question(q) for q in questions]
    start = time.perf_counter()
    try:
        header, session, media_cache = open_file(lm, path)
    except Exception as exc:
        for _ in questions:
            yield exc
        return
    load_s = time.perf_counter() - start
    media = {**header["media"], "cache_file": str(path)}
    notices = list(dict.fromkeys([*lm.notices, *header["prompt"]["notices"]]))
    for n, question in enumerate(questions):
        try:
            answer = session.answer(question, media_cache, header["protocol"], max_new_tokens=max_new_tokens)
        except Exception as exc:
            yield exc
            continue
        answer.timings["load_s"] = round(load_s, 4) if n == 0 else 0.0  # reading the file: once per clip
        summary = answer.report.summary()
        kv = {"kv_bytes": summary["kv_bytes_after"], "kv_bytes_full": summary["kv_bytes_before"],
              "kv_kept_ratio": summary["kv_kept_ratio"], "media_kept_ratio": summary["media_kept_ratio"]}
        yield AskResult(answer.question, answer.text, lm.name, header["method"]["name"],
                        Budget(header["budget"]["value"]),
                        answer.protocol, media, token_counts(answer), kv, answer.timings, answer.reused,
                        answer.report, notices)


def ask_file(lm: LoadedModel, path: str, questions: list[str], max_new_tokens: int = 32) -> list[AskResult]:
    """Answer every question from the cache file at `path` (raises the first failure)."""
    results = []
    for result in iter_file_answers(lm, path, questions, max_new_tokens):
        if isinstance(result, Exception):
            raise result
        results.append(result)
    return results

