"""The two-seed ranking check (`evaluation/seeds.py`) and the committed check the README quotes."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
from pathlib import Path

import pytest

from acckv_cli.evaluation import seeds as S
from acckv_cli.evaluation.paired import read_rows

ROOT = Path(__file__).resolve().parents[1]


def row(method: str, budget: float, accuracy: float, kl: float, suite: str = "sparse") -> dict:
    return {"suite": suite, "protocol": "context", "method": method, "budget": budget, "first_word": accuracy, "kl": kl}


@pytest.mark.parametrize("first, second, expected", [(5.0, 1.7, "holds"), (-2.8, -0.1, "holds"),
                                                     (5.0, -1.7, "flips"), (0.0, 3.0, "tie"), (3.0, 0.0, "tie")])
def test_verdict(first, second, expected):
    assert S.verdict(first, second) == expected


def test_a_ranking_holds_flips_or_ties_per_cell_and_lower_kl_counts_as_better():
    first = [row("full", 1.0, 0.8, 0.0), row("acckv", 0.05, 0.75, 0.2), row("random", 0.05, 0.65, 0.5),
             row("acckv", 0.1, 0.7, 0.3), row("random", 0.1, 0.7, 0.1)]
    second = [row("acckv", 0.05, 0.70, 0.3), row("random", 0.05, 0.60, 0.6),
              row("acckv", 0.1, 0.6, 0.1), row("random", 0.1, 0.7, 0.2)]
    rows = {r["budget"]: r for r in S.ranking_rows(first, second, "acckv", ["random", "uniform"])}
    assert set(rows) == {0.05, 0.1}  # no uniform rows, no full-cache cell
    assert (rows[0.05]["accuracy_first"], rows[0.05]["accuracy_second"], rows[0.05]["accuracy"]) == (10.0, 10.0, "holds")
    assert (rows[0.05]["kl_first"], rows[0.05]["kl"]) == (0.3, "holds")  # random's KL minus acckv's
    assert (rows[0.1]["accuracy"], rows[0.1]["kl"]) == ("tie", "flips")  # KL: -0.2 on the first, +0.1 on the second
    tokens = S.ranking_rows([row("acckv", 1024, 0.5, 0.4), row("random", 1024, 0.4, 0.6)],
                            [row("acckv", 1024, 0.3, 0.4), row("random", 1024, 0.4, 0.6)], "acckv", ["random"])
    assert [(r["accuracy"], r["kl"]) for r in tokens] == [("flips", "holds")]  # a token budget is a cell too
    swapped = {r["budget"]: r for r in S.ranking_rows(first, second, "random", ["acckv"])}
    assert swapped[0.05]["accuracy_first"] == -10.0 and swapped[0.05]["kl_first"] == -0.3


CHECKS = {"context": ("v2-compare-test-r4/context", "context", "random,uniform,divprune,acckv-round3"),
          "query-aware": ("v2-compare-test-r4/query-aware", "query-aware", "random,uniform,divprune,acckv-round3"),
          "long-stream": ("v2-long-stream-test", "long-stream", "random,uniform,acckv-round3")}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_committed_two_seed_check_is_what_the_committed_summaries_give(name, capsys):
    first, second, against = CHECKS[name]
    out = ROOT / "results/seed1-compare-test"
    S.main([str(ROOT / f"results/{first}/summary.json"), str(out / f"{second}/summary.json"),
            "--method", "acckv", "--against", against])
    printed = capsys.readouterr().out.strip()
    assert printed == (out / f"ranking-{name}.md").read_text().strip() and printed.count("\n") >= 4
    with gzip.open(out / f"{second}/results.jsonl.gz", "rt") as f:  # the second model really is the other seed
        assert {json.loads(line)["model"] for line in f} == {"runs/demo-seed1"}


def test_the_committed_tally_counts_the_committed_checks(capsys):
    """results/seed1-compare-test/ranking-tally.md (docs/two-seeds.md's first table) is what --tally gives on the committed
    summaries, and each count adds up to the cells of its (baseline, suite)."""
    r = ROOT / "results"
    S.main([str(r / "v2-compare-test-r4/context/summary.json"), str(r / "seed1-compare-test/context/summary.json"),
            str(r / "v2-compare-test-r4/query-aware/summary.json"), str(r / "seed1-compare-test/query-aware/summary.json"),
            str(r / "v2-long-stream-test/summary.json"), str(r / "seed1-compare-test/long-stream/summary.json"),
            "--against", "random,uniform,divprune", "--tally"])
    printed = capsys.readouterr().out.strip()
    assert printed == (r / "seed1-compare-test/ranking-tally.md").read_text().strip()
    assert printed in (ROOT / "docs" / "two-seeds.md").read_text()
    for line in printed.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for column in cells[3:5]:
            assert sum(int(n) for n in re.findall(r"(\d+)", column)) == int(cells[2]), line


def test_tally_says_which_way_a_ranking_holds():
    rows = [{"baseline": "random", "suite": "sparse", "accuracy": "holds", "accuracy_first": 5.0, "kl": "holds",
             "kl_first": -0.1}, {"baseline": "random", "suite": "sparse", "accuracy": "flips", "accuracy_first": 1.0,
                                 "kl": "tie", "kl_first": 0.0}]
    (group,) = S.tally(rows)
    assert group["accuracy"] == {"ahead on both": 1, "flips": 1} and group["kl"] == {"behind on both": 1, "tie": 1}


def test_the_committed_v2e_tally_counts_the_committed_checks(capsys):
    """results/seed1e-compare-test/ranking-tally.md (docs/two-seeds.md's second table) is --tally on the v2e grid and the
    second seed's after the same stage 2e, whose rows really come from runs/demo-seed1e."""
    r = ROOT / "results"
    S.main([str(r / "v2e-test/context/summary.json"), str(r / "seed1e-compare-test/context/summary.json"),
            str(r / "v2e-test/query-aware/summary.json"), str(r / "seed1e-compare-test/query-aware/summary.json"),
            "--against", "random,uniform,divprune", "--tally"])
    printed = capsys.readouterr().out.strip()
    assert printed == (r / "seed1e-compare-test/ranking-tally.md").read_text().strip()
    assert printed in (ROOT / "docs" / "two-seeds.md").read_text()
    for protocol in ("context", "query-aware"):
        with gzip.open(r / f"seed1e-compare-test/{protocol}/results.jsonl.gz", "rt") as f:
            assert {json.loads(line)["model"] for line in f} == {"runs/demo-seed1e"}


def test_the_committed_round7_tally_counts_the_committed_checks(capsys):
    """results/r7-test/ranking-tally.md (docs/two-seeds.md's third table): --tally on the round-7 grid of v2e and of the
    second seed, run by the same code."""
    r = ROOT / "results/r7-test"
    S.main([str(r / "v2e/context/summary.json"), str(r / "seed1e/context/summary.json"),
            str(r / "v2e/query-aware/summary.json"), str(r / "seed1e/query-aware/summary.json"),
            "--against", "random,uniform,divprune", "--tally"])
    printed = capsys.readouterr().out.strip()
    assert printed == (r / "ranking-tally.md").read_text().strip()
    assert printed in (ROOT / "docs" / "two-seeds.md").read_text()
    for name, model in (("v2e", "builtin-demo"), ("seed1e", "runs/demo-seed1e")):
        for protocol in ("context", "query-aware"):
            with gzip.open(r / f"{name}/{protocol}/results.jsonl.gz", "rt") as f:
                rows = [json.loads(line) for line in f]
            assert {x["model"] for x in rows} == {model} and {x["code_version"] for x in rows} == {"0.1.0+68c0d48"}


def test_the_committed_round8_tally_counts_the_committed_checks(capsys):
    """results/r8-test/ranking-tally.md (docs/two-seeds.md's fourth table): --tally on the round-8 grid of
    the built-in v2f and of the second seed after the same stage 2f, run by the same code."""
    r = ROOT / "results/r8-test"
    S.main([str(r / "v2f/context/summary.json"), str(r / "seed1f/context/summary.json"),
            str(r / "v2f/query-aware/summary.json"), str(r / "seed1f/query-aware/summary.json"),
            "--against", "random,uniform,divprune", "--tally"])
    printed = capsys.readouterr().out.strip()
    assert printed == (r / "ranking-tally.md").read_text().strip()
    assert printed in (ROOT / "docs" / "two-seeds.md").read_text()
    versions = set()
    for name, model in (("v2f", "builtin-demo"), ("seed1f", "runs/demo-seed1f")):
        for protocol in ("context", "query-aware"):
            with gzip.open(r / f"{name}/{protocol}/results.jsonl.gz", "rt") as f:
                rows = [json.loads(line) for line in f]
            assert {x["model"] for x in rows} == {model}
            versions |= {x["code_version"].split("+")[-1] for x in rows}
    trees = {subprocess.run(["git", "rev-parse", f"{v}:acckv_cli"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout for v in versions}
    assert len(trees) == 1  # the protocols may have started at different commits, never with different code


def test_a_missing_summary_is_a_one_line_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        S.main([str(tmp_path / "missing.json"), str(tmp_path / "other.json")])
    assert exit_.value.code == 2 and "cannot read a summary" in capsys.readouterr().err


def test_the_rebuilt_second_seed_answers_as_the_lost_one_did():
    """Round 9's two-seed check reuses round 8's baseline rows on the second seed, whose weights were lost and rebuilt
    (results/demo-seed1/). That is sound only if the rebuilt model is the same model: round 8's AccKV (`acckv-round8`)
    run again on it must answer every question of round 8's grid as round 8's `acckv` did, and the full cache's
    answer, recomputed beside every new row, must be round 8's `full` answer."""
    r8 = [x for p in ("context", "query-aware") for x in read_rows(ROOT / f"results/r8-test/seed1f/{p}/results.jsonl.gz")]
    new = read_rows(ROOT / "results/r9-seed-check/seed1f/results.jsonl.gz")
    reused = {x["code_version"] for x in r8}
    fresh = [x for x in new if x["code_version"] not in reused]
    assert {x["method"] for x in fresh} == {"acckv", "acckv-round8", "divprune"}
    before = {(x["id"], x["protocol"], float(x["budget"])): x for x in r8 if x["method"] == "acckv"}
    again = {(x["id"], x["protocol"], float(x["budget"])): x for x in fresh if x["method"] == "acckv-round8"}
    assert len(again) == 384 and set(again) <= set(before)
    assert all(again[k]["answer"] == before[k]["answer"] for k in again)
    full = {(x["id"], x["protocol"]): x["answer"] for x in r8 if x["method"] == "full"}
    assert all(x["full_answer"] == full[(x["id"], x["protocol"])] for x in fresh)
    assert {x["model"] for x in new} == {"runs/demo-seed1f"}


def test_the_committed_round9_tally_counts_the_committed_checks(capsys):
    """results/r9-seed-check/ranking-tally.md (docs/two-seeds.md's fifth table): --tally on round 9's default over
    round 8's 12-clip grid at 10 and 5 %, v2f's rows taken from results/r9-test."""
    r = ROOT / "results/r9-seed-check"
    S.main([str(r / "v2f/summary.json"), str(r / "seed1f/summary.json"), "--against", "random,uniform,divprune",
            "--tally"])
    printed = capsys.readouterr().out.strip()
    assert printed == (r / "ranking-tally.md").read_text().strip()
    assert printed in (ROOT / "docs" / "two-seeds.md").read_text()
    v2f = read_rows(r / "v2f/results.jsonl.gz")
    r9 = {(x["id"], x["protocol"], x["method"], float(x["budget"])): x for x in read_rows(ROOT / "results/r9-test/v2f/results.jsonl.gz")}
    assert all(r9[(x["id"], x["protocol"], x["method"], float(x["budget"]))] == x for x in v2f)  # copied, not rerun


def test_the_committed_30_clip_round9_tally_counts_the_committed_checks(capsys):
    """results/r9-test/ranking-tally.md (the README's table and docs/two-seeds.md's sixth): --tally on the README's
    30-clip grid on v2f and the second seed; the second seed's first 12 clips per suite are the 12-clip check's rows,
    copied unchanged."""
    r = ROOT / "results/r9-test"
    S.main([str(r / "v2f/summary.json"), str(r / "seed1f/summary.json"), "--against", "random,uniform,divprune",
            "--tally"])
    printed = capsys.readouterr().out.strip()
    assert printed == (r / "ranking-tally.md").read_text().strip() and printed in (ROOT / "README.md").read_text()
    assert printed in (ROOT / "docs" / "two-seeds.md").read_text()
    wide = {(x["id"], x["protocol"], x["method"], float(x["budget"])): x for x in read_rows(r / "seed1f/results.jsonl.gz")}
    narrow = read_rows(ROOT / "results/r9-seed-check/seed1f/results.jsonl.gz")
    assert len(wide) == 7200 and all(wide[(x["id"], x["protocol"], x["method"], float(x["budget"]))] == x for x in narrow)
    assert {x["model"] for x in wide.values()} == {"runs/demo-seed1f"}
