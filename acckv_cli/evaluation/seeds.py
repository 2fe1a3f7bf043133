"""Does a method ranking hold on a second model? Two `eval` summaries of the same grid, compared cell by cell.

A ranking measured on one trained model may be a property of that model's seed. The check: for every
(suite, protocol, budget) cell both summaries hold, the signed difference `method − baseline` in accuracy
(first word, or choice) and in first-token KL, on each model. A ranking *holds* when both differences have
the same sign, *flips* when they have opposite signs, and is a *tie* when either is zero (one question is
the resolution: a tie on either model establishes nothing).

    python -m acckv_cli.evaluation.seeds FIRST/summary.json SECOND/summary.json --method acckv \
        --against random,uniform,divprune
    python -m acckv_cli.evaluation.seeds A1 B1 A2 B2 ... --tally   # holds / flips / ties per baseline and suite
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

Cell = tuple[str, str, float]  # (suite, protocol, budget)


def _accuracy(row: dict) -> float:
    return row["choice"] if "choice" in row else row["first_word"]


def _by_cell(summary: list[dict]) -> dict[tuple[str, str, str, float], dict]:
    return {(r.get("suite", ""), r["protocol"], r["method"], float(r["budget"])): r for r in summary}


def verdict(first: float, second: float) -> str:
    """"holds" when two signed differences agree in sign, "flips" when they disagree, "tie" when either is 0."""
    if first == 0 or second == 0:
        return "tie"
    return "holds" if (first > 0) == (second > 0) else "flips"


def ranking_rows(first: list[dict], second: list[dict], method: str, against: list[str]) -> list[dict]:
    """One row per (cell, baseline) found in both summaries: accuracy and KL differences on each model and
    their verdicts. For KL lower is better, so its difference is `baseline − method` (positive: method better)."""
    a, b = _by_cell(first), _by_cell(second)
    cells = sorted({(s, p, x) for (s, p, m, x) in a if m == method and x != 1.0} & set(
        (s, p, x) for (s, p, m, x) in b if m == method))
    rows = []
    for suite, protocol, budget in cells:
        for base in against:
            keys = [(suite, protocol, name, budget) for name in (method, base)]
            if not all(k in a and k in b for k in keys):
                continue
            (ma, ba), (mb, bb) = [(d[keys[0]], d[keys[1]]) for d in (a, b)]
            acc = (round(100 * (_accuracy(ma) - _accuracy(ba)), 1), round(100 * (_accuracy(mb) - _accuracy(bb)), 1))
            kl = (round(ba["kl"] - ma["kl"], 4), round(bb["kl"] - mb["kl"], 4))
            rows.append({"suite": suite, "protocol": protocol, "budget": budget, "baseline": base,
                         "accuracy_first": acc[0], "accuracy_second": acc[1], "accuracy": verdict(*acc),
                         "kl_first": kl[0], "kl_second": kl[1], "kl": verdict(*kl)})
    return rows


def tally(rows: list[dict]) -> list[dict]:
    """Per (baseline, suite): how many cells hold with the method ahead on both models, hold with it behind on
    both, flip or tie, in accuracy and in KL (rows of several runs)."""
    groups: dict[tuple[str, str], dict] = {}
    for r in rows:
        group = groups.setdefault((r["baseline"], r["suite"]), {"baseline": r["baseline"], "suite": r["suite"],
                                                                "accuracy": {}, "kl": {}})
        for metric in ("accuracy", "kl"):
            word = r[metric]
            if word == "holds":  # which way it holds: the method ahead of the baseline on both models, or behind
                word = "ahead on both" if r[f"{metric}_first"] > 0 else "behind on both"
            group[metric][word] = group[metric].get(word, 0) + 1
    return list(groups.values())


def tally_markdown(groups: list[dict]) -> str:
    def counts(c: dict) -> str:
        return ", ".join(f"{word} {c[word]}" for word in ("ahead on both", "behind on both", "flips", "tie")
                         if c.get(word))
    lines = ["| baseline | suite | cells | accuracy ranking | KL ranking |", "|---|---|---:|---|---|"]
    for g in groups:
        lines.append(f"| `{g['baseline']}` | {g['suite']} | {sum(g['accuracy'].values())} | {counts(g['accuracy'])} | "
                     f"{counts(g['kl'])} |")
    return "\n".join(lines)


def as_markdown(rows: list[dict], method: str) -> str:
    lines = [f"| suite | protocol | budget | {method} − baseline | accuracy, first model | accuracy, second model | "
             "accuracy ranking | KL gain, first | KL gain, second | KL ranking |",
             "|---|---|---:|---|---:|---:|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['suite']} | {r['protocol']} | {r['budget']:g} | {r['baseline']} | "
                     f"{r['accuracy_first']:+.1f} | {r['accuracy_second']:+.1f} | {r['accuracy']} | "
                     f"{r['kl_first']:+.3f} | {r['kl_second']:+.3f} | {r['kl']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", type=Path, nargs="+",
                        help="summary.json of the first model, then of the second (same grid); with --tally, "
                             "any number of such pairs")
    parser.add_argument("--method", default="acckv")
    parser.add_argument("--against", default="random,uniform,divprune", help="Comma list of baselines")
    parser.add_argument("--tally", action="store_true", help="Count holds / flips / ties per baseline and suite")
    parser.add_argument("--json", action="store_true", help="Rows as JSON instead of a Markdown table")
    args = parser.parse_args(argv)
    if len(args.pairs) % 2 or (len(args.pairs) > 2 and not args.tally):
        parser.error("give one pair of summaries (first model, second model), or several pairs with --tally")
    against = [x for x in args.against.split(",") if x]
    try:
        summaries = [json.loads(path.read_text()) for path in args.pairs]
    except (OSError, ValueError) as exc:  # a missing or unreadable summary: one line, exit code 2
        parser.error(f"cannot read a summary: {exc}")
    rows = [row for first, second in zip(summaries[::2], summaries[1::2])
            for row in ranking_rows(first, second, args.method, against)]
    if args.tally:
        groups = tally(rows)
        print(json.dumps(groups, indent=1) if args.json else tally_markdown(groups))
    else:
        print(json.dumps(rows, indent=1) if args.json else as_markdown(rows, args.method))


if __name__ == "__main__":
    main()
