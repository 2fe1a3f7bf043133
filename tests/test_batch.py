"""`acckv batch`: one line per item, errors recorded, kill + --resume, shards, manifests, decode reuse."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from acckv_cli.batch.local import collect_items
from acckv_cli.cli.app import app
from media_fixtures import RECIPES, run_ffmpeg

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
runner = CliRunner()
QUESTIONS = ["What instrument plays?", "What shape is shown?"]
FAST = ["--budget", "0.5", "--max-new-tokens", "1"]  # low-res clips: 0.2 is below the protected text


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def read_lines(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two good clips, a video without audio, a corrupt mp4 and a non-media file, in nested folders."""
    root = tmp_path_factory.mktemp("batch_in")
    (root / "sub").mkdir()
    shutil.copyfile(SAMPLES / "clarinet_purple_triangle.mp4", root / "a_clarinet.mp4")
    run_ffmpeg(*RECIPES["av.mp4"], str(root / "sub" / "b_av.mp4"))
    run_ffmpeg(*RECIPES["video_only.mp4"], str(root / "sub" / "c_silent.mp4"))
    data = (root / "sub" / "b_av.mp4").read_bytes()
    (root / "d_corrupt.mp4").write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("not media\n")
    (root / ".hidden.mp4").write_bytes(b"junk")
    return root


@pytest.fixture(scope="module")
def questions_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("batch_q") / "questions.txt"
    path.write_text("\n".join(QUESTIONS) + "\n\n")
    return path


@pytest.fixture(scope="module")
def full_run(folder, questions_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch_out") / "results.jsonl"
    result = invoke("batch", str(folder), "--questions", str(questions_file), "--out", str(out), *FAST)
    assert result.exit_code == 0, result.stderr
    return out, result


def test_one_valid_line_per_item_and_errors_recorded(full_run, folder):
    out, result = full_run
    lines = read_lines(out)
    videos = ["a_clarinet.mp4", "d_corrupt.mp4", "sub/b_av.mp4", "sub/c_silent.mp4"]
    assert [(Path(l["video"]).relative_to(folder).as_posix(), l["question"]) for l in lines] == [
        (v, q) for v in videos for q in QUESTIONS]
    assert len({l["key"] for l in lines}) == len(lines) == 8
    by_video = {Path(l["video"]).name: l for l in lines}
    corrupt = [l for l in lines if l["video"].endswith("d_corrupt.mp4")]
    assert all(l["error"] and l["answer"] is None for l in corrupt)
    assert "corrupt or truncated" in corrupt[0]["error"]
    silent = by_video["c_silent.mp4"]
    assert silent["error"] is None and silent["modalities"] == ["video"] and silent["tokens"]["audio"] == 0
    assert any("video-only" in n for n in silent["notices"])
    for l in lines:
        if l["error"] is None:
            assert l["method"] == "acckv" and l["budget"] == 0.5 and isinstance(l["answer"], str)
            assert 0 < l["kv_bytes"] < l["kv_bytes_full"] and 0 < l["kept"]["kv"] < 1
            assert l["kept"]["text"] == 1.0
            assert set(l["timings"]) == {"decode_s", "encode_s", "media_prefill_s", "question_prefill_s",
                                         "generate_s", "total_s"}
            assert l["protocol"] == "query-aware" and abs(l["kept"]["media"] - 0.5) <= 0.01  # round(0.5·n) entries
    assert "batch summary" in result.stdout
    assert re.search(r"8\s*│\s*6\s*│\s*2\s*│\s*0\s*│", result.stdout), result.stdout  # items done failed skipped


def test_each_video_is_decoded_encoded_and_prefilled_once(full_run):
    out, _ = full_run
    good = [l for l in read_lines(out) if l["error"] is None]
    for first, second in zip(good[::2], good[1::2]):
        assert first["video"] == second["video"]
        assert first["reused"] == [] and first["timings"]["decode_s"] > 0
        assert set(second["reused"]) == {"decode", "encode", "media_prefill"}
        assert second["timings"]["decode_s"] == second["timings"]["media_prefill_s"] == 0


def test_decode_runs_once_per_video(folder, tmp_path, count_calls):
    """Counted by hooks on the model and a spy on the decoder, not read from the `reused` field: three
    questions on each of two clips (one without audio) decode each clip once, run the vision encoder once
    per clip and the audio encoder once (the silent clip has none), and prefill each clip's media once.
    Catches: a session rebuilt per question, or the encoders rerun for every question."""
    from acckv_cli.batch.local import LineWriter, Options, run_items
    from acckv_cli.methods import Budget
    from acckv_cli.model.load import load_model

    items, _ = collect_items(str(folder / "sub"), QUESTIONS * 1 + ["Is it loud?"], "acckv", "0.5")
    lm = load_model()
    with LineWriter(str(tmp_path / "r.jsonl"), "jsonl", True) as writer, count_calls(lm.thinker, long=40) as calls:
        tally = run_items(lm, items, Options("acckv", Budget(0.5), "context", 2.0, None, 1), writer.write)
    assert tally.done == 6 and tally.failed == 0
    assert (calls.decode, calls.video, calls.audio, len(calls.prefill)) == (2, 2, 1, 2), calls.lengths


def test_reused_media_does_not_pile_up_notices():
    """ask_decoded may add a notice to the shared media (audio over the window, encoded whole): once per answer."""
    from conftest import synthetic_media
    from acckv_cli.methods import Budget
    from acckv_cli.model.load import load_model
    from acckv_cli.answer.pipeline import ask_decoded

    decoded = synthetic_media(seconds=31, video=False)
    before = list(decoded.notices)
    for _ in range(2):
        results = ask_decoded(load_model(), decoded, QUESTIONS, "acckv", Budget(0.5), max_new_tokens=1)
        assert all(sum("encoded whole" in n for n in result.notices) == 1 for result in results)
        assert decoded.notices == before


def test_existing_output_needs_resume_or_overwrite(full_run, folder, questions_file):
    out, _ = full_run
    before = out.read_bytes()
    result = invoke("batch", str(folder), "--questions", str(questions_file), "--out", str(out), *FAST)
    assert result.exit_code == 2 and "--resume" in result.stderr and "--overwrite" in result.stderr
    result = invoke("batch", str(folder), "--questions", str(questions_file), "--out", str(out), "--resume", *FAST)
    assert result.exit_code == 0 and out.read_bytes() == before  # everything finished: nothing added


def test_kill_then_resume_has_no_missing_or_duplicate_lines(folder, tmp_path):
    """A real process killed mid-run (SIGKILL), a partial last line on top, then --resume."""
    many = tmp_path / "many.txt"
    asked = [f"Question number {i}?" for i in range(3)]
    many.write_text("\n".join(asked) + "\n")
    out = tmp_path / "killed.jsonl"
    args = [str(folder), "--questions", str(many), "--out", str(out), *FAST]
    expected = {it.key for it in collect_items(str(folder), asked, "acckv", "0.5")[0]}
    assert len(expected) == 12
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "acckv_cli", "batch", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    written = out.read_bytes()
    n_at_kill = written.count(b"\n")
    assert 2 <= n_at_kill < len(expected), "the run must be killed mid-way"
    assert written.endswith(b"\n"), "a killed run leaves only complete lines"
    with open(out, "ab") as fh:  # as if a line had been cut anyway
        fh.write(b'{"id": "half a li')
    result = invoke("batch", *args, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "partial last line" in result.stderr
    lines = read_lines(out)
    keys = [l["key"] for l in lines]
    assert len(keys) == len(set(keys)) == len(expected) and set(keys) == expected
    assert read_lines(out)[:n_at_kill] == [json.loads(l) for l in written.decode().splitlines()]


def test_shards_cover_the_input_exactly_once(full_run, folder, questions_file, tmp_path):
    out, _ = full_run
    keys = []
    for i in (0, 1):
        part = tmp_path / f"shard{i}.jsonl"
        result = invoke("batch", str(folder), "--questions", str(questions_file), "--out", str(part),
                        "--shard", f"{i}/2", *FAST)
        assert result.exit_code == 0, result.stderr
        keys.append([l["key"] for l in read_lines(part)])
    assert len(keys[0]) == len(keys[1]) == 4
    assert not set(keys[0]) & set(keys[1])
    assert sorted(keys[0] + keys[1]) == sorted(l["key"] for l in read_lines(out))


def test_manifest_with_relative_paths_to_csv(folder, tmp_path):
    manifest_dir = tmp_path / "m"
    manifest_dir.mkdir()
    (manifest_dir / "clips").symlink_to(folder / "sub")
    manifest = manifest_dir / "set.jsonl"
    rows = [{"video": "clips/b_av.mp4", "question": "What plays?\nTell me.", "answer": "a tone", "id": "x1"},
            {"video": "clips/missing.mp4", "question": "What plays?"},
            {"video": str(folder / "sub" / "c_silent.mp4")}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "r.csv"
    result = invoke("batch", str(manifest), "--question", "Default question?", "--out", str(out),
                    "--format", "csv", *FAST)
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    assert len(text.splitlines()) == 4  # header + one line per item, even for a multi-line question
    table = {r["id"]: r for r in csv.DictReader(text.splitlines())}
    assert set(table) == {"x1", "row2", "row3"}
    assert table["x1"]["expected"] == "a tone" and table["x1"]["error"] == "" and table["x1"]["answer"] != ""
    assert table["x1"]["video"] == str(manifest_dir / "clips" / "b_av.mp4")
    assert "not found" in table["row2"]["error"]
    assert table["row3"]["question"] == "Default question?" and table["row3"]["modalities"] == "video"
    result = invoke("batch", str(manifest), "--question", "Default question?", "--out", str(out),
                    "--format", "csv", "--resume", *FAST)
    assert result.exit_code == 0 and out.read_text() == text


@pytest.mark.parametrize("extra, words", [
    (["--shard", "2/2"], ["--shard"]),
    (["--shard", "1/0"], ["--shard"]),
    (["--shard", "a/b"], ["--shard"]),
    (["--resume", "--overwrite"], ["exclude"]),
    (["--format", "xml"], ["--format"]),
    (["--method", "nope"], ["unknown method"]),
        (["-o", "tau=x"], ["tau"]),
        (["--workers", "x"], ["--workers"]),
        (["--max-new-tokens", "abc"], ["--max-new-tokens"]),
    (["--budget", "abc"], ["budget"]),
])
def test_usage_errors(folder, tmp_path, extra, words):
    result = invoke("batch", str(folder), "--question", "Q?", "--out", str(tmp_path / "r.jsonl"), *extra)
    assert result.exit_code == 2, result.stderr
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and all(w in lines[0] for w in words), result.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_folder_needs_a_question_and_input_must_exist(folder, tmp_path):
    result = invoke("batch", str(folder), "--out", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 2 and "--question" in result.stderr
    result = invoke("batch", str(tmp_path / "nope"), "--question", "Q?", "--out", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 2 and "not found" in result.stderr
