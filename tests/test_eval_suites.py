"""`acckv eval --suite`: the sparse and long SynthAVQA suites as evaluation items, and the calibration lines."""

from __future__ import annotations

from typer.testing import CliRunner

from acckv_cli.cli.app import app
from acckv_cli.evaluation import evaluate as ev
from acckv_cli.evaluation.summary import calibration, summarise
from acckv_cli.synth.sparse import SPARSE_FAMILIES, make_sparse_example


def test_sparse_items_carry_their_suite_family_and_evidence_spans(tmp_path):
    items = ev.synthavqa_items("validation", 1, tmp_path, suite="sparse")
    example = make_sparse_example("sparse", "validation", 0)
    assert [i.family for i in items] == list(SPARSE_FAMILIES)
    assert [i.evidence for i in items] == [qa.evidence for qa in example.questions]
    assert {i.suite for i in items} == {"sparse"} and all(i.evidence for i in items)
    assert (tmp_path / "sparse" / "validation" / f"{example.key}.mp4").stat().st_size > 0


def test_eval_refuses_an_unknown_suite_before_loading_anything(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--suite", "core,bogus", "--out-dir", str(tmp_path)])
    assert result.exit_code == 2 and "unknown suite 'bogus'" in result.stderr
    assert not (tmp_path / "results.jsonl").exists()


def _rows(suite, method, budget, correct, n=10):
    return [{"suite": suite, "protocol": "context", "method": method, "budget": budget, "id": f"{suite}{i}",
             "family": "audio", "kv_kept": 0.5, "media_kept": 0.1, "first_word_correct": i < correct,
             "exact_correct": i < correct, "first_token_agrees": True, "first_token_kl": 0.0} for i in range(n)]


def test_calibration_lines_read_random_and_oracle_against_the_full_cache():
    rows = (_rows("sparse", "full", "1.0", 10) + _rows("sparse", "random", "0.1", 8) + _rows("sparse", "random", "0.05", 5)
            + _rows("sparse", "oracle", "0.05", 10) + _rows("core", "full", "1.0", 8) + _rows("core", "random", "10%", 8))
    summary = summarise(rows)
    assert [e.get("suite") for e in summary][0] == "core"  # suites keep their own rows, in suite order
    lines = calibration(summary)
    assert lines == [
        "core, context: random keeps 100.0 % at 10 % of the full cache's accuracy (full cache 80.0 %)",
        "sparse, context: random keeps 80.0 % at 10 % and 50.0 % at 5 % of the full cache's accuracy; "
        "oracle keeps 100.0 % at 5 % of the full cache's accuracy (full cache 100.0 %)",
    ]
