"""`acckv eval`: scoring, method specs, resumable results, summaries, fidelity mode and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from acckv_cli import evaluate as ev
from acckv_cli.cli import app

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def test_answer_matching():
    assert ev.answer_matches("A flute.", "flute") and ev.answer_matches("Flute", "flute")
    assert not ev.answer_matches("flute or violin", "flute") and not ev.answer_matches("", "flute")


def test_method_specs():
    assert ev.parse_method_spec("acckv:tau=0.9,budget_split=joint") == ("acckv", {"tau": 0.9, "budget_split": "joint"})
    assert ev.parse_method_spec("acckv-no-AF") == ("acckv", {"focusing": False})
    with pytest.raises(KeyError):
        ev.parse_method_spec("nope")
    with pytest.raises(TypeError):
        ev.parse_method_spec("acckv:nonsense=1")


def manifest(tmp_path) -> Path:
    rows = [{"id": "a", "video": str(SAMPLES / "flute_red_circle.mp4"), "question": "What instrument plays?",
             "answer": "flute", "family": "audio"},
            {"id": "b", "video": "missing.mp4", "question": "What colour is the circle?", "answer": "red",
             "family": "video"}]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_run_eval_rows_resume_and_errors(tiny_lm, tmp_path):
    items = ev.read_manifest(manifest(tmp_path))
    out = tmp_path / "out"
    rows = ev.run_eval(tiny_lm, items, ["full", "snapkv"], ["0.6"], out)
    assert len(rows) == 4
    bad = [r for r in rows if r["id"] == "b"]
    assert all("error" in r and "not found" in r["error"] for r in bad)
    good = [r for r in rows if r["id"] == "a"]
    assert all({"answer", "correct", "kv_kept", "model", "seed", "code_version"} <= set(r) for r in good)
    # a killed run leaves a partial line: resume drops it and redoes only what is missing
    text = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(text[:2]) + "\n" + text[2][:20])
    rows = ev.run_eval(tiny_lm, items, ["full", "snapkv", "random"], ["0.6"], out, resume=True)
    keys = [ev.result_key(r["id"], r["method"], r["budget"]) for r in rows]
    assert len(keys) == len(set(keys)) == 6
    summary = ev.summarise(rows)
    full = next(e for e in summary if e["method"] == "full")
    assert full["n"] == 2 and full["errors"] == 1 and full["kv_kept"] == 1.0
    snap = next(e for e in summary if e["method"] == "snapkv")
    assert snap["full_same_items"] == full["overall"]  # both scored on item "a" only
    ev.write_summary(summary, out)
    ev.plot_summary(summary, out / "accuracy.png")
    import matplotlib.pyplot as plt
    from unittest import mock
    with mock.patch.object(plt.Axes, "axhline") as axhline:  # the full-cache line is drawn in percent
        ev.plot_summary(summary, out / "again.png")
    assert axhline.call_args[0][0] == pytest.approx(100 * full["overall"])
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert "audio" in (out / "summary.csv").read_text().splitlines()[0]


def test_fidelity_mode(tiny_lm, tmp_path):
    items = ev.read_manifest(manifest(tmp_path))[:1]
    rows = ev.run_eval(tiny_lm, items, ["full", "random"], ["0.6"], tmp_path / "f", fidelity=True, max_new_tokens=4)
    full = next(r for r in rows if r["method"] == "full")
    assert full["agrees_with_full"] is True and full["next_token_kl"] == pytest.approx(0.0, abs=1e-6)
    rand = next(r for r in rows if r["method"] == "random")
    assert rand["next_token_kl"] is None or rand["next_token_kl"] >= 0


def test_next_token_kl_skips_prefill_step_and_stops_at_divergence():
    import torch
    a = [torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])]
    b = [torch.tensor([5.0, 1.0]), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 9.0])]
    kl = ev.next_token_kl(a, b, [1, 1, 0], [1, 0, 0])
    p, q = a[1].log_softmax(-1), b[1].log_softmax(-1)
    assert kl == pytest.approx(float((p.exp() * (p - q)).sum()))


def test_eval_cli_on_manifest(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--manifest", str(manifest(tmp_path)), "--methods",
                                      "full,acckv:tau=0.9;budget_split=joint", "--budgets", "0.6",
                                      "--out-dir", str(tmp_path / "o"), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert {e["method"] for e in summary} == {"full", "acckv:tau=0.9,budget_split=joint"}
    assert (tmp_path / "o" / "accuracy.png").exists() and (tmp_path / "o" / "summary.csv").exists()


@pytest.mark.parametrize("args, words", [
    (["--methods", "nope"], "bad method spec"),
    (["--budgets", "x"], "budget"),
    (["--split", "train"], "--split"),
    (["--manifest", "missing.jsonl"], "manifest not found"),
])
def test_eval_cli_usage_errors(args, words, tmp_path):
    result = CliRunner().invoke(app, ["eval", "--out-dir", str(tmp_path), *args], catch_exceptions=False)
    assert result.exit_code == 2 and words in result.stderr and "Traceback" not in result.stderr
