"""Multiple choice and short free answers: reading options and truths, scoring a letter or an option's text,
counting unparseable answers apart, the normalised match, and the sample-clip manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acckv_cli.errors import Fail
from acckv_cli.evaluation import choices
from acckv_cli.evaluation.manifests import read_rows
from acckv_cli.evaluation.sample_choices import sample_rows
from acckv_cli.evaluation.scoring import normalised_match, score_answer
from acckv_cli.evaluation.summary import summarise, summarise_families

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
OPTIONS = ["flute", "red", "drum", "bell"]


def test_the_template_is_unchanged():
    """The demo model v2 is trained on this exact text: a change here must be a deliberate retraining."""
    assert choices.format_question(" What plays? ", ["flute", " drum "]) == (
        "What plays?\nA. flute\nB. drum\nAnswer with the option's letter from the given choices directly.")


def test_a_wrong_letter_scores_zero_and_the_option_text_scores_as_its_letter():
    assert score_answer("B", "B", OPTIONS) == {"choice": "B", "choice_correct": True}
    assert score_answer("(B) red", "B", OPTIONS) == {"choice": "B", "choice_correct": True}
    assert score_answer("C", "B", OPTIONS) == {"choice": "C", "choice_correct": False}
    assert score_answer("red", "B", OPTIONS) == {"choice": "B", "choice_correct": True}   # v1 answers words
    assert score_answer("Drum.", "B", OPTIONS) == {"choice": "C", "choice_correct": False}
    assert score_answer("purple", "B", OPTIONS) == {"choice": None, "choice_correct": False}  # unparseable
    assert score_answer("", "B", OPTIONS) == {"choice": None, "choice_correct": False}
    assert score_answer("B", None, OPTIONS) == {"choice": "B"}  # no truth: the letter read only


def test_unparseable_answers_are_wrong_and_counted_apart():
    def row(family, answer, expected="B"):
        return {"protocol": "context", "method": "full", "budget": "1.0", "family": family, "kv_kept": 1.0,
                "media_kept": 1.0, "first_token_agrees": True, "first_token_kl": 0.0,
                **score_answer(answer, expected, OPTIONS)}
    rows = [row("audio", "B"), row("audio", "red"), row("audio", "C"), row("video", "purple"),
            row("video", "I cannot tell")]
    (entry,) = summarise(rows)
    assert entry["choice"] == 0.4 and entry["unparsed"] == 2
    assert entry["audio"] == round(2 / 3, 4) and entry["video"] == 0.0
    assert "first_word" not in entry  # no free answers: no first-word column
    families = {e["family"]: e for e in summarise_families(rows)}
    assert families["video"]["unparsed"] == 2 and families["audio"]["unparsed"] == 0


def test_free_answers_keep_first_word_and_exact_and_add_a_normalised_match():
    assert score_answer("Two.", "two", None) == {"first_word_correct": True, "exact_correct": True,
                                                 "normalised_correct": True}
    assert score_answer("2", "two", None) == {"first_word_correct": False, "exact_correct": False,
                                              "normalised_correct": True}
    assert score_answer("yes and no", "yes", None)["normalised_correct"] is False
    assert score_answer("yes and no", "yes", None)["first_word_correct"] is True
    assert normalised_match("The cello!", "cello") and normalised_match("zero", "0") and normalised_match("None", "0")
    assert not normalised_match("", "cello") and not normalised_match("three", "2")
    assert score_answer("two", None, None) == {}


def test_benchmark_options_lose_their_letters_and_truths_become_letters():
    assert choices.strip_letters(["A. Apples.", "B.Pears", "(C) Figs", "D: Plums"]) == ["Apples.", "Pears", "Figs",
                                                                                      "Plums"]
    assert choices.strip_letters(["A cat", "B dog"]) == ["A cat", "B dog"]  # no delimiter: a word, kept
    assert choices.strip_letters(["A. x", "C. y"]) == ["A. x", "C. y"]      # not its own letter: kept
    opts = ["red", "blue", "A", "green"]
    got = [choices.answer_index(a, opts) for a in ["B", "b", "(B)", "B.", "blue", "Blue.", "C. A", 3, "A", "purple", 9]]
    assert got == [1, 1, 1, 1, 1, 1, 2, 3, 2, None, None]  # "A" is the text of option C, which wins


def test_manifest_rows_with_options_or_choices(tmp_path):
    rows = [{"video": "a.mp4", "question": "What plays?", "options": ["A. flute", "B. drum"], "answer": "drum"},
            {"video": "a.mp4", "question": "Colour?", "choices": ["red", "blue", "green"], "answer": "c"},
            {"video": "a.mp4", "question": "Free?", "answer": "two"}]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = read_rows(path)
    assert [(r.get("options"), r["answer"]) for r in got] == [(["flute", "drum"], "B"),
                                                              (["red", "blue", "green"], "C"), (None, "two")]
    assert got[0]["video"] == str(tmp_path / "a.mp4")
    assert read_rows(path, media_root=SAMPLES)[0]["video"] == str(SAMPLES / "a.mp4")  # --media-root
    csv_path = tmp_path / "m.csv"
    csv_path.write_text('video,question,options,answer\na.mp4,Q?,"[""x"", ""y""]",y\nb.mp4,Q?,red | blue,A\n')
    assert [(r["options"], r["answer"]) for r in read_rows(csv_path)] == [(["x", "y"], "B"), (["red", "blue"], "A")]
    for bad, words in [({"options": ["only"]}, "2 to 26"), ({"options": "x", "answer": "x"}, "2 to 26"),
                       ({"options": ["a", "b"], "answer": "c"}, "neither a letter"),
                       ({"options": [["a"], "b"]}, "list of strings")]:
        path.write_text(json.dumps({"video": "a.mp4", "question": "Q?", **bad}) + "\n")
        with pytest.raises(Fail, match=words):
            read_rows(path)


def test_the_sample_manifest_has_four_options_with_the_truth_among_them():
    rows = sample_rows(SAMPLES)
    assert len(rows) == 45 and {r["family"] for r in rows} == {"audio", "video", "alignment"}
    assert all(len(r["options"]) == 4 == len(set(r["options"])) and r["answer"] in r["options"] for r in rows)
    positions = [r["options"].index(r["answer"]) for r in rows]
    assert sorted(set(positions)) == [0, 1, 2, 3] and max(map(positions.count, range(4))) <= 12  # no letter favoured
    assert rows == sample_rows(SAMPLES)  # the same file on every run
    here = sample_rows(SAMPLES, SAMPLES.parent / "results")  # as written beside a results folder: portable paths
    assert [r["video"] for r in here] == [str(Path("..") / "samples" / Path(r["video"]).name) for r in rows]
