"""Committed results: the summaries behind the README's accuracy tables, recounted from their raw rows.

`results/*/results.jsonl(.gz)` hold one row per (question, protocol, method, budget) with the model's answer
and the expected one; `summary.json` is what `acckv eval` computed from them. Here the accuracy of every
summary row (overall first word and per question family) is counted again from the answer texts with a
scoring rule written in the test, and compared with both `summarise()` and the committed summary.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from acckv_cli.evaluation.summary import budget_number, summarise

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = {"a", "an", "the"}
# runs whose raw rows are committed beside their summary
RAW = ("v2-compare-test", "v2-calibration-sparse-test", "eval-test", "eval-long-test")


def read_rows(run: str) -> list[dict]:
    folder = ROOT / "results" / run
    path = folder / "results.jsonl.gz"
    opener = gzip.open if path.exists() else open
    path = path if path.exists() else folder / "results.jsonl"
    with opener(path, "rt") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def first_word_right(answer: str, expected: str) -> bool:
    """The test's own rule: the answer's first words (lower case, punctuation and articles dropped) are the
    expected answer's words ("The flute." is right for "flute"; "flutes" and "circlene" are not)."""
    def words(text):
        return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w and w not in ARTICLES]
    want = words(expected)
    return bool(want) and words(answer)[:len(want)] == want


def key(row: dict) -> tuple:
    return row.get("suite"), row["protocol"], row["method"], float(budget_number(row["budget"]))


@pytest.mark.parametrize("run", RAW)
def test_summary_accuracy_is_a_count_of_the_committed_answers(run):
    """For every (suite, protocol, method, budget) of the run: first-word accuracy overall and per family,
    counted from the answer texts, equal `summarise()` on the rows and the committed summary.json (to its 4
    decimals). Catches: a summary averaging over the wrong group (families mixed, budgets merged), errors
    counted as wrong or as right, a stored first_word_correct that disagrees with the answer text, or a
    summary.json written by other code than the rows beside it."""
    rows = read_rows(run)
    free = [r for r in rows if "error" not in r and "choice_correct" not in r]
    assert free
    right: dict[tuple, list[bool]] = defaultdict(list)
    for row in free:
        ok = first_word_right(row["answer"], row["expected"])
        assert ok == bool(row["first_word_correct"]), (row["answer"], row["expected"])
        right[key(row)].append(ok)
        right[key(row) + (row["family"],)].append(ok)
    computed = {key(e): e for e in summarise(rows)}
    committed = {key(e): e for e in json.loads((ROOT / "results" / run / "summary.json").read_text())}
    assert set(computed) == set(committed) == {k for k in right if len(k) == 4}
    for k, entry in committed.items():
        count = right[k]
        assert entry["n"] == len([r for r in rows if key(r) == k])
        assert entry["first_word"] == pytest.approx(sum(count) / len(count), abs=5e-5), k
        assert computed[k]["first_word"] == pytest.approx(sum(count) / len(count), abs=5e-5), k
        families = {f[4] for f in right if f[:4] == k and len(f) == 5}
        for family in families:
            share = sum(right[k + (family,)]) / len(right[k + (family,)])
            assert entry[family] == pytest.approx(share, abs=5e-5), (k, family)
            assert computed[k][family] == pytest.approx(share, abs=5e-5), (k, family)
        for field in ("evidence_kept", "kept_time", "agreement", "kl"):  # the other columns: the rows' mean
            values = [float(r[field]) for r in rows if key(r) == k and r.get(field) is not None and "error" not in r]
            if values:
                assert entry[field] == pytest.approx(sum(values) / len(values), abs=5e-5), (k, field)
