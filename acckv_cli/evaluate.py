"""`acckv eval`: accuracy (or fidelity) of compression methods × budgets on SynthAVQA or a user manifest.

Each clip is decoded once and each question is processed once; every (method, budget) then reruns only
the compressed generation. Results are appended one JSON line per (item, method, budget) and flushed,
so a killed run resumes where it stopped (`--resume`). Method specs take parameters:
`acckv:tau=0.9,budget_split=joint`.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from acckv_cli import __version__
from acckv_cli.methods import Budget, get_method
from acckv_cli.model import LoadedModel, cast_inputs, last_position_logits
from acckv_cli.pipeline import decode_sizes, prepare_prompt

log = logging.getLogger(__name__)
_ARTICLES = {"a", "an", "the"}

ABLATIONS = {
    "acckv-no-AR": "acckv:redistribution=none",
    "acckv-no-AF": "acckv:focusing=false",
    "acckv-no-CC": "acckv:merge_target=none,calibration=false",
    "acckv-intra-merge": "acckv:merge_target=nearest_kept",
    "acckv-xmodal-merge": "acckv:merge_target=nearest_kept,cross_modal_merge=true",
}


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation or articles."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return [w for w in words if w not in _ARTICLES]


def answer_matches(answer: str, expected: str) -> bool:
    """Exact match of the normalised answer with the one-word ground truth ("A flute." matches "flute")."""
    return normalise(answer) == normalise(expected)


# --- method specs ----------------------------------------------------------------------------------------

def _coerce(value: str):
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def parse_method_spec(spec: str) -> tuple[str, dict]:
    """`name` or `name:key=value,key=value` → (name, params). Ablation aliases resolve first."""
    spec = ABLATIONS.get(spec, spec)
    name, _, rest = spec.partition(":")
    params = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"method parameter {part!r} must look like key=value")
        params[key.strip()] = _coerce(value.strip())
    get_method(name, **params)  # validate now: unknown names or fields fail before any work
    return name, params


# --- data ----------------------------------------------------------------------------------------------

@dataclass
class Item:
    id: str
    video: str
    question: str
    answer: str | None = None
    family: str | None = None


def read_manifest(path: str | Path) -> list[Item]:
    """JSONL rows with `video` and `question` (and optional `answer`, `family`, `id`)."""
    path = Path(path)
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            video = Path(row["video"])
            items.append(Item(str(row.get("id", f"{path.stem}-{n}")),
                              str(video if video.is_absolute() else path.parent / video),
                              row["question"], row.get("answer"), row.get("family")))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: not a manifest row with video and question ({exc})") from None
    return items


def synthavqa_items(split: str, n: int, data_dir: Path) -> list[Item]:
    """Write (or reuse) the first `n` clips of a SynthAVQA split as mp4 files and return their questions."""
    from acckv_cli.synth.avqa import make_example
    from acckv_cli.synth.render import write_mp4

    folder = data_dir / split
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(n):
        example = make_example(split, index)
        clip = folder / f"{example.key}.mp4"
        if not clip.exists():
            write_mp4(example.spec, clip)
        for k, qa in enumerate(example.questions):
            items.append(Item(f"{example.key}-q{k}", str(clip), qa.question, qa.answer, qa.family))
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

@torch.inference_mode()
def generate_with_logits(lm: LoadedModel, inputs: dict, use_audio_in_video: bool, max_new_tokens: int):
    with last_position_logits(lm.thinker):
        out = lm.thinker.generate(**cast_inputs(inputs, lm.dtype), use_audio_in_video=use_audio_in_video,
                                  max_new_tokens=max_new_tokens, do_sample=False,
                                  return_dict_in_generate=True, output_logits=True)
    new = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    text = lm.processor.tokenizer.decode(new, skip_special_tokens=True).strip()
    return new, text, [l[0].float() for l in out.logits]


def next_token_kl(reference: list[torch.Tensor], logits: list[torch.Tensor], ref_ids, ids) -> float | None:
    """Mean KL(full ‖ compressed) of next-token distributions over steps whose prefixes agree.

    Step 0 comes from the uncompressed prefill in both runs, so it is skipped; at step s ≥ 1 both runs
    condition on the same tokens only while the generated prefixes agree.
    """
    values = []
    for step in range(1, min(len(reference), len(logits))):
        if ref_ids[:step] != ids[:step]:
            break
        p = reference[step].log_softmax(-1)
        q = logits[step].log_softmax(-1)
        values.append(float((p.exp() * (p - q)).sum()))
    return sum(values) / len(values) if values else None


FULL_BUDGET = [("1.0", Budget(1.0))]  # the full cache ignores budgets: run it once


def result_key(item_id: str, method: str, budget: str) -> str:
    return f"{item_id}|{method}|{budget}"


def load_done(path: Path) -> set[str]:
    """Keys of complete result lines (a trailing partial line from a killed run is ignored)."""
    done = set()
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        done.add(result_key(row["id"], row["method"], row["budget"]))
    return done


def repair_tail(path: Path) -> None:
    """Drop a partial last line (no newline) left by a killed run before appending."""
    if path.exists() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            path.write_bytes(data[: data.rfind(b"\n") + 1])


def run_eval(lm: LoadedModel, items: list[Item], methods: list[str], budgets: list[str], out_dir: Path,
             resume: bool = False, fidelity: bool = False, max_new_tokens: int = 4, fps: float = 2.0,
             progress=None) -> list[dict]:
    """Evaluate every item under every (method, budget); append rows to `out_dir/results.jsonl`."""
    from acckv_cli import media as media_mod

    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.jsonl"
    if not resume and results_path.exists():
        results_path.unlink()
    repair_tail(results_path)
    done = load_done(results_path)
    specs = [(m, *parse_method_spec(m)) for m in methods]
    parsed_budgets = [(b, Budget.parse(b)) for b in budgets]
    version = code_version()
    decoded_cache: dict[str, object] = {}
    with results_path.open("a") as sink:
        for item in items:
            todo = [(label, name, params, b_text, b) for (label, name, params) in specs
                    for (b_text, b) in (FULL_BUDGET if name == "full" else parsed_budgets)
                    if result_key(item.id, label, b_text) not in done]
            if progress:
                progress(item, len(todo))
            if not todo:
                continue
            for row in evaluate_item(lm, item, todo, decoded_cache, media_mod, fidelity, max_new_tokens, fps):
                row.update(model=lm.name, seed=0, code_version=version)
                sink.write(json.dumps(row) + "\n")
                sink.flush()
            decoded_cache.pop(item.video, None) if len(decoded_cache) > 4 else None
    return [json.loads(l) for l in results_path.read_text().splitlines() if l.strip()]


def evaluate_item(lm, item: Item, todo, decoded_cache, media_mod, fidelity: bool, max_new_tokens: int, fps: float):
    """Rows for one question under each pending (method, budget)."""
    base = {"id": item.id, "video": item.video, "question": item.question, "expected": item.answer,
            "family": item.family}
    try:
        if item.video not in decoded_cache:
            decoded_cache[item.video] = media_mod.decode(item.video, fps=fps, **decode_sizes(lm))
        decoded = decoded_cache[item.video]
        prompt = prepare_prompt(lm, decoded, item.question)
        inputs, flag, layout = prompt.inputs, prompt.use_audio_in_video, prompt.layout
        reference = generate_with_logits(lm, inputs, flag, max_new_tokens) if fidelity else None
    except Exception as exc:  # one bad clip is recorded, not raised
        for label, _, _, b_text, _ in todo:
            yield {**base, "method": label, "budget": b_text, "error": str(exc).splitlines()[0]}
        return
    for label, name, params, b_text, budget in todo:
        row = {**base, "method": label, "budget": b_text}
        try:
            with get_method(name, **params)(lm.thinker, layout, budget) as run:
                ids, text, logits = generate_with_logits(lm, inputs, flag, max_new_tokens)
        except Exception as exc:
            row["error"] = str(exc).splitlines()[0]
            yield row
            continue
        before = sum(r["kv_bytes_before"] for r in run.layers)
        after = sum(r["kv_bytes_after"] for r in run.layers)
        row.update(answer=text, kv_kept=round(after / before, 4) if before else 1.0)
        if item.answer is not None:
            row["correct"] = answer_matches(text, item.answer)
        if reference is not None:
            ref_ids, ref_text, ref_logits = reference
            row["agrees_with_full"] = normalise(text) == normalise(ref_text)
            row["next_token_kl"] = next_token_kl(ref_logits, logits, ref_ids, ids)
        yield row


# --- summaries -----------------------------------------------------------------------------------------

def summarise(rows: list[dict]) -> list[dict]:
    """Accuracy per family and overall (or fidelity) per (method, budget), with the mean KV kept."""
    groups: dict[tuple[str, str], list[dict]] = {}
    full_correct = {r["id"]: r["correct"] for r in rows if r["method"] == "full" and "correct" in r}
    for row in rows:
        groups.setdefault((row["method"], row["budget"]), []).append(row)
    out = []
    for (method, budget), group in groups.items():
        ok = [r for r in group if "error" not in r]
        entry = {"method": method, "budget": budget, "n": len(group), "errors": len(group) - len(ok),
                 "kv_kept": _mean(r["kv_kept"] for r in ok)}
        scored = [r for r in ok if "correct" in r]
        if scored:
            entry["overall"] = _mean(float(r["correct"]) for r in scored)
            reference = full_correct.get  # the full cache on exactly the items this row answered
            same = [reference(r["id"]) for r in scored if reference(r["id"]) is not None]
            if method != "full" and len(same) == len(scored):
                entry["full_same_items"] = _mean(float(c) for c in same)
            for family in sorted({r["family"] for r in scored if r.get("family")}):
                entry[family] = _mean(float(r["correct"]) for r in scored if r.get("family") == family)
        if any("agrees_with_full" in r for r in ok):
            entry["agreement"] = _mean(float(r["agrees_with_full"]) for r in ok if "agrees_with_full" in r)
            kls = [r["next_token_kl"] for r in ok if r.get("next_token_kl") is not None]
            entry["next_token_kl"] = _mean(kls) if kls else None
        out.append(entry)
    return sorted(out, key=lambda e: (e["method"] != "full", e["method"], -float(Budget.parse(e["budget"]).value)))


def _mean(values) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None


def write_summary(summary: list[dict], out_dir: Path) -> None:
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "summary.md").write_text(summary_markdown(summary))
    columns = sorted({k for e in summary for k in e}, key=_column_order)
    with (out_dir / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(summary)


def summary_markdown(summary: list[dict]) -> str:
    """The summary as a Markdown table (what the README shows), percentages with one decimal."""
    columns = [c for c in ("method", "budget", "n", "errors", "kv_kept", "audio", "video", "alignment", "overall",
                           "full_same_items", "agreement", "next_token_kl") if any(e.get(c) is not None for e in summary)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for e in summary:
        cells = []
        for c in columns:
            v = e.get(c)
            if v is None:
                cells.append("–")
            elif c in ("n", "errors"):
                cells.append(str(v))
            elif c in ("method", "budget"):
                cells.append(f"`{v}`" if c == "method" else str(v))
            elif c == "next_token_kl":
                cells.append(f"{v:.4f}")
            else:
                cells.append(f"{100 * v:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _column_order(name: str) -> tuple[int, str]:
    order = ["method", "budget", "n", "errors", "kv_kept", "audio", "video", "alignment", "overall",
             "full_same_items", "agreement", "next_token_kl"]
    return (order.index(name) if name in order else len(order), name)


def plot_summary(summary: list[dict], path: Path, metric: str = "overall") -> None:
    """Accuracy (or agreement) versus budget, one line per method; the full cache as a dashed line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    by_method: dict[str, list[tuple[float, float]]] = {}
    for e in summary:
        if e.get(metric) is None:
            continue
        if e["method"] == "full":
            ax.axhline(e[metric] * 100, color="black", linestyle="--", label="full cache")
            continue
        by_method.setdefault(e["method"], []).append((e["kv_kept"] or 0.0, e[metric]))
    colours = plt.get_cmap("tab20").colors
    for i, (method, points) in enumerate(sorted(by_method.items())):
        points.sort()
        ax.plot([p[0] * 100 for p in points], [p[1] * 100 for p in points], marker="os^D"[i % 4],
                color=colours[i % len(colours)], linewidth=2.5 if method == "acckv" else 1.2, label=method)
    ax.set_xlabel("KV cache kept (% of full, measured)")
    ax.set_ylabel(f"{metric} accuracy (%)" if metric != "agreement" else "answer agreement with full cache (%)")
    ax.set_title("Accuracy versus KV budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
