"""How sure is a difference between two methods? A paired bootstrap over clips, from one `eval` run's rows.

The README's targets are differences of a few points (AccKV ≥ random + 10 at 5 % media) measured on 12–30 clips.
Whether such a difference is resolved depends on how many clips carried it, not on how many questions: under
`context` one compressed cache serves every question of a clip, so a clip's questions succeed or fail together.
So the resampling unit is the clip. For each (suite, protocol, budget) cell both methods ran on, every question
answered by both is paired; B times, draw the cell's clips with replacement and take the difference of the two
methods' accuracy over the drawn clips' questions. Reported: the difference on the data, its 95 % percentile
interval, and the share of draws where the method was not ahead (difference ≤ 0).

    python -m acckv_cli.evaluation.paired RUN/results.jsonl.gz --method acckv --against random,uniform,divprune

Several runs may be given when they ran the same clips (a candidate measured later against rows of an earlier
run): their rows are pooled, and a question that two runs answered for the same method must agree in outcome.
Accuracy is the choice for multiple-choice rows and the first word otherwise (as in summary.py); rows with an
error are left out of both sides of their pair.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import defaultdict
from pathlib import Path

from acckv_cli.evaluation.summary import row_correct
from acckv_cli.lazy import torch

Cell = tuple[str, str, float]  # (suite, protocol, budget)


def read_rows(path: Path) -> list[dict]:
    """The rows of a results.jsonl (or .jsonl.gz)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def paired_outcomes(rows: list[dict], method: str, baseline: str) -> dict[Cell, dict[str, list[float]]]:
    """Per cell: clip → [method correct − baseline correct] for each question both answered without error."""
    answers: dict[tuple, float] = {}
    for r in rows:
        if r.get("error") or r["method"] not in (method, baseline):
            continue
        key = (r.get("suite", ""), r["protocol"], float(r["budget"]), r["method"], r["video"], r["id"])
        if answers.setdefault(key, row_correct(r)) != row_correct(r):  # pooled runs that disagree
            raise ValueError(f"two rows of {r['method']} on {r['id']} ({r['protocol']}, {r['budget']}) disagree")
    cells: dict[Cell, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (suite, protocol, budget, name, video, qid), ok in sorted(answers.items()):
        other = answers.get((suite, protocol, budget, baseline, video, qid))
        if name == method and other is not None:
            cells[(suite, protocol, budget)][video].append(ok - other)
    return {cell: dict(clips) for cell, clips in cells.items()}


def bootstrap_difference(clips: dict[str, list[float]], draws: int = 10_000, seed: int = 0) -> dict:
    """Difference in accuracy points (method − baseline) over the questions of `clips`, with a clip-level
    bootstrap: its 95 % percentile interval and the share of draws at or below 0."""
    per_clip = torch.tensor([sum(d) for d in clips.values()], dtype=torch.float64)
    sizes = torch.tensor([len(d) for d in clips.values()], dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.randint(len(per_clip), (draws, len(per_clip)), generator=generator)
    diffs = 100 * per_clip[drawn].sum(1) / sizes[drawn].sum(1)
    low, high = torch.quantile(diffs, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"clips": len(per_clip), "questions": int(sizes.sum()),
            "difference": round(100 * float(per_clip.sum() / sizes.sum()), 1),
            "low": round(low, 1), "high": round(high, 1), "not_ahead": round(float((diffs <= 0).double().mean()), 3)}


def difference_rows(rows: list[dict], method: str, against: list[str], draws: int = 10_000) -> list[dict]:
    """One row per (cell, baseline): the paired difference and its interval."""
    out = []
    for base in against:
        for (suite, protocol, budget), clips in sorted(paired_outcomes(rows, method, base).items()):
            out.append({"suite": suite, "protocol": protocol, "budget": budget, "baseline": base,
                        **bootstrap_difference(clips, draws)})
    return sorted(out, key=lambda r: (r["suite"], r["protocol"], -r["budget"], against.index(r["baseline"])))


def as_markdown(rows: list[dict], method: str) -> str:
    lines = [f"| suite | protocol | budget | {method} − baseline | clips | questions | difference (points) | "
             "95 % interval | draws not ahead |", "|---|---|---:|---|---:|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['suite']} | {r['protocol']} | {r['budget']:g} | {r['baseline']} | {r['clips']} | "
                     f"{r['questions']} | {r['difference']:+.1f} | {r['low']:+.1f} to {r['high']:+.1f} | "
                     f"{r['not_ahead']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+",
                        help="results.jsonl or results.jsonl.gz of an `acckv eval` run; several runs' rows are pooled")
    parser.add_argument("--method", default="acckv")
    parser.add_argument("--against", default="random,uniform,divprune", help="Comma list of baselines")
    parser.add_argument("--draws", type=int, default=10_000, help="Bootstrap draws per cell")
    parser.add_argument("--json", action="store_true", help="Rows as JSON instead of a Markdown table")
    args = parser.parse_args(argv)
    if args.draws < 100:
        parser.error("--draws must be at least 100")
    rows = []
    for path in args.results:
        try:
            rows += read_rows(path)
        except (OSError, ValueError, EOFError) as exc:  # a missing or unreadable file: one line, exit code 2
            parser.error(f"cannot read {path}: {exc}")
    against = [x for x in args.against.split(",") if x]
    names = ", ".join(map(str, args.results))
    try:
        table = difference_rows(rows, args.method, against, args.draws)
    except KeyError as exc:  # a JSONL that is not an `acckv eval` results file
        parser.error(f"{names} is not an `acckv eval` results file: a row has no {exc} field")
    except ValueError as exc:  # pooled runs that answered the same question differently
        parser.error(f"{names}: {exc}")
    if not table:
        parser.error(f"no question was answered by both {args.method} and any of {', '.join(against)}")
    print(json.dumps(table, indent=1) if args.json else as_markdown(table, args.method))


if __name__ == "__main__":
    main()
