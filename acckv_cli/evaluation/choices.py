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
