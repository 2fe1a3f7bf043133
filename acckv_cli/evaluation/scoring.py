"""Scoring one answer against the truth: multiple choice (the letter read, or the option's text) and short
free answers (first word, exact, and a normalised match for answers such as MUSIC-AVQA's "two" or "yes").

`eval` and `batch` both score through here, so a manifest row means the same in both commands.
"""

from __future__ import annotations

import re

from acckv_cli.evaluation.choices import letter, parse_choice

_ARTICLES = {"a", "an", "the"}
# Short free answers mix words and digits ("two" against "2", MUSIC-AVQA's counting answers are words); the
# normalised match reads both as digits, as the VQA evaluation's answer processor does.
NUMBER_WORDS = {word: str(n) for n, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
NUMBER_WORDS["none"] = "0"


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation or articles."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return [w for w in words if w not in _ARTICLES]


def answer_matches(answer: str, expected: str) -> bool:
    """Exact match of the normalised answer with the ground truth ("A flute." matches "flute")."""
    return normalise(answer) == normalise(expected)


def answer_starts_with(answer: str, expected: str) -> bool:
    """The answer's first word(s) are the expected answer ("green blue" starts with "green")."""
    want = normalise(expected)
    return bool(want) and normalise(answer)[:len(want)] == want


def normalised_words(text: str) -> list[str]:
    """`normalise` (case, punctuation, articles) with number words read as digits ("Two." → ["2"])."""
    return [NUMBER_WORDS.get(w, w) for w in normalise(text)]


def normalised_match(answer: str, expected: str) -> bool:
    """The whole answer equals the truth once normalised: "Two." matches "2", "The cello" matches "cello",
    "yes" does not match "yes and no" (a longer answer is not a match, unlike the first-word score)."""
    want = normalised_words(expected)
    return bool(want) and normalised_words(answer) == want


def score_answer(answer: str, expected: str | None, options: list[str] | tuple[str, ...] | None) -> dict:
    """The row fields that score one answer.

    Multiple choice (`options` given; `expected` is the letter): `choice`, the letter read from the answer
    (its leading letter, or failing that the one option whose text it starts with; None when unparseable),
    and `choice_correct` — an unparseable answer is wrong, and `choice` None lets summaries count it apart.
    Free answers: `first_word_correct`, `exact_correct` and `normalised_correct`. Without a truth, only the
    letter read (multiple choice) or nothing."""
    if options:
        read = letter(parse_choice(answer, list(options)))
        row: dict = {"choice": read}
        if expected is not None:
            row["choice_correct"] = read == expected
        return row
    if expected is None:
        return {}
    return {"first_word_correct": answer_starts_with(answer, expected),
            "exact_correct": answer_matches(answer, expected),
            "normalised_correct": normalised_match(answer, expected)}
