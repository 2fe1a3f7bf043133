"""Command-line options and error paths that no other test drives through the CLI: `bench --question-counts`
and `bench --stream`, `eval --ablation`, `--official-fps`, `--max-pixels`, `--dtype`, the catch-all and
out-of-memory messages, `--overwrite` that succeeds, and the streaming refusals as a user meets them.

Kept cheap: the built-in demo model on a 4-s sample with one new token, and the bench on its tiny shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from acckv_cli.cli.app import app
from acckv_cli.evaluation.ablations import ABLATIONS

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
CLIP = str(SAMPLES / "flute_red_circle.mp4")
QUESTION = "What instrument plays?"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def ask_json(*extra) -> dict:
    result = invoke("ask", CLIP, QUESTION, "--json", "--max-new-tokens", "1", *extra)
    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    return json.loads(line)


def one_line(result, code: int, *words: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def plain():
    return ask_json()


# --- preprocessing and dtype options --------------------------------------------------------------------

def test_official_fps_tells_the_processor_no_frame_rate(plain):
    """`--fps 1 --official-fps`: frames are still sampled at 1 fps, but the processor is told nothing and
    assumes 2 fps (Qwen's own pipeline); without the flag it is told 1. Catches: the flag not reaching the
    processor, or changing the sampling instead."""
    told = ask_json("--fps", "1")
    official = ask_json("--fps", "1", "--official-fps")
    assert told["media"]["sampled_fps"] == official["media"]["sampled_fps"] == 1.0
    assert told["media"]["frames"] == official["media"]["frames"] == plain["media"]["frames"] // 2
    assert (told["media"]["processor_fps"], official["media"]["processor_fps"]) == (1.0, 2.0)


def test_max_pixels_caps_every_frame(plain):
    """`--max-pixels 10000` sizes each frame to at most 10,000 pixels (28-px grid) and so fewer video tokens;
    audio is untouched. Catches: the cap ignored by ask, or applied to the decoded frames only."""
    capped = ask_json("--max-pixels", "10000")
    width, height = capped["media"]["frame_size"]
    assert width * height == capped["media"]["pixels_per_frame"] <= 10000 < plain["media"]["pixels_per_frame"]
    assert width % 28 == height % 28 == 0
    assert capped["tokens"]["video"] < plain["tokens"]["video"]
    assert capped["tokens"]["audio"] == plain["tokens"]["audio"]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_halves_the_cache(plain, dtype):
    """`--dtype bfloat16/float16` loads the model in that dtype: the same prompt's full KV cache takes half the
    bytes of float32 (the CPU default), and the model still answers. Catches: the flag not reaching the loader."""
    half = ask_json("--dtype", dtype)
    assert half["tokens"] == plain["tokens"]
    assert 2 * half["kv_bytes_full"] == plain["kv_bytes_full"] and 2 * half["kv_bytes"] == plain["kv_bytes"]
    assert half["answer"]


# --- error paths -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raised, code, words", [
    (RuntimeError("boom\nsecond line"), 1, ["unexpected RuntimeError: boom", "--verbose"]),
    (MemoryError(), 1, ["out of memory", "--max-pixels"]),
])
def test_unexpected_failures_are_one_line(monkeypatch, raised, code, words):
    """Anything the code did not expect is one line and exit 1 (the traceback only with --verbose); running out
    of memory says what to lower. Catches: a traceback leaking to the user, or exit code 0/2."""
    from acckv_cli.answer import pipeline

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(pipeline, "ask_decoded", fail)
    line = one_line(invoke("ask", CLIP, QUESTION), code, *words)
    assert "second line" not in line and "Traceback" not in line
    verbose = invoke("-v", "ask", CLIP, QUESTION)
    assert verbose.exit_code == code and "Traceback" in verbose.stderr


def test_torch_out_of_memory_is_the_out_of_memory_message():
    """torch's OutOfMemoryError (a RuntimeError, e.g. CUDA) gets the same advice as MemoryError, not the
    catch-all "unexpected" line."""
    import torch

    from acckv_cli.terminal import classify

    fail = classify(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert fail.exit_code == 1 and str(fail).startswith("out of memory") and "--max-pixels" in str(fail)


# --- --overwrite that succeeds ---------------------------------------------------------------------------

def test_batch_overwrite_replaces_the_previous_lines(tmp_path):
    """`batch --overwrite` on an existing --out replaces it: only the second run's lines remain."""
    out = tmp_path / "r.jsonl"
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(Path(CLIP).read_bytes())
    first = invoke("batch", folder, "--question", QUESTION, "--out", out, "--max-new-tokens", "1")
    assert first.exit_code == 0, first.stderr
    second = invoke("batch", folder, "--question", "What colour is the circle?", "--out", out,
                    "--max-new-tokens", "1", "--overwrite")
    assert second.exit_code == 0, second.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["question"] for line in lines] == ["What colour is the circle?"]


def manifest(tmp_path, question: str) -> Path:
    path = tmp_path / f"m-{len(question)}.jsonl"
    path.write_text(json.dumps({"id": "a", "video": CLIP, "question": question, "answer": "flute",
                                "family": "audio"}) + "\n")
    return path


def test_eval_overwrite_replaces_the_previous_results(tmp_path):
    """`eval --overwrite` on an existing --out-dir starts over: results.jsonl holds only the new run's rows."""
    out = tmp_path / "o"
    base = ["eval", "-m", "full", "-m", "random", "-b", "0.5", "--protocols", "context", "--out-dir", out,
            "--max-new-tokens", "1"]
    assert invoke(*base, "--manifest", manifest(tmp_path, QUESTION)).exit_code == 0
    again = invoke(*base, "--manifest", manifest(tmp_path, "What colour is the circle?"), "--overwrite")
    assert again.exit_code == 0, again.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["question"] for r in rows} == {"What colour is the circle?"} and len(rows) == 2


def test_eval_ablation_adds_every_ablation(tmp_path):
    """`eval --ablation` runs AccKV with each component off (every label of ABLATIONS) beside the methods
    asked for, and the summary has a row for each. Catches: the flag parsed but not added to the run."""
    out = tmp_path / "o"
    result = invoke("eval", "--manifest", manifest(tmp_path, QUESTION), "-m", "full", "-b", "0.5", "--protocols",
                    "context", "--ablation", "--out-dir", out, "--max-new-tokens", "1", "--json")
    assert result.exit_code == 0, result.stderr
    methods = {e["method"] for e in json.loads(result.stdout)["summary"]}
    assert methods == {"full", *ABLATIONS}
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all("error" not in r for r in rows) and len(rows) == 1 + len(ABLATIONS)


# --- streaming refusals, as the user meets them ----------------------------------------------------------

@pytest.mark.parametrize("method, words", [("pyramidkv", ["pyramidkv cannot stream", "pyramid"]),
                                           ("taskfocus", ["taskfocus cannot stream", "question"]),
                                           ("fastv", ["fastv prunes inside one forward", "cannot stream"])])
def test_stream_refuses_methods_that_cannot_stream(method, words):
    """`ask --protocol stream -m M` for a method that cannot keep the streaming bound: one line naming the
    method and why, exit 2 (a usage error, before any work), no answer. Catches: the refusal raised as a
    traceback, or the run going on."""
    result = invoke("ask", CLIP, QUESTION, "--protocol", "stream", "-m", method)
    one_line(result, 2, *words, "pick another method")
    assert result.stdout.strip() == ""


def test_stream_refusal_in_eval_is_a_row_error_not_a_crash(tmp_path):
    """Under eval the refusal is recorded in the method's rows; the other methods still run."""
    out = tmp_path / "o"
    result = invoke("eval", "--manifest", manifest(tmp_path, QUESTION), "-m", "random", "-m", "pyramidkv", "-b",
                    "0.5", "--protocols", "stream", "--out-dir", out, "--max-new-tokens", "1")
    assert result.exit_code == 0, result.stderr
    rows = {r["method"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert "error" not in rows["random"] and "pyramidkv cannot stream" in rows["pyramidkv"]["error"]


# --- bench: many questions and streaming, on the tiny shape ---------------------------------------------

def test_bench_question_counts(tmp_path):
    """`bench --question-counts 1,2` (the many-questions mode): per protocol, cumulative times for N = 1 and 2
    with and without media reuse, in the JSON. Catches: the mode not reachable from the command line, or its
    options (protocols, counts) not passed through."""
    path = tmp_path / "q.json"
    result = invoke("bench", "--tiny", "--question-counts", "1,2", "--protocols", "context", "--sizes", "512",
                    "--layers", "1", "--decode-steps", "1", "--out-json", path)
    assert result.exit_code == 0, result.stderr
    data = json.loads(path.read_text())
    (protocol,) = data["protocols"]
    assert protocol["protocol"] == "context" and data["prompt_tokens"] == 512 and data["new_tokens"] == 1
    assert [r["questions"] for r in protocol["rows"]] == [1, 2]
    assert all(r["reuse_s"] > 0 and r["no_reuse_s"] > 0 for r in protocol["rows"])
    bad = invoke("bench", "--question-counts", "0")
    one_line(bad, 2, "--question-counts")


def test_bench_stream_command_line(tmp_path):
    """`bench --stream` on the tiny shape (in-process points): one-shot and streamed rows per clip length,
    the streamed KV peak flat, the Markdown table written. Bad --chunk-seconds is one line."""
    path, md = tmp_path / "s.json", tmp_path / "s.md"
    result = invoke("bench", "--stream", "--tiny", "--minutes", "0.1,0.2", "--media-budget", "16", "--layers", "1",
                    "--methods", "snapkv", "--chunk-seconds", "2", "--out-json", path, "--out-md", md)
    assert result.exit_code == 0, result.stderr
    rows = {(r["mode"], r["minutes"]): r for r in json.loads(path.read_text())["rows"]}
    assert set(rows) == {(m, x) for m in ("one-shot", "stream") for x in (0.1, 0.2)}
    assert rows[("stream", 0.1)]["kv_peak_mb"] == rows[("stream", 0.2)]["kv_peak_mb"]
    assert rows[("one-shot", 0.2)]["kv_peak_mb"] > rows[("one-shot", 0.1)]["kv_peak_mb"]
    table = md.read_text().splitlines()
    assert sum(line.startswith(("| 0.1 |", "| 0.2 |")) for line in table) == 2
    one_line(invoke("bench", "--stream", "--tiny", "--chunk-seconds", "3"), 2, "--chunk-seconds")
