"""Public benchmark layouts (`evaluation.formats`): a tiny file in each benchmark's own layout, written here and
pointing at the sample clips, read into manifest rows; then eval and batch run on them end to end."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from acckv_cli.cli.app import app
from acckv_cli.errors import Fail
from acckv_cli.evaluation.evaluate import read_manifest
from acckv_cli.evaluation.formats import FORMATS, read_benchmark
from acckv_cli.evaluation.manifests import read_rows

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
FLUTE, DRUM = SAMPLES / "flute_red_circle.mp4", SAMPLES / "drum_then_violin.mp4"


def place(root: Path, rel: str, clip: Path = FLUTE) -> Path:
    """A sample clip linked where the benchmark's layout expects a video."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(clip, path)
    return path


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=1))
    return path


# --- one fixture per layout: (file, media root, what its rows must be) ----------------------------------

def worldsense(tmp: Path):
    place(tmp / "ws", "videos/abc123.mp4")
    data = {"abc123": {"video_id": "abc123", "duration": "<1min", "domain": "Music", "sub_category": "Band",
                       "audio_class": ["Music"], "video_caption": "…",
                       "task1": {"task_domain": "Recognition", "task_type": "Audio Recognition",
                                 "question": "Which instrument is heard?",
                                 "candidates": ["A. Drum.", "B. Flute.", "C. Bell.", "D. Violin."], "answer": "B"},
                       "task0": {"task_domain": "Recognition", "task_type": "Attribute Recognition",
                                 "question": "What colour is the circle?",
                                 "candidates": ["A. Blue.", "B. Green.", "C. Red.", "D. White."], "answer": "C"}},
            "gone99": {"duration": "<1min", "task0": {"task_type": "Audio Recognition", "question": "What plays?",
                                                      "candidates": ["A. x", "B. y", "C. z", "D. w"],
                                                      "answer": "A"}}}
    return write(tmp / "ws" / "worldsense_qa.json", data), None, [
        ("abc123-task0", True, "What colour is the circle?", ["Blue.", "Green.", "Red.", "White."], "C",
         "Attribute Recognition"),
        ("abc123-task1", True, "Which instrument is heard?", ["Drum.", "Flute.", "Bell.", "Violin."], "B",
         "Audio Recognition"),
        ("gone99-task0", False, "What plays?", ["x", "y", "z", "w"], "A", "Audio Recognition")]


def daily_omni(tmp: Path):
    root = tmp / "do-media"
    place(root, "Videos/G_VTkkb34gw/G_VTkkb34gw_video.mp4", DRUM)
    data = [{"Question": "Which sound comes first?", "Choice": ["A. Violin", "B. Drum", "C. Bell", "D. Flute"],
             "Answer": "B", "video_id": "G_VTkkb34gw", "Type": "Event Sequence", "video_category": "Music",
             "video_duration": "30s"},
            {"Question": "What colour is the square?", "Choice": ["A. Red", "B. Green", "C. Blue", "D. White"],
             "Answer": "C", "video_id": "G_VTkkb34gw", "Type": "AV Event Alignment", "video_category": "Music",
             "video_duration": "30s"},
            {"Question": "What plays?", "Choice": ["A. a", "B. b", "C. c", "D. d"], "Answer": "D",
             "video_id": "missing01", "Type": "Reasoning", "video_category": "Music", "video_duration": "60s"}]
    (tmp / "do").mkdir()
    return write(tmp / "do" / "qa.json", data), root, [
        ("G_VTkkb34gw-1", True, "Which sound comes first?", ["Violin", "Drum", "Bell", "Flute"], "B",
         "Event Sequence"),
        ("G_VTkkb34gw-2", True, "What colour is the square?", ["Red", "Green", "Blue", "White"], "C",
         "AV Event Alignment"),
        ("missing01-1", False, "What plays?", ["a", "b", "c", "d"], "D", "Reasoning")]


def videomme(tmp: Path):
    place(tmp / "vm", "data/fFjv93ACGo8.mp4")
    rows = [{"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
             "url": "https://www.youtube.com/watch?v=fFjv93ACGo8", "videoID": "fFjv93ACGo8", "question_id": "001-1",
             "task_type": "Object Recognition", "question": "Which shape is shown?",
             "options": ["A. Square.", "B. Star.", "C. Circle.", "D. Triangle."], "answer": "C"},
            {"video_id": "002", "duration": "long", "domain": "Knowledge", "sub_category": "Astronomy", "url": "",
             "videoID": "noSuchVid", "question_id": "002-1", "task_type": "Counting Problem",
             "question": "How many?", "options": ["A. 1.", "B. 2.", "C. 3.", "D. 4."], "answer": "A"}]
    path = tmp / "vm" / "videomme.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, None, [
        ("001-1", True, "Which shape is shown?", ["Square.", "Star.", "Circle.", "Triangle."], "C",
         "Object Recognition"),
        ("002-1", False, "How many?", ["1.", "2.", "3.", "4."], "A", "Counting Problem")]


def avqa(tmp: Path):
    place(tmp / "avqa", "-HG3Omg_89c_000030.mp4")
    data = [{"id": 7, "video_name": "-HG3Omg_89c_000030", "video_id": 1203, "question_text": "What makes the sound?",
             "multi_choice": ["drum", "flute", "car", "dog"], "answer": 1, "question_relation": "Both",
             "question_type": "Come From"},
            {"id": 8, "video_name": "zzzNotThere_000010", "video_id": 1204, "question_text": "Where is it?",
             "multi_choice": ["park", "stage", "road", "room"], "answer": 3, "question_relation": "View",
             "question_type": ["Where", "Which"]}]
    return write(tmp / "avqa" / "val_qa.json", data), None, [
        ("7", True, "What makes the sound?", ["drum", "flute", "car", "dog"], "B", "Come From"),
        ("8", False, "Where is it?", ["park", "stage", "road", "room"], "D", "Where/Which")]


def music_avqa(tmp: Path):
    place(tmp / "mavqa", "MUSIC-AVQA-videos-Real/00000823.mp4")
    data = [{"video_id": "00000823", "question_id": 12, "type": "[\"Audio\", \"Counting\"]",
             "question_content": "How many musical instruments were heard throughout the video?",
             "templ_values": "[]", "question_deleted": 0, "anser": "one"},
            {"video_id": "00000823", "question_id": 13, "type": "[\"Audio-Visual\", \"Existential\"]",
             "question_content": "Is the <Object> in the video always playing?", "templ_values": "[\"flute\"]",
             "question_deleted": 0, "anser": "yes"},
            {"video_id": "00000823", "question_id": 14, "type": "[\"Visual\", \"Location\"]",
             "question_content": "Where is the <Object>?", "templ_values": "[\"flute\"]", "question_deleted": 1,
             "anser": "left"},
            {"video_id": "00009999", "question_id": 15, "type": "[\"Visual\", \"Counting\"]",
             "question_content": "How many <Object> are in the <LL>?", "templ_values": "[\"guitars\", \"room\"]",
             "question_deleted": 0, "anser": "two"}]
    return write(tmp / "mavqa" / "avqa-test.json", data), None, [
        ("12", True, "How many musical instruments were heard throughout the video?", None, "one", "Audio/Counting"),
        ("13", True, "Is the flute in the video always playing?", None, "yes", "Audio-Visual/Existential"),
        ("15", False, "How many guitars are in the room?", None, "two", "Visual/Counting")]


def omnivideobench(tmp: Path):
    place(tmp / "ovb", "video_1.mp4", DRUM)
    data = [{"video": "video_1", "video_type": "Vlog", "duration": "00:10",
             "questions": [{"question": "Which instrument plays last?", "question_type": "temporal understanding",
                            "audio_type": "Music", "reasoning_steps": [], "answer": "violin",
                            "options": ["A.drum", "B.violin", "C.bell", "D.flute"], "correct_option": "B"},
                           {"question": "How many shapes appear?", "question_type": "counting",
                            "audio_type": "Music", "reasoning_steps": [], "answer": "2",
                            "options": ["A. 1", "B. 2", "C. 3", "D. 4"], "correct_option": "B"}]},
            {"video": "video_404", "video_type": "Vlog", "duration": "01:00",
             "questions": [{"question": "What is said?", "question_type": "speech", "audio_type": "Speech",
                            "answer": "hello", "options": ["A.hello", "B.bye", "C.yes", "D.no"]}]}]
    return write(tmp / "ovb" / "data.json", data), None, [
        ("video_1-1", True, "Which instrument plays last?", ["drum", "violin", "bell", "flute"], "B",
         "temporal understanding"),
        ("video_1-2", True, "How many shapes appear?", ["1", "2", "3", "4"], "B", "counting"),
        ("video_404-1", False, "What is said?", ["hello", "bye", "yes", "no"], "A", "speech")]


LAYOUTS = {"worldsense": worldsense, "daily-omni": daily_omni, "videomme": videomme, "avqa": avqa,
           "music-avqa": music_avqa, "omnivideobench": omnivideobench}


def test_every_registered_format_has_a_fixture():
    assert set(LAYOUTS) == set(FORMATS)
    assert all(f.source and f.fields for f in FORMATS.values())


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_layout_reads_into_manifest_rows(name, tmp_path):
    path, root, expected = LAYOUTS[name](tmp_path)
    rows = read_rows(path, name, root)
    got = [(r["id"], Path(r["video"]).is_file(), r["question"], r.get("options"), r["answer"], r["family"])
           for r in rows]
    assert got == expected
    assert all(os.path.isabs(r["video"]) and r["video"].startswith(str(root or path.parent)) for r in rows)
    items = read_manifest(path, name, root)  # what eval asks: the lettered options for multiple choice
    for item, want in zip(items, expected):
        if want[3]:
            assert item.prompt.splitlines()[1:3] == [f"A. {want[3][0]}", f"B. {want[3][1]}"]
        else:
            assert item.prompt == want[2]


def test_bad_benchmark_files_are_one_line_usage_errors(tmp_path):
    with pytest.raises(Fail, match="unknown benchmark format 'nope'.*worldsense"):
        read_benchmark("nope", tmp_path / "x.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(Fail, match="not valid JSON"):
        read_benchmark("avqa", tmp_path / "bad.json")
    write(tmp_path / "obj.json", {"a": 1})
    with pytest.raises(Fail, match="expected AVQA"):
        read_benchmark("avqa", tmp_path / "obj.json")
    write(tmp_path / "noq.json", [{"video_name": "v", "multi_choice": ["a", "b"], "answer": 0}])
    with pytest.raises(Fail, match="item 1: missing 'question_text'"):
        read_benchmark("avqa", tmp_path / "noq.json")
    write(tmp_path / "wrong.json", [{"video_name": "v", "question_text": "Q?", "multi_choice": ["a", "b"],
                                     "answer": 5}])
    with pytest.raises(Fail, match="neither a letter nor the text"):
        read_rows(tmp_path / "wrong.json", "avqa")
    with pytest.raises(Fail, match="--media-root"):
        read_benchmark("avqa", tmp_path / "wrong.json", tmp_path / "no-such-folder")


def test_video_mme_nested_template_and_parquet(tmp_path):
    place(tmp_path, "data/001.mp4")
    nested = [{"video_id": "001", "duration_category": "short", "questions": [
        {"question_id": "001-1", "task_type": "Object Reasoning", "question": "Q?",
         "choices": ["A. one.", "B. two.", "C. three.", "D. four."], "answer": "A", "response": "D"}]}]
    rows = read_rows(write(tmp_path / "template.json", nested), "videomme")
    assert [(r["id"], Path(r["video"]).is_file(), r["options"][0], r["answer"]) for r in rows] == [
        ("001-1", True, "one.", "A")]
    (tmp_path / "test.parquet").write_bytes(b"PAR1")
    try:
        import pyarrow  # noqa: F401
    except ImportError:  # this project does not install pyarrow: the error says what to do
        with pytest.raises(Fail, match="pyarrow"):
            read_benchmark("videomme", tmp_path / "test.parquet")
    else:
        with pytest.raises(Exception):
            read_benchmark("videomme", tmp_path / "test.parquet")


runner = CliRunner()


def test_eval_runs_a_benchmark_file_and_reports_per_category(tmp_path):
    path, root, expected = worldsense(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval", "--manifest", str(path), "--format", "worldsense", "-m", "full",
                                 "-m", "random", "--budgets", "0.5", "--protocols", "context", "--out-dir", str(out),
                                 "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    full = next(e for e in payload["summary"] if e["method"] == "full")
    assert full["n"] == 3 and full["errors"] == 1  # the missing video is one error row, not a crash
    assert 0.0 <= full["choice"] <= 1.0 and 0 <= full["unparsed"] <= 2 and full["agreement"] == 1.0
    families = {(e["family"], e["method"]): e for e in payload["families"]}
    assert families[("Audio Recognition", "full")]["n"] == 2 and families[("Audio Recognition", "full")]["errors"] == 1
    assert families[("Attribute Recognition", "full")]["n"] == 1
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    good = [r for r in rows if "error" not in r]
    assert good and all(r["options"] and r["expected"] in "ABCD" and "choice_correct" in r for r in good)
    assert all("first_word_correct" not in r for r in good)  # multiple choice is scored as a choice only
    bad = [r for r in rows if "error" in r]
    assert len(bad) == 2 and all("not found" in r["error"] for r in bad)  # 1 row × 2 methods
    assert "| family |" in (out / "summary_families.md").read_text()


def test_batch_runs_a_benchmark_file_and_records_the_letter_read(tmp_path):
    path, root, _ = daily_omni(tmp_path)
    out = tmp_path / "r.jsonl"
    result = runner.invoke(app, ["batch", str(path), "--benchmark", "daily-omni", "--media-root", str(root),
                                 "--out", str(out), "--budget", "0.5", "--max-new-tokens", "2"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(lines) == {"G_VTkkb34gw-1", "G_VTkkb34gw-2", "missing01-1"}
    first = lines["G_VTkkb34gw-1"]
    assert first["options"] == ["Violin", "Drum", "Bell", "Flute"] and first["expected"] == "B"
    assert first["error"] is None and first["choice"] in (None, "A", "B", "C", "D")
    assert first["question"] == "Which sound comes first?"
    assert "not found" in lines["missing01-1"]["error"]
    # the same items again under --resume: the keys (video + the lettered prompt) are stable
    again = runner.invoke(app, ["batch", str(path), "--benchmark", "daily-omni", "--media-root", str(root),
                                "--out", str(out), "--budget", "0.5", "--max-new-tokens", "2", "--resume"])
    assert again.exit_code == 0 and len(out.read_text().splitlines()) == 3
    table = tmp_path / "r.csv"
    as_csv = runner.invoke(app, ["batch", str(path), "--benchmark", "daily-omni", "--media-root", str(root), "--out",
                                 str(table), "--format", "csv", "--budget", "0.5", "--max-new-tokens", "2"])
    assert as_csv.exit_code == 0, as_csv.stderr
    by_id = {r["id"]: r for r in csv.DictReader(table.read_text().splitlines())}
    assert by_id["G_VTkkb34gw-1"]["options"] == "Violin | Drum | Bell | Flute"
    assert by_id["G_VTkkb34gw-1"]["choice"] == (first["choice"] or "")  # the same letter read in both formats


@pytest.mark.parametrize("command, args, words", [
    ("eval", ["--benchmark", "worldsense"], "needs --manifest"),
    ("eval", ["--manifest", "{ws}", "--benchmark", "nope"], "unknown benchmark format"),
    ("eval", ["--manifest", "{ws}", "--benchmark", "worldsense", "--media-root", "{missing}"], "--media-root"),
    ("batch", ["{tmp}", "--benchmark", "avqa", "--question", "Q?"], "not a folder"),
])
def test_benchmark_flags_usage_errors(command, args, words, tmp_path):
    ws, _, _ = worldsense(tmp_path)
    args = [a.format(ws=ws, tmp=tmp_path, missing=tmp_path / "missing") for a in args]
    extra = ["--out-dir", str(tmp_path / "o")] if command == "eval" else ["--out", str(tmp_path / "r.jsonl")]
    result = runner.invoke(app, [command, *args, *extra], catch_exceptions=False)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and words in lines[0], result.stderr
