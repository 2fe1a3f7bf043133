"""Start an `eval` folder from the finished rows of earlier runs, so `acckv eval --resume` computes only the rest.

A new method checked on clips and a model that an earlier run already measured needs the baselines' rows, not a
rerun of them (hours on two cores). This copies the rows of the named methods from earlier results files into
`OUT/results.jsonl`; `acckv eval --resume --out-dir OUT` then skips every (question, protocol, method, budget) it
finds there and summarises only the grid it was asked for. Rows keep the `model` and `code_version` of the run that
made them. Refused in one line (exit code 2): a row of another model than `--model` (a grid must not mix models),
two sources that answered one question differently for one method, and an `OUT/results.jsonl` that exists.
`--videos-from` keeps only the clips of another run (the 12 clips of one grid out of the 30 of a larger one) and
`--budgets` only the budgets of the new grid, so that the folder's rows are the grid its summary reports.

    python -m acckv_cli.evaluation.reuse results/r8-test/seed1f/context/results.jsonl.gz \
        --methods full,random,uniform --model runs/demo-seed1f --out results/r9-test/seed1f

Method labels are all that identify a method in a row, so copy only methods whose code has not changed since (the
baselines): an `acckv` row of an earlier default would otherwise stand in for today's `acckv`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from acckv_cli.evaluation.evaluate import result_key
from acckv_cli.evaluation.paired import read_rows
from acckv_cli.methods import Budget


def reusable_rows(rows: list[dict], methods: set[str], model: str, videos: set[str] | None = None,
                  budgets: set[float] | None = None) -> list[dict]:
    """The rows of `methods` (and of `videos` and `budgets`, when given; `full` runs at 100 % only and is kept at
    any `budgets`), one per result key; ValueError for a row of another model or two rows of one key whose
    answers differ."""
    kept: dict[str, dict] = {}
    for row in rows:
        if row["method"] not in methods or (videos is not None and row["video"] not in videos):
            continue
        if budgets is not None and row["method"] != "full" and Budget.parse(str(row["budget"])).number not in budgets:
            continue
        if row.get("model") != model:
            raise ValueError(f"a row of {row['method']} on {row['id']} was made by model {row.get('model')!r}, "
                             f"not {model!r}")
        key = result_key(row["id"], row["protocol"], row["method"], row["budget"])
        first = kept.setdefault(key, row)
        if first.get("answer") != row.get("answer"):
            raise ValueError(f"two rows of {row['method']} on {row['id']} ({row['protocol']}, {row['budget']}) "
                             f"answer differently: {first.get('answer')!r} and {row.get('answer')!r}")
    return list(kept.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", type=Path, nargs="+", help="results.jsonl or results.jsonl.gz of earlier runs")
    parser.add_argument("--methods", required=True, help="Comma list of the method labels to copy")
    parser.add_argument("--model", required=True, help="The model every copied row must name (its `model` field)")
    parser.add_argument("--videos-from", type=Path, metavar="RESULTS",
                        help="Copy only rows of the clips this results file has rows of (a subset of a larger run)")
    parser.add_argument("--budgets", help="Comma list: copy only rows at these budgets (and `full`'s)")
    parser.add_argument("--out", type=Path, required=True, help="The eval folder to start")
    args = parser.parse_args(argv)
    target = args.out / "results.jsonl"
    if target.exists():
        parser.error(f"{target} exists: reuse starts a folder, it does not add to one")
    try:
        rows = [row for path in args.sources for row in read_rows(path)]
        videos = {row["video"] for row in read_rows(args.videos_from)} if args.videos_from else None
        budgets = {Budget.parse(b).number for b in args.budgets.split(",") if b} if args.budgets else None
        kept = reusable_rows(rows, {m for m in args.methods.split(",") if m}, args.model, videos, budgets)
    except (OSError, ValueError, KeyError) as exc:
        parser.error(str(exc))
    args.out.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(json.dumps(row) + "\n" for row in kept))
    print(f"{len(kept)} rows copied to {target}")


if __name__ == "__main__":
    main()
