"""The `acckv` command line: JSON output, every method, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from acckv_cli.cli.app import app
from acckv_cli.methods import METHODS
from acckv_cli.model.load import load_model
from conftest import method_spec
from media_fixtures import TRICKY_NAMES, build_media_set

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
CLIP = str(SAMPLES / "flute_red_circle.mp4")
LONG_CLIP = str(SAMPLES / "drum_then_violin.mp4")  # 10 s: text fits in a 10 % budget
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return build_media_set(tmp_path_factory.mktemp("cli_media"))


def ask_json(path: str, *extra: str) -> dict:
    result = invoke("ask", path, "What instrument plays?", "--json", "--max-new-tokens", "3", *extra)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, "--json must print exactly one JSON object and nothing else on stdout"
    return json.loads(lines[0])


def test_ask_json_on_sample():
    out = ask_json(CLIP)
    assert out["tokens"]["video"] > 0 and out["tokens"]["audio"] > 0
    assert out["model"] == load_model().name and out["method"] == "acckv" and out["budget"] == 0.2
    assert out["report"]["budget"] == 0.2  # numbers in JSON, never "0.2"
    assert out["protocol"] == "query-aware" and out["reused"] == []
    assert set(out["timings"]) == {"decode_s", "encode_s", "media_prefill_s", "question_prefill_s", "generate_s"}
    assert 0 < out["kv_bytes"] < out["kv_bytes_full"]
    assert 0 < out["media_kept_ratio"] < 0.25 and out["tokens"]["compressed"] < out["tokens"]["total"]
    assert out["media"]["sampled_fps"] == 2.0 and out["media"]["frames"] == 8  # 4-s clip at 2 fps
    assert out["media"]["modalities"] == ["video", "audio"]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_reports_consistently(method):
    out = ask_json(LONG_CLIP, "--method", method_spec(method), "--budget", "0.1" if method != "full" else "1.0")
    report = out["report"]
    layers = load_model().thinker.config.text_config.num_hidden_layers
    assert report["method"] == method and len(report["layers"]) == layers
    per_token = None
    for layer in report["layers"]:
        assert layer["kept_total"] <= layer["budget"]
        assert layer["text_kept"] == layer["text_total"], "text must be fully kept"
        assert layer["kept_total"] == layer["video_kept"] + layer["audio_kept"] + layer["text_kept"]
        # bytes match tensor sizes: every kept entry costs the same (K and V, all KV heads)
        size = layer["kv_bytes_after"] / layer["kept_total"]
        per_token = per_token or size
        assert size == per_token == layer["kv_bytes_before"] / (
            layer["video_total"] + layer["audio_total"] + layer["text_total"])
    assert out["kv_bytes"] == sum(l["kv_bytes_after"] for l in report["layers"])
    timeline = report["timeline"]
    assert sum(r["video_kept"] + r["audio_kept"] for r in timeline) == sum(
        l["video_kept"] + l["audio_kept"] for l in report["layers"])


def test_ask_human_output_has_summary_and_report():
    result = invoke("ask", CLIP, "What instrument plays?", "--max-new-tokens", "2", "--report", "full")
    assert result.exit_code == 0
    for text in ("answer", "tokens", "KV cache", "prefill", "KV retention per layer", "Media kept per second"):
        assert text in result.stdout
    assert "built-in" in result.stderr  # the default model says what it is and is not


QUESTIONS = ["What instrument plays first?", "What colour is the square?", "What shape is on screen when the bell plays?"]


@pytest.mark.parametrize("protocol", ["query-aware", "context", "prefill", "stream"])
def test_many_questions_print_json_lines_and_reuse_the_media(protocol, tmp_path, count_calls):
    """Three questions: the clip is decoded once, each encoder runs once (under `stream`: once per front-end
    block, as for one question) and the media is prefilled in one forward (stream: its chunks, as for one question) —
    counted by hooks on the model, not read from the `reused` and timing fields the code writes, which are
    checked too. Catches: a session or media cache rebuilt per question."""
    listed = tmp_path / "questions.txt"
    listed.write_text(QUESTIONS[2] + "\n\n")
    clip = str(SAMPLES / "guitar_bell_flute.mp4")
    steps = ["--chunk-seconds", "2"] if protocol == "stream" else []  # several steps, not one
    with count_calls(load_model().thinker, long=40) as calls:
        result = invoke("ask", clip, *QUESTIONS[:2], "--questions", str(listed),
                        "--json", "--protocol", protocol, "--max-new-tokens", "3", *steps)
    assert result.exit_code == 0, result.stderr
    if protocol == "stream":  # the front end's blocks and the steps' forwards: as many as for one question
        with count_calls(load_model().thinker, long=40) as alone:
            assert invoke("ask", clip, QUESTIONS[0], "--json", "--protocol", protocol, "--max-new-tokens",
                          "3", *steps).exit_code == 0
        assert len(alone.prefill) > 1, (alone.audio, alone.video, alone.lengths)
        expected = (1, alone.audio, alone.video, alone.prefill)
    else:
        expected = (1, 1, 1, calls.prefill[:1])
    assert (calls.decode, calls.audio, calls.video, calls.prefill) == expected, calls.lengths
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["question"] for r in rows] == QUESTIONS and all(r["answer"] for r in rows)
    assert all(r["protocol"] == protocol for r in rows)
    first, *rest = rows
    assert first["reused"] == [] and first["timings"]["decode_s"] > 0 and first["timings"]["encode_s"] > 0
    assert first["timings"]["media_prefill_s"] > 0
    for row in rest:  # decode, encoders and the media prefill ran once, for the first question
        assert set(row["reused"]) == {"decode", "encode", "media_prefill"}
        assert row["timings"]["decode_s"] == row["timings"]["encode_s"] == row["timings"]["media_prefill_s"] == 0
        assert row["timings"]["question_prefill_s"] > 0
    if protocol in ("context", "stream"):  # one compression serves every question
        assert all(r["report"] == first["report"] for r in rest)
    else:  # each question compresses its own copy of the media cache
        assert first["report"]["layers"][0]["text_total"] != rows[2]["report"]["layers"][0]["text_total"]


def test_several_questions_in_human_output():
    result = invoke("ask", str(SAMPLES / "guitar_bell_flute.mp4"), *QUESTIONS, "--max-new-tokens", "2",
                    "--protocol", "context")
    assert result.exit_code == 0, result.stderr
    for question in QUESTIONS:
        assert question in result.stdout
    assert "2 more question(s)" in result.stdout and result.stdout.count("KV retention per layer") == 1


def test_video_only_and_audio_only_inputs(media):
    video = ask_json(str(media["video_only.mp4"]), "--budget", "0.6")  # 160×120: few video tokens
    assert video["tokens"]["audio"] == 0 and video["tokens"]["video"] > 0
    assert any("video-only" in n for n in video["notices"])
    audio = ask_json(str(SAMPLES / "bell.wav"), "--budget", "0.8")
    assert audio["tokens"]["video"] == 0 and audio["tokens"]["audio"] == 50
    assert any("audio-only" in n for n in audio["notices"])


def test_methods_json_lists_all():
    result = invoke("methods", "--json")
    names = {row["name"] for row in json.loads(result.stdout)}
    assert names == set(METHODS)
    assert {"full", "random", "streamingllm", "h2o", "snapkv", "pyramidkv", "lookm", "fastv", "taskfocus",
            "acckv"} <= names


def assert_one_line_error(result, code: int, *words: str):
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize("name, words", [
    ("zero_bytes.mp4", ["empty"]),
    ("text.mp4", ["not a recognised"]),
    ("truncated.mp4", ["corrupt or truncated"]),
    ("truncated_faststart.mp4", []),
    ("zero_frames.avi", ["no frames"]),
    ("no_streams.mp4", []),
    ("directory.mp4", ["directory"]),
])
def test_bad_files_give_one_line_errors(media, name, words):
    assert_one_line_error(invoke("ask", str(media[name]), "What plays?"), 2, *words)


def test_missing_path(tmp_path):
    assert_one_line_error(invoke("ask", str(tmp_path / "nope.mp4"), "What plays?"), 2, "not found")


@pytest.mark.parametrize("question", ["", "   "])
def test_empty_question(question):
    assert_one_line_error(invoke("ask", CLIP, question), 2, "question is empty")


def test_no_question_at_all():
    assert_one_line_error(invoke("ask", CLIP), 2, "no question")


@pytest.mark.parametrize("args, words", [
    (["--budget", "abc"], ["budget"]),
    (["--budget", "1.5"], ["whole number"]),
    (["--protocol", "later"], ["unknown protocol"]),
    (["--questions", "missing.txt"], ["--questions"]),
    (["--method", "nope"], ["unknown method"]),
        (["-m", "acckv:tau=abc"], ["tau", "float"]),
        (["-o", "bogus=1"], ["no parameter 'bogus'"]),
        (["-o", "tau"], ["key=value"]),
        (["--report", "bogus"], ["--report"]),
        (["--max-new-tokens", "abc"], ["--max-new-tokens"]),
        (["--dtype", "int8"], ["--dtype"]),
    (["--fps", "0.5"], ["--fps"]),
    (["--device", "tpu"], ["--device"]),
    (["--max-new-tokens", "0"], ["--max-new-tokens"]),
    (["-b", "150%"], ["percentage", "100%"]),                  # not a message about token counts
    (["-m", "acckv", "-m", "acckv"], ["given twice"]),
    (["-m", "full", "-m", "acckv", "-o", "tau=0.9"], ["full has no parameter 'tau'", "-m NAME:KEY=VALUE"]),
])
def test_bad_options(args, words):
    assert_one_line_error(invoke("ask", CLIP, "What plays?", *args), 2, *words)


def test_missing_model_folder_is_a_usage_error(tmp_path):
    """A folder that is not there is named as such (not "not available offline: hf download /path")."""
    result = invoke("ask", CLIP, "What plays?", "--model", str(tmp_path / "no-model"))
    assert_one_line_error(result, 2, "--model folder not found")
    assert "hf download" not in result.stderr
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("ask", CLIP, "What plays?", "--model", str(tmp_path / "empty")), 2, "config.json")


def test_a_hub_id_not_in_the_cache_is_a_runtime_error():
    result = invoke("ask", CLIP, "What plays?", "--model", "nosuch-org/nosuch-model")
    assert_one_line_error(result, 1, "local Hugging Face cache", "hf download")


@pytest.mark.parametrize("name", ["stereo.wav", "tone.flac", "tone.mp3", "tone.ogg", "tone.m4a", "tone.opus",
                                  "one_frame.mp4", "uhd_2s.mp4", "big_8k.mp4", "video_only.mp4"])
def test_every_valid_input_answers_with_the_default_command(media, name):
    """Budgets count media, so short clips (few media, 20+ text tokens) never fail a budget check."""
    result = invoke("ask", str(media[name]), "What instrument plays?", "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["answer"] and out["budget"] == 0.2 and out["method"] == "acckv"
    layers = out["report"]["layers"]
    assert all(l["text_kept"] == l["text_total"] for l in layers)
    assert all(l["media_kept"] <= round(0.2 * l["media_total"]) for l in layers)


def test_huge_resolution_is_downscaled(media):
    out = ask_json(str(media["big_8k.mp4"]), "--budget", "0.6")
    assert out["media"]["native_size"] == [7680, 4320]
    assert out["media"]["pixels_per_frame"] <= 64 * 28 * 28


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_tricky_file_names(media, name, tmp_path, monkeypatch):
    monkeypatch.chdir(media[name].parent)
    out = ask_json(str(media[name]), "--budget", "0.5")
    assert out["tokens"]["audio"] > 0
    # relative, after `--` so a leading dash is not read as an option
    result = invoke("ask", "--json", "--max-new-tokens", "1", "--budget", "0.5", "--", name, "What plays?")
    assert result.exit_code == 0, result.stderr
    assert not list(Path(media[name].parent).glob("PWNED*"))


def test_entry_points_run_as_programs():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for cmd in ([sys.executable, "-m", "acckv_cli", "methods", "--json"],
                [str(Path(sys.executable).parent / "acckv"), "methods", "--json"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert len(json.loads(proc.stdout)) == len(METHODS)
    proc = subprocess.run([sys.executable, "-m", "acckv_cli", "ask", "missing.mp4", "q"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_methods_options_list_every_hyperparameter():
    rows = json.loads(invoke("methods", "--json").stdout)
    acckv = next(r for r in rows if r["name"] == "acckv")
    names = {o["name"] for o in acckv["options"]}
    assert {"redistribution", "coverage", "calibration", "tau", "salience", "skeleton"} <= names
    assert next(o for o in acckv["options"] if o["name"] == "coverage")["choices"] == ["none", "time", "salient_time"]
    assert all(r["paper"] for r in rows if r["name"] not in ("full", "random", "taskfocus", "uniform", "oracle"))
    options = {r["name"]: {o["name"] for o in r["options"]} for r in rows}
    assert options["oracle"] == {"evidence"} and options["divprune"] == {"features", "per_layer"}
    result = invoke("methods", "--options")
    assert result.exit_code == 0 and "coverage_seconds" in result.stdout
    for word in ("uniform", "divprune", "oracle", "evidence", "per_layer"):
        assert word in result.stdout


def test_a_second_method_with_a_taken_name_is_refused():
    from dataclasses import dataclass
    from acckv_cli.methods import CompressionMethod, register

    @dataclass
    class Impostor(CompressionMethod):
        name = "snapkv"

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)
