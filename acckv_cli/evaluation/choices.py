"""Multiple-choice questions: the prompt that lists lettered options, and reading a letter back.

The template follows the multiple-choice prompts used to evaluate Qwen's vision-language models (and
lmms-eval's video tasks): the question, one option per line as "A. text", then the instruction
"Answer with the option's letter from the given choices directly." The built-in demo model (v2) is trained
on exactly this text, so it must not change without retraining.
"""

from __future__ import annotations

import re
import string

LETTERS = string.ascii_uppercase
INSTRUCTION = "Answer with the option's letter from the given choices directly."
_LEADING_LETTER = re.compile(r"^\W*\(?([A-Z])\)?(?:[.:)\s]|$)")


def format_question(question: str, options: list[str]) -> str:
    """The question followed by its lettered options and the instruction, one per line."""
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"a multiple-choice question needs 2 to {len(LETTERS)} options, not {len(options)}")
    lines = [question.strip(), *(f"{LETTERS[i]}. {str(text).strip()}" for i, text in enumerate(options))]
    return "\n".join([*lines, INSTRUCTION])


def parse_choice(answer: str, options: list[str]) -> int | None:
    """The index of the option an answer names: its leading letter ("B", "(B)", "B. red"), or failing that
    the one option whose text it starts with (case-insensitive); None when it names none."""
    text = answer.strip()
    if (m := _LEADING_LETTER.match(text)) and (index := LETTERS.find(m.group(1))) < len(options):
        return index
    lowered = text.lower()
    hits = [i for i, option in enumerate(options) if option and lowered.startswith(str(option).strip().lower())]
    return hits[0] if len(hits) == 1 else None


# --- reading options and ground truths as benchmarks publish them (added after the template; the template's
# text above is unchanged) -------------------------------------------------------------------------------

# "A. text", "A.text", "(A) text", "A: text", "A) text": the letter a benchmark writes in front of its own option
_OWN_LETTER = re.compile(r"^\s*\(?([A-Z])\s*[.:)]\s*")
_BARE_LETTER = re.compile(r"^\s*\(?([A-Za-z])\)?\s*[.:]?\s*$")


def strip_letters(options: list[str]) -> list[str]:
    """The options as bare texts. Most benchmarks publish them as "A. text" (WorldSense, Daily-Omni, Video-MME,
    OmniVideoBench); `format_question` adds the letters itself, so they are stripped — but only when every
    option starts with its own letter in order, so that an option such as "A cat" keeps its first word."""
    texts = [str(option).strip() for option in options]
    found = [_OWN_LETTER.match(text) for text in texts]
    if all(m is not None and m.group(1) == LETTERS[i] for i, m in enumerate(found)):
        return [text[m.end():].strip() for text, m in zip(texts, found)]
    return texts


def _same_text(a: str, b: str) -> bool:
    """Option texts compared without case, surrounding space or a final full stop ("Apples." is "apples")."""
    return a.strip().rstrip(".").strip().casefold() == b.strip().rstrip(".").strip().casefold()


def answer_index(answer: object, options: list[str]) -> int | None:
    """The option a ground-truth answer names: a letter ("B", "(B)", "B."), a 0-based index (AVQA stores an
    int), the option's whole text ("red"), or "B. red" when B's text is "red"; None when it names none.
    The option's text wins over a letter reading ("A" among options ["B", "A"] is the second option)."""
    if isinstance(answer, int) and not isinstance(answer, bool):
        return answer if 0 <= answer < len(options) else None
    text = str(answer).strip()
    if not text:
        return None
    same = [i for i, option in enumerate(options) if _same_text(text, option)]
    if len(same) == 1:
        return same[0]
    if (m := _BARE_LETTER.match(text)) and LETTERS.index(m.group(1).upper()) < len(options):
        return LETTERS.index(m.group(1).upper())
    if (m := _OWN_LETTER.match(text)) and LETTERS.index(m.group(1)) < len(options):
        index = LETTERS.index(m.group(1))
        return index if _same_text(text[m.end():], options[index]) else None
    return None


def letter(index: int | None) -> str | None:
    """The letter of an option index (None stays None)."""
    return None if index is None else LETTERS[index]
