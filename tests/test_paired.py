"""The paired clip-level bootstrap (`evaluation/paired.py`) and the committed intervals the README quotes."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from acckv_cli.evaluation import paired as P

ROOT = Path(__file__).resolve().parents[1]


def answer(method: str, clip: int, q: int, correct: bool, budget: float = 0.05, **extra) -> dict:
    return {"suite": "sparse", "protocol": "context", "method": method, "budget": budget, "video": f"clip{clip}.mp4",
            "id": f"clip{clip}-q{q}", "first_word_correct": correct, **extra}


def grid(outcomes: dict[str, list[list[bool]]]) -> list[dict]:
    """Rows from method → per clip → per question correctness."""
    return [answer(m, c, q, ok) for m, clips in outcomes.items() for c, qs in enumerate(clips) for q, ok in enumerate(qs)]


def test_identical_methods_differ_by_nothing_and_are_never_ahead():
    same = [[True, False, True], [False, False, True], [True, True, True]]
    (row,) = P.difference_rows(grid({"acckv": same, "random": same}), "acckv", ["random"], draws=500)
    assert (row["difference"], row["low"], row["high"], row["not_ahead"]) == (0.0, 0.0, 0.0, 1.0)
    assert (row["clips"], row["questions"]) == (3, 9)


def test_a_method_always_right_against_one_always_wrong_is_100_points_ahead_in_every_draw():
    (row,) = P.difference_rows(grid({"acckv": [[True] * 4] * 5, "random": [[False] * 4] * 5}), "acckv", ["random"], 500)
    assert (row["difference"], row["low"], row["high"], row["not_ahead"]) == (100.0, 100.0, 100.0, 0.0)


def test_swapping_method_and_baseline_negates_the_difference_and_its_interval():
    rows = grid({"acckv": [[True, True], [True, False], [False, True], [True, True], [False, False]],
                 "random": [[False, True], [False, False], [False, True], [True, False], [False, True]]})
    (ahead,) = P.difference_rows(rows, "acckv", ["random"], draws=2000)
    (behind,) = P.difference_rows(rows, "random", ["acckv"], draws=2000)
    assert ahead["difference"] == 20.0 == -behind["difference"]  # 6 right against 4, of 10 questions
    assert (ahead["low"], ahead["high"]) == (-behind["high"], -behind["low"])
    assert ahead["low"] < ahead["difference"] < ahead["high"]
    assert ahead["not_ahead"] < 0.5 < behind["not_ahead"]


def test_the_clip_is_the_unit_a_clip_s_questions_do_not_count_as_independent_evidence():
    """Four clips of ten questions that succeed or fail together: three for the method, one against. As 40
    independent questions this would be a sure lead; as four clips, a quarter of draws or so repeat the bad clip."""
    method = [[True] * 10] * 3 + [[False] * 10]
    baseline = [[False] * 10] * 3 + [[True] * 10]
    (by_clip,) = P.difference_rows(grid({"a": method, "b": baseline}), "a", ["b"], draws=4000)
    flat = grid({"a": [[x] for qs in method for x in qs], "b": [[x] for qs in baseline for x in qs]})
    (by_question,) = P.difference_rows(flat, "a", ["b"], draws=4000)
    assert by_clip["difference"] == by_question["difference"] == 50.0
    assert by_clip["not_ahead"] > 0.2 and by_question["not_ahead"] < 0.01
    assert by_clip["low"] <= 0 < by_question["low"]


def test_only_questions_both_answered_without_error_are_paired_per_cell():
    rows = grid({"acckv": [[True, True]], "random": [[False, False]]})
    rows += [answer("random", 0, 2, False), answer("acckv", 0, 3, True, error="boom"), answer("random", 0, 3, False),
             answer("acckv", 0, 0, False, budget=0.1), answer("random", 0, 0, True, budget=0.1),
             answer("uniform", 0, 0, False)]
    table = {r["budget"]: r for r in P.difference_rows(rows, "acckv", ["random"], draws=200)}
    assert table[0.05]["questions"] == 2 and table[0.05]["difference"] == 100.0
    assert table[0.1]["questions"] == 1 and table[0.1]["difference"] == -100.0


def test_the_cli_reads_a_gzipped_run_and_refuses_a_missing_one_in_one_line(tmp_path):
    path = tmp_path / "results.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in grid({"acckv": [[True]] * 3, "random": [[False]] * 3}))
    ok = subprocess.run([sys.executable, "-m", "acckv_cli.evaluation.paired", str(path), "--json"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert [(r["baseline"], r["difference"]) for r in json.loads(ok.stdout)] == [("random", 100.0)]
    missing = subprocess.run([sys.executable, "-m", "acckv_cli.evaluation.paired", str(tmp_path / "none.jsonl")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr
    other = tmp_path / "other.jsonl"
    other.write_text('{"video": "a.mp4", "question": "?"}\n')
    wrong = subprocess.run([sys.executable, "-m", "acckv_cli.evaluation.paired", str(other)], capture_output=True, text=True)
    assert wrong.returncode == 2 and "not an `acckv eval` results file" in wrong.stderr and "Traceback" not in wrong.stderr


def test_several_runs_are_pooled_and_runs_that_disagree_are_refused(tmp_path):
    """A candidate measured later against an earlier run's rows on the same clips: the rows pool; a question two
    runs answered differently for the same method is an error (one line, exit 2), not a silent choice of one."""
    first, later, clash = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in grid({"random": [[False], [False]]})))
    later.write_text("".join(json.dumps(r) + "\n" for r in grid({"acckv": [[True], [False]], "random": [[False], [False]]})))
    clash.write_text("".join(json.dumps(r) + "\n" for r in grid({"random": [[True], [False]]})))
    run = [sys.executable, "-m", "acckv_cli.evaluation.paired", "--json", "--against", "random"]
    ok = subprocess.run(run + [str(first), str(later)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert [(r["clips"], r["difference"]) for r in json.loads(ok.stdout)] == [(2, 50.0)]
    bad = subprocess.run(run + [str(later), str(clash)], capture_output=True, text=True)
    assert bad.returncode == 2 and "disagree" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("run", ["results/r8-test/v2f/context", "results/r8-test/v2f/query-aware"])
def test_committed_intervals_are_the_bootstrap_of_the_committed_rows(run):
    """results/r8-test/paired-intervals.md is what the module prints for the committed test runs."""
    text = (ROOT / "results" / "r8-test" / "paired-intervals.md").read_text()
    rows = P.read_rows(ROOT / run / "results.jsonl.gz")
    for r in P.difference_rows(rows, "acckv", ["random", "uniform", "divprune"], draws=10_000):
        line = (f"| {r['suite']} | {r['protocol']} | {r['budget']:g} | {r['baseline']} | {r['clips']} | "
                f"{r['questions']} | {r['difference']:+.1f} | {r['low']:+.1f} to {r['high']:+.1f} | {r['not_ahead']:.3f} |")
        assert line in text, line


def test_round_10_intervals_are_the_bootstrap_of_the_two_runs_pooled():
    """results/validation-round-10/paired-intervals.md (docs/acckv-defaults.md round 10) is what the module prints
    for the candidate's run pooled with round 9's run of the default on the same clips."""
    text = (ROOT / "results" / "validation-round-10" / "paired-intervals.md").read_text()
    rows = (P.read_rows(ROOT / "results/validation-round-10/skeleton-025/results.jsonl.gz")
            + P.read_rows(ROOT / "results/validation-round-9/snapkv-ideas/results.jsonl.gz"))
    table = P.difference_rows(rows, "acckv:skeleton=0.25", ["acckv:pooling=3"], draws=10_000)
    assert len(table) == 8 and P.as_markdown(table, "acckv:skeleton=0.25") == text.strip()


def test_round_10_probe_intervals_are_the_bootstrap_of_the_three_runs_pooled():
    """results/validation-round-10/paired-probes.md: each query-aware probe against the default (round 9's rows) and
    random, pooled from the two probe runs and round 9's run, as results/validation-round-10/run.sh prints it."""
    runs = ["validation-round-10/last-rows", "validation-round-10/no-bins", "validation-round-9/snapkv-ideas"]
    rows = [r for run in runs for r in P.read_rows(ROOT / "results" / run / "results.jsonl.gz")]
    probes = ["score_queries=window:1", "score_queries=window:4", "coverage=none", "coverage=none,score_queries=window:1"]
    printed = "\n".join(P.as_markdown(P.difference_rows(rows, f"acckv:{m}", ["acckv:pooling=3", "random"]), f"acckv:{m}")
                        for m in probes)
    assert printed == (ROOT / "results" / "validation-round-10" / "paired-probes.md").read_text().strip()


@pytest.mark.parametrize("folder, method, against, printed", [
    ("validation-round-11/seed1f", "acckv:skeleton=0.25", "acckv,random,uniform", "validation-round-11/paired-intervals.md"),
    ("r9-seed-check/seed1f", "acckv", "random,uniform,divprune,oracle,acckv-round8",
     "r9-seed-check/paired-intervals-seed1f.md"),
    ("r9-test/seed1f", "acckv", "random,uniform,divprune,oracle,acckv-round8", "r9-test/paired-intervals-seed1f.md")])
def test_second_seed_intervals_are_the_bootstrap_of_the_committed_rows(folder, method, against, printed):
    """The second seed's committed intervals (docs/acckv-defaults.md round 11, docs/two-seeds.md round 9) are what
    the module prints for the committed rows beside them, as the runs' scripts print them."""
    rows = P.read_rows(ROOT / "results" / folder / "results.jsonl.gz")
    table = P.difference_rows(rows, method, against.split(","), draws=10_000)
    assert len(table) == 8 * len(against.split(","))
    assert P.as_markdown(table, method) == (ROOT / "results" / printed).read_text().strip()


@pytest.mark.parametrize("part, method", [("2", "acckv:modality_floor=1"), ("3", "acckv:modality_floor=0.9")])
def test_round_12_intervals_are_the_bootstrap_of_each_probe_pooled_with_the_default(part, method):
    """results/validation-round-12/paired-intervals-{2,3}.md (docs/acckv-defaults.md round 12): per model and suite,
    the probe's run pooled with the first part's run of the default, in the script's order."""
    r = ROOT / "results" / "validation-round-12"
    printed = []
    for name in ("seed1f", "v2f"):
        for suite in ("core", "sparse"):
            rows = P.read_rows(r / f"{name}-{suite}" / "results.jsonl.gz") + P.read_rows(r / f"{name}-{suite}-{part}" / "results.jsonl.gz")
            printed.append(P.as_markdown(P.difference_rows(rows, method, ["acckv"], draws=10_000), method))
    assert "\n".join(printed) == (r / f"paired-intervals-{part}.md").read_text().strip()


def test_round_12_fourth_part_intervals_are_the_bootstrap_of_each_run():
    """results/validation-round-12/paired-intervals-4.md: the 0.9 floor against the default and random at 10 %, one
    run per model and suite, in the script's order."""
    r = ROOT / "results" / "validation-round-12"
    method = "acckv:modality_floor=0.9"
    printed = [P.as_markdown(P.difference_rows(P.read_rows(r / f"{name}-{suite}-4" / "results.jsonl.gz"), method,
                                               ["acckv", "random"], draws=10_000), method)
               for name in ("seed1f", "v2f") for suite in ("core", "sparse")]
    assert "\n".join(printed) == (r / "paired-intervals-4.md").read_text().strip()
