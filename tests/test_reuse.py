"""`evaluation.reuse`: an eval folder started from earlier runs' rows, and a resumed eval that reports only its grid."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from acckv_cli.evaluation import evaluate as ev
from acckv_cli.evaluation.reuse import main, reusable_rows

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def items():
    return [ev.Item(id="a", video=str(SAMPLES / "flute_red_circle.mp4"), question="What instrument plays?",
                    answer="flute", family="audio")]


def key(row: dict) -> tuple:
    return row["id"], row["protocol"], row["method"], float(row["budget"])


def test_resumed_eval_reports_only_the_grid_it_was_asked_for(tiny_lm, tmp_path):
    out = tmp_path / "out"
    ev.run_eval(tiny_lm, items(), ["full", "random", "snapkv"], ["0.6"], out, protocols=("context",))
    rows = ev.run_eval(tiny_lm, items(), ["full", "random"], ["0.6"], out, protocols=("context",), resume=True)
    assert sorted(r["method"] for r in rows) == ["full", "random"]  # snapkv's row stays in the file, not the summary
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


def test_reused_rows_are_not_recomputed_and_other_methods_are(tiny_lm, tmp_path):
    first = tmp_path / "first"
    earlier = ev.run_eval(tiny_lm, items(), ["full", "random", "snapkv"], ["0.6"], first, protocols=("context",))
    with gzip.open(first / "results.jsonl.gz", "wt") as handle:  # committed runs are compressed
        handle.writelines(json.dumps(r) + "\n" for r in earlier)
    main([str(first / "results.jsonl.gz"), "--methods", "full,random", "--model", "tiny", "--out",
          str(tmp_path / "second")])
    copied = [json.loads(x) for x in (tmp_path / "second" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in copied) == ["full", "random"]  # snapkv was not named: not copied
    for row in copied:  # a marker that only survives if the row is kept rather than recomputed
        row["answer"] = "kept, not recomputed"
    (tmp_path / "second" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in copied))
    rows = ev.run_eval(tiny_lm, items(), ["full", "random", "snapkv"], ["0.6"], tmp_path / "second",
                       protocols=("context",), resume=True)
    by = {r["method"]: r for r in rows}
    assert by["full"]["answer"] == by["random"]["answer"] == "kept, not recomputed"
    assert by["snapkv"]["answer"] == next(r for r in earlier if r["method"] == "snapkv")["answer"]


def row(method="random", model="m", answer="flute", budget=0.1):
    return {"id": "q1", "protocol": "context", "method": method, "budget": budget, "model": model, "answer": answer}


def test_reusable_rows_keep_named_methods_once_and_refuse_mixed_models_and_disagreements():
    kept = reusable_rows([row(), row(), row("acckv"), row(budget="0.1")], {"random"}, "m")
    assert len(kept) == 1 and kept[0]["method"] == "random"  # "0.1" and 0.1 are one budget
    with pytest.raises(ValueError, match="made by model 'other'"):
        reusable_rows([row(), row(model="other")], {"random"}, "m")
    with pytest.raises(ValueError, match="answer differently"):
        reusable_rows([row(), row(answer="violin")], {"random"}, "m")
    assert reusable_rows([row(model="other")], {"full"}, "m") == []  # rows of methods not named are not checked
    clips = [{**row(), "video": "a.mp4"}, {**row(), "id": "q2", "video": "b.mp4"}]
    assert [r["id"] for r in reusable_rows(clips, {"random"}, "m", videos={"b.mp4"})] == ["q2"]
    grid = [row(budget=0.2), row(budget=0.05), row("full", budget=1.0)]
    assert [(r["method"], r["budget"]) for r in reusable_rows(grid, {"random", "full"}, "m", budgets={0.05})] == [
        ("random", 0.05), ("full", 1.0)]


@pytest.mark.parametrize("setup, message", [("exists", "exists"), ("other-model", "made by model")])
def test_reuse_refuses_in_one_line(tmp_path, setup, message):
    source = tmp_path / "results.jsonl"
    source.write_text(json.dumps(row(model="other" if setup == "other-model" else "m")) + "\n")
    out = tmp_path / "out"
    if setup == "exists":
        out.mkdir()
        (out / "results.jsonl").write_text("")
    done = subprocess.run([sys.executable, "-m", "acckv_cli.evaluation.reuse", str(source), "--methods", "random",
                           "--model", "m", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
