"""Where a method loses answers on SynthAVQA: first-word accuracy by where the answer's evidence lies.

Reads an `acckv eval` results.jsonl of a SynthAVQA split (row ids `<split>-<index>-q<k>`), regenerates each
clip's exact ground truth, and splits every (protocol, method, budget) by
  * family (audio / video / alignment),
  * where the evidence span sits in the clip (its centre in the first, middle or last third),
  * the clip's length (4–6 s, 7–9 s, 10–12 s),
so a loss can be read against where the answer's media were. It also prints the mean share of the
evidence span's media entries each method kept (`evidence_kept`) in the same buckets.

    python benchmarks/where_acckv_loses.py results/eval-test/results.jsonl.gz --methods full,random,acckv
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import defaultdict
from pathlib import Path

from acckv_cli.synth.avqa import make_example, question_evidence


def bucket_of(row: dict) -> dict[str, str] | None:
    split, index, _ = row["id"].rsplit("-", 2)
    example = make_example(split, int(index))
    span = question_evidence(example.spec, row["question"])
    if span is None:
        return None
    duration = example.spec.duration_s
    centre = (span[0] + span[1]) / 2 / duration
    third = "early" if centre < 1 / 3 else "middle" if centre < 2 / 3 else "late"
    length = "4-6 s" if duration <= 6 else "7-9 s" if duration <= 9 else "10-12 s"
    return {"family": row.get("family") or "?", "evidence": third, "length": length}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--methods", default="full,random,acckv")
    parser.add_argument("--budgets", default="1.0,0.2,0.1,0.05")
    args = parser.parse_args()
    methods, budgets = args.methods.split(","), {float(b) for b in args.budgets.split(",")}
    text = (gzip.decompress(args.results.read_bytes()).decode() if args.results.suffix == ".gz"
            else args.results.read_text())  # the committed results are gzipped
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    cells: dict[tuple, list] = defaultdict(list)
    for row in rows:
        row["budget"] = str(row["budget"])  # rows written since issue 26 hold numbers (0.2), older ones "0.2"
        if "error" in row or row["method"] not in methods or float(row["budget"]) not in budgets:
            continue
        buckets = bucket_of(row)
        if buckets is None:
            continue
        for axis, value in buckets.items():
            cells[(row["protocol"], axis, value, row["method"], row["budget"])].append(row)
    configs = sorted({(k[3], k[4]) for k in cells}, key=lambda c: (methods.index(c[0]), -float(c[1])))
    for protocol in sorted({k[0] for k in cells}):
        for axis in ("family", "evidence", "length"):
            values = sorted({k[2] for k in cells if k[0] == protocol and k[1] == axis})
            print(f"\n{protocol} — first-word accuracy % (evidence kept %) by {axis}")
            print("| method | budget | " + " | ".join(values) + " |")
            print("|---|---|" + "---|" * len(values))
            for method, budget in configs:
                parts = []
                for value in values:
                    group = cells.get((protocol, axis, value, method, budget), [])
                    if not group:
                        parts.append("–")
                        continue
                    acc = 100 * sum(r["first_word_correct"] for r in group) / len(group)
                    ev = [r["evidence_kept"] for r in group if r.get("evidence_kept") is not None]
                    parts.append(f"{acc:.0f} ({100 * sum(ev) / len(ev):.1f}, n={len(group)})" if ev else f"{acc:.0f}")
                print(f"| `{method}` | {budget} | " + " | ".join(parts) + " |")


if __name__ == "__main__":
    main()
