"""What a newcomer reads: tables that fit 80 columns with no cut cell, percentages, numbers as numbers in JSON,
several methods side by side, `full` at 100 %, `-v` after the command, and eval's files outside the tree."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from acckv_cli.cli.app import app
from acckv_cli.evaluation.tables import summary_tables

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
CLIP = str(SAMPLES / "flute_red_circle.mp4")
runner = CliRunner()


def run80(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The command line as a program writing to a pipe in an 80-column terminal setting."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "80", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "acckv_cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def assert_fits_80(text: str) -> None:
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= 80, text


def test_ask_fits_80_columns():
    proc = run80("ask", CLIP, "What instrument plays?")
    assert proc.returncode == 0, proc.stderr
    assert_fits_80(proc.stdout)
    for header in ("video kept", "audio kept", "attn % v/a/t", "priority"):  # cut to `attn v…`, `prio…` before
        assert header in proc.stdout
    assert "20 %" in proc.stdout and "@ 0.2" not in proc.stdout  # the budget as people read it


def test_ask_full_report_fits_80_columns():
    proc = run80("ask", CLIP, "What instrument plays?", "-r", "full", "-m", "acckv:tau=0.9,budget_split=joint")
    assert proc.returncode == 0, proc.stderr
    assert_fits_80(proc.stdout)
    assert "merged" in proc.stdout and "Media kept per second" in proc.stdout


def test_one_row_eval_fits_80_columns(tmp_path):
    manifest = tmp_path / "one.jsonl"
    manifest.write_text(json.dumps({"video": CLIP, "question": "What instrument plays?", "answer": "flute",
                                    "family": "audio"}) + "\n")
    proc = run80("eval", "--manifest", str(manifest), "-m", "acckv", "-b", "0.2", "--protocol", "context",
                 cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_fits_80(proc.stdout)
    assert "0.889" not in proc.stdout and "100.0" in proc.stdout  # percentages, as in summary.md
    # the default folder is outside the tracked tree, and every written file is named
    folder = tmp_path / ".acckv" / "eval" / "one"
    written = sorted(p.name for p in folder.iterdir())
    assert written == sorted(["results.jsonl", "summary.csv", "summary.json", "summary.md", "summary_families.csv",
                              "summary_families.md", "accuracy.png"])
    assert all(name in proc.stdout for name in written) and ".acckv/eval/one" in proc.stdout
    full = run80("eval", "--manifest", str(manifest), "-m", "acckv", "-b", "0.2", "--protocol", "context",
                 "--overwrite", "-r", "full", cwd=tmp_path)
    assert full.returncode == 0 and "KV kept %" in full.stdout and "exact %" in full.stdout
    assert_fits_80(full.stdout)


def test_the_default_eval_folder_is_ignored_by_git():
    assert ".acckv/" in (ROOT / ".gitignore").read_text().splitlines()


def test_summary_tables_wrap_long_labels_instead_of_cutting_them():
    entry = {"protocol": "query-aware", "method": "acckv:tau=0.9,budget_split=joint,coverage=none",
             "budget": 0.05, "n": 180, "errors": 0, "media_kept": 0.05, "kv_kept": 0.0934, "audio": 0.9,
             "video": 0.883, "alignment": 0.75, "first_word": 0.8889, "exact": 0.8, "agreement": 0.5,
             "kl": 0.1234, "evidence_kept": 0.06, "kept_time": 0.52}
    for full in (False, True):
        console = Console(width=80, record=True, file=open(os.devnull, "w"))
        for table in summary_tables([entry], "answers — a model", full=full):
            console.print(table)
        text = console.export_text()
        assert_fits_80(text)
        assert "88.9" in text and "5 %" in text  # first word 0.8889 → 88.9, budget 0.05 → 5 %
        assert ("0.52" in text) == full  # kept_time: only under --report full


def ask_json_lines(*args: str) -> list[dict]:
    result = runner.invoke(app, ["ask", CLIP, "What instrument plays?", "--json", "--max-new-tokens", "2", *args],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_numbers_are_numbers_in_json():
    (row,) = ask_json_lines("-b", "160")
    assert row["budget"] == 160 and row["report"]["budget"] == 160
    (row,) = ask_json_lines("-b", "10%")
    assert row["budget"] == 0.1 and isinstance(row["budget"], float)


def test_full_is_reported_at_100_percent():
    result = runner.invoke(app, ["ask", CLIP, "What instrument plays?", "-m", "full", "-b", "0.2",
                                 "--max-new-tokens", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "full @ 100 %" in result.stdout and "@ 0.2" not in result.stdout
    assert "--budget is ignored" in result.stderr
    (row,) = ask_json_lines("-m", "full")
    assert row["budget"] == 1.0 and row["media_kept_ratio"] == 1.0


def test_batch_writes_full_at_budget_1(tmp_path):
    out = tmp_path / "r.csv"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": str(SAMPLES / "bell.wav"), "question": "What plays?"}) + "\n")
    result = runner.invoke(app, ["batch", str(manifest), "--out", str(out), "--format", "csv", "-m", "full",
                                 "--max-new-tokens", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    (row,) = list(csv.DictReader(out.read_text().splitlines()))
    assert row["budget"] == "1.0" and row["media_kept_ratio"] == "1.0"


def test_several_methods_are_compared_side_by_side():
    rows = ask_json_lines("-m", "acckv", "-m", "snapkv:window_size=16", "-m", "full")
    assert [r["method"] for r in rows] == ["acckv", "snapkv:window_size=16", "full"]
    assert [r["budget"] for r in rows] == [0.2, 0.2, 1.0]
    result = runner.invoke(app, ["ask", CLIP, "What instrument plays?", "-m", "acckv", "-m", "snapkv",
                                 "--max-new-tokens", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "─ acckv ─" in result.stdout and "─ snapkv ─" in result.stdout  # one answer block per method
    assert "methods compared on the same clip" in result.stdout
    assert result.stdout.count("KV retention per layer") == 2


def test_o_applies_to_every_method_of_the_run():
    rows = ask_json_lines("-m", "acckv", "-m", "acckv:coverage=none", "-o", "tau=0.8")
    assert [r["method"] for r in rows] == ["acckv:tau=0.8", "acckv:coverage=none,tau=0.8"]


@pytest.mark.parametrize("command", [["batch", "samples", "--question", "q", "--out", "r.jsonl"],
                                     ["inspect", CLIP, "q"]])
def test_a_second_method_is_refused_where_one_runs(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples").symlink_to(SAMPLES)
    result = runner.invoke(app, [*command, "-m", "acckv", "-m", "acckv:tau=0.9"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "runs one method" in lines[0]


def test_verbose_works_after_the_command():
    before = runner.invoke(app, ["-v", "ask", "missing.mp4", "q"])
    after = runner.invoke(app, ["ask", "missing.mp4", "q", "-v"])
    quiet = runner.invoke(app, ["ask", "missing.mp4", "q"])
    for result in (before, after):
        assert result.exit_code == 2 and "Traceback" in result.stderr and "not found" in result.stderr
    assert quiet.exit_code == 2 and "Traceback" not in quiet.stderr and len(quiet.stderr.strip().splitlines()) == 1
