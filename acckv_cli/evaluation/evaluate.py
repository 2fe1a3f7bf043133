"""`acckv eval`: what compression does to answers, per protocol × method × budget, on SynthAVQA or a manifest.

Every answer is computed from the compressed cache under a named protocol (`acckv_cli.answer.session`), and is
compared with the full cache's answer to the same prompt under the same protocol:

* first-word accuracy (the answer starts with the expected answer) and exact-answer accuracy;
* agreement of the first answer token with the full cache's, and the KL divergence KL(full ‖ compressed)
  of the first answer token's distribution — 0 exactly when nothing that answer depends on was evicted.

Each clip is decoded and encoded once; under `query-aware` (and `prefill`) its media is prefilled once and
every (method, budget, question) compresses its own copy; under `context` each (method, budget) compresses
the media once for all the clip's questions. Rows are appended one JSON line per (item, protocol, method,
budget) and flushed, so a killed run resumes where it stopped (`--resume`). Method specs take parameters:
`acckv:tau=0.9,budget_split=joint`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from acckv_cli import __version__
from acckv_cli.methods import Budget, get_method
from acckv_cli.errors import UsageError
from acckv_cli.evaluation.ablations import ABLATIONS
from acckv_cli.evaluation.items import SUITES, Item, check_evidence, read_manifest  # noqa: F401  (re-exported)
from acckv_cli.evaluation.scoring import answer_matches, answer_starts_with, normalise, score_answer  # noqa: F401
from acckv_cli.methods.evidence import Spans, evidence_mask, union
from acckv_cli.methods.stash import AttentionNeeds
from acckv_cli.model.load import LoadedModel
from acckv_cli.options import MethodSpec
from acckv_cli.answer.pipeline import STREAM, decode_sizes, open_session
from acckv_cli.answer.session import MEDIA_COMPRESSED, Answer, ClipSession, check_protocol

log = logging.getLogger(__name__)

# --- method specs ----------------------------------------------------------------------------------------

def parse_method_spec(spec: str) -> tuple[str, dict]:
    """`name`, `name:key=value,...` or an ablation alias → (name, params); a bad spec is a UsageError."""
    parsed = MethodSpec.parse(spec, ABLATIONS)
    return parsed.name, parsed.params


# --- data ----------------------------------------------------------------------------------------------

def synthavqa_items(split: str, n: int, data_dir: Path, suite: str = "core") -> list[Item]:
    """Write (or reuse) the first `n` clips of a SynthAVQA suite's split as mp4 files and return their questions.

    `core` is the original generator (one large shape and one sustained tone per segment); `sparse` and `long`
    hold brief, small events whose evidence is a few percent of the media (`acckv_cli.synth.sparse`).
    """
    from acckv_cli.synth.avqa import make_example, question_evidence
    from acckv_cli.synth.render import write_mp4
    from acckv_cli.synth.sparse import make_sparse_example

    if suite not in SUITES:
        raise UsageError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    folder = data_dir / split if suite == "core" else data_dir / suite / split
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(n):
        example = make_example(split, index) if suite == "core" else make_sparse_example(suite, split, index)
        clip = folder / f"{example.key}.mp4"
        if not clip.exists():
            write_mp4(example.spec, clip)
        for k, qa in enumerate(example.questions):
            evidence = question_evidence(example.spec, qa.question) if suite == "core" else qa.evidence
            items.append(Item(f"{example.key}-q{k}", str(clip), qa.question, qa.answer, qa.family, evidence, suite=suite))
    return items


def code_version() -> str:
    """Package version plus the git commit when run from a checkout (never through a shell)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, timeout=5)
        if head.returncode == 0:
            return f"{__version__}+{head.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__


# --- running ---------------------------------------------------------------------------------------------

FULL_BUDGET = [Budget(1.0)]  # the full cache ignores budgets: run it once, at what it keeps (100 %)
DEFAULT_PROTOCOLS = ("query-aware", "context")


@dataclass
class Config:
    """One compared setting: a method spec (label), its parsed name and parameters, and a budget."""

    label: str
    name: str
    params: dict
    budget: Budget

    @property
    def budget_text(self) -> float | int:
        """The budget as rows and summaries give it: a number (0.2, or a count 160), never a string."""
        return self.budget.number

    def method(self):
        return get_method(self.name, **self.params)


def configs_for(methods: list[str], budgets: list[str]) -> list[Config]:
    parsed = list({b.number: b for b in map(Budget.parse, budgets)}.values())  # `20%` and `0.2` are one budget
    out = []
    for label in methods:
        name, params = parse_method_spec(label)
        out += [Config(label, name, params, b) for b in (FULL_BUDGET if name == "full" else parsed)]
    return out


def result_key(item_id: str, protocol: str, method: str, budget: float | int | str) -> str:
    """One row's identity; the budget as a number (rows written before budgets were numbers say "0.2")."""
    return f"{item_id}|{protocol}|{method}|{Budget.parse(str(budget)).number:g}"


def load_done(path: Path) -> set[str]:
    """Keys of complete result lines (a trailing partial line from a killed run is ignored)."""
    done = set()
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            done.add(result_key(row["id"], row["protocol"], row["method"], row["budget"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return done


def repair_tail(path: Path) -> None:
    """Drop a partial last line (no newline) left by a killed run before appending."""
    if path.exists() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            path.write_bytes(data[: data.rfind(b"\n") + 1])


def first_token_kl(reference: torch.Tensor, logits: torch.Tensor) -> float:
    """KL(full ‖ compressed) of the first answer token's distribution, from fp32 logits [V]."""
    p, q = reference.log_softmax(-1), logits.log_softmax(-1)
    return max(0.0, float((p.exp() * (p - q)).sum()))


def compare(answer: Answer, reference: Answer, item: Item) -> dict:
    """The row fields of one compressed answer against the full cache's answer to the same prompt."""
    summary = answer.report.summary()
    row = {"answer": answer.text, "full_answer": reference.text,
           "kv_kept": summary["kv_kept_ratio"], "media_kept": summary["media_kept_ratio"],
           "first_token_agrees": int(answer.first_logits.argmax()) == int(reference.first_logits.argmax()),
           "first_token_kl": round(first_token_kl(reference.first_logits, answer.first_logits), 8),
           **where_kept(answer, item.evidence)}
    row.update(score_answer(answer.text, item.answer, item.options))
    return row


def where_kept(answer: Answer, evidence: Spans) -> dict:
    """Where the kept media entries lie in time (mean over layers and KV heads).

    kept_time:     mean time of the kept media, as a fraction of the clip (0 start, 1 end; ≈ 0.5 when
                   kept uniformly; → 1 for a recency prior);
    evidence_kept: share of the media entries inside the union of the answer's evidence spans that were kept
                   (compare with media_kept: a method that finds the evidence keeps more of it than the
                   average). A token is inside when the interval it stands for overlaps a span
                   (`methods.evidence`: a video token covers its whole frame pair).
    """
    from acckv_cli.answer.report import kept_share

    layout = answer.layout
    media = layout.media_mask
    if not answer.kept or not media.any():
        return {}
    kept = torch.stack([kept_share(keep, len(layout)) for keep in answer.kept.values()]).mean(0)
    t = layout.time_s
    duration = max(float(t[media].max()), 1e-6)
    out = {"kept_time": round(float((kept[media] * t[media]).sum() / kept[media].sum().clamp(min=1e-9)) / duration, 4)}
    if evidence:
        inside = evidence_mask(layout, evidence)
        if inside.any():
            out["evidence_kept"] = round(float(kept[inside].mean()), 4)
    return out


def run_eval(lm: LoadedModel, items: list[Item], methods: list[str], budgets: list[str], out_dir: Path,
             protocols: tuple[str, ...] = DEFAULT_PROTOCOLS, resume: bool = False, max_new_tokens: int = 4,
             fps: float = 2.0, progress=None, chunk_seconds: float | None = None) -> list[dict]:
    """Evaluate every item under every (protocol, method, budget); append rows to `out_dir/results.jsonl` and
    return the rows of that grid (`chunk_seconds`: the step of the stream protocol, None for its default)."""
    for protocol in protocols:
        check_protocol(protocol)
    check_evidence(items, methods)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.jsonl"
    if not resume and results_path.exists():
        results_path.unlink()
    repair_tail(results_path)
    done = load_done(results_path)
    configs = configs_for(methods, budgets)
    version = code_version()
    clips: dict[str, list[Item]] = {}
    for item in items:  # one session per clip, whatever the manifest order
        clips.setdefault(item.video, []).append(item)
    with results_path.open("a") as sink:
        for video, clip_items in clips.items():
            todo = {(item.id, p, c.label, c.budget_text) for item in clip_items for p in protocols for c in configs
                    if result_key(item.id, p, c.label, c.budget_text) not in done}
            if todo:
                for row in evaluate_clip(lm, video, clip_items, configs, protocols, todo, max_new_tokens, fps,
                                         chunk_seconds):
                    row.update(model=lm.name, seed=0, code_version=version)
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
            if progress:
                progress(len(clip_items))
    # the rows of the grid asked for: a resumed folder may hold rows of other methods, budgets or clips
    asked = {result_key(item.id, p, c.label, c.budget_text) for item in items for p in protocols for c in configs}
    rows = [json.loads(line) for line in results_path.read_text().splitlines() if line.strip()]
    return [r for r in rows if result_key(r["id"], r["protocol"], r["method"], r["budget"]) in asked]


def evaluate_clip(lm, video: str, items: list[Item], configs: list[Config], protocols, todo: set,
                  max_new_tokens: int, fps: float, chunk_seconds: float | None = None):
    """Rows for the pending (item, protocol, method, budget) combinations of one clip."""
    from acckv_cli.media import decode as media_mod

    def base(item, protocol, config):
        return {"id": item.id, "video": item.video, "question": item.question, "expected": item.answer,
                "family": item.family, "evidence": [list(span) for span in item.evidence] or None,
                "protocol": protocol, "method": config.label, "budget": config.budget_text,
                **({"suite": item.suite} if item.suite else {}),
                **({"options": list(item.options)} if item.options else {})}

    def failed(protocol, exc):  # one bad clip (or a protocol it cannot run) is recorded, not raised
        for item in items:
            for config in configs:
                if (item.id, protocol, config.label, config.budget_text) in todo:
                    yield {**base(item, protocol, config), "error": _one_line(exc)}

    only_streamed = all(p == STREAM for p in protocols)  # then no frame is decoded before its chunk
    try:
        decoded = media_mod.decode(video, fps=fps, lazy_frames=only_streamed, **decode_sizes(lm))
    except Exception as exc:
        for protocol in protocols:
            yield from failed(protocol, exc)
        return
    sessions: dict[str, ClipSession] = {}
    full = Config("full", "full", {}, Budget(1.0))
    for protocol in protocols:
        pending = [c for c in configs if any((i.id, protocol, c.label, c.budget_text) in todo for i in items)]
        if not pending:
            continue
        kind = STREAM if protocol == STREAM else "one-shot"
        try:  # a stream that cannot run (e.g. Qwen3-Omni) fails its own rows only
            if kind not in sessions:
                sessions[kind] = (open_session(lm, decoded, STREAM, chunk_seconds=chunk_seconds) if kind == STREAM
                                  else ClipSession(lm, decoded))
            session, shared = sessions[kind], None
            if protocol not in MEDIA_COMPRESSED:  # one full media prefill serves every method's compression
                needs = AttentionNeeds()
                for config in configs:
                    needs = needs.union(config.method().attention_needs())
                shared = session.media_cache(needs=needs)
        except Exception as exc:
            yield from failed(protocol, exc)
            continue
        ask = _asker(session, protocol, shared, max_new_tokens, union(*(i.evidence for i in items)))
        try:
            references = dict(zip((i.id for i in items), ask(items, full)))
        except Exception as exc:  # the full cache itself failed (e.g. out of memory): every row says why
            references = {i.id: exc for i in items}
        for config in pending:
            wanted = [i for i in items if (i.id, protocol, config.label, config.budget_text) in todo]
            try:
                answers = ask(wanted, config)
            except Exception as exc:
                answers = [exc] * len(wanted)
            for item, answer in zip(wanted, answers):
                row = base(item, protocol, config)
                reference = references[item.id]
                if isinstance(answer, Exception) or isinstance(reference, Exception):
                    row["error"] = _one_line(answer if isinstance(answer, Exception) else reference)
                else:
                    row.update(compare(answer, reference, item))
                yield row


def _asker(session: ClipSession, protocol: str, shared, max_new_tokens: int, clip_evidence: Spans = ()):
    """`ask(items, config) -> answers` under `protocol` (context and stream compress the media once per config).

    A method that needs evidence (the oracle) gets each question's own spans where each question compresses
    its own cache, and `clip_evidence`, the union over every question of the clip (not only the pending
    ones, so a resumed run compresses the same cache), where one compressed cache serves them all.
    """
    def ask(items: list[Item], config: Config) -> list[Answer | Exception]:
        method = config.method()
        one_cache = shared is None  # context, stream
        if method.needs_evidence and one_cache:
            method = dataclasses.replace(method, evidence=clip_evidence)
        media_cache = session.media_cache(method, config.budget) if one_cache else shared
        out = []
        for item in items:
            try:
                per_item = method.needs_evidence and not one_cache
                asked = dataclasses.replace(method, evidence=item.evidence) if per_item else method
                out.append(session.answer(item.prompt, media_cache, protocol, asked, config.budget,
                                          max_new_tokens))
            except Exception as exc:  # one failing question is recorded, not raised
                out.append(exc)
        return out
    return ask


def _one_line(exc: Exception) -> str:
    text = str(exc).splitlines()
    return text[0] if text else type(exc).__name__


# --- summaries -----------------------------------------------------------------------------------------
