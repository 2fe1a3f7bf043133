"""Questions as the user gives them: one checked question, or a file of one question per line.

Kept apart from `pipeline` (which imports torch and transformers) so that every command checks its
questions before anything heavy is imported.
"""

from __future__ import annotations

from acckv_cli.errors import UsageError


def check_question(question: str) -> str:
    """The question without surrounding blanks; an empty one is a usage error."""
    if not question or not question.strip():
        raise UsageError("the question is empty; ask something, e.g. \"What instrument plays?\"")
    return question.strip()


def read_questions(path: str) -> list[str]:
    """Questions file: one question per line; blank lines are ignored."""
    try:
        with open(path, encoding="utf-8") as fh:
            questions = [line.strip() for line in fh if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else exc
        raise UsageError(f"cannot read --questions file {path!r}: {reason}") from None
    if not questions:
        raise UsageError(f"--questions file {path!r} holds no question")
    return questions
