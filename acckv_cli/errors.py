"""Every error `acckv` expects, in one place, each with the exit code the command line gives it.

The library raises these with a message meant for users (one line, naming the file or the option and what
to do); `terminal.classify` turns them into `error: …` on stderr and an exit code, never a traceback.
`UsageError`s (exit 2) are the user's to fix — a bad option, an unusable file; `RuntimeFailure`s (exit 1)
are things that went wrong while running — a model that cannot be loaded, an input the method cannot take.
"""

from __future__ import annotations


class AcckvError(Exception):
    """Base of the expected errors; `str(exc)` is one line, shown to users as it is."""

    exit_code = 1

    def __init__(self, message: str = "") -> None:
        super().__init__(" ".join(str(message).splitlines()))


class UsageError(AcckvError, ValueError):
    """The user asked for something impossible (bad option, empty question, unusable file): exit 2."""

    exit_code = 2


class RuntimeFailure(AcckvError, RuntimeError):
    """Something failed while running (model unavailable, an input a method cannot take): exit 1."""


class MediaError(UsageError):
    """An unusable input media file (missing, corrupt, no stream the model can use)."""


class BudgetError(UsageError):
    """A malformed budget (not a positive ratio, percentage or whole count)."""


class ProtocolError(UsageError):
    """An unknown protocol name."""


class ModelUnavailable(RuntimeFailure):
    """The requested model cannot be loaded here (offline, missing files, wrong architecture)."""


class UnsupportedModel(ModelUnavailable, ValueError):
    """A checkpoint of a model family `acckv` has no adapter for."""


class CompressionError(RuntimeFailure):
    """Compression cannot run on this input (batch size, cache type, layout mismatch, undeclared rows)."""


class PromptError(RuntimeFailure, ValueError):
    """The prompt cannot be split into prefix, question and suffix (an unexpected chat template)."""


class FFmpegNotFound(RuntimeFailure):
    """No ffmpeg executable on PATH and none shipped by imageio-ffmpeg."""


class Fail(AcckvError):
    """An expected failure raised by a command body, with an explicit exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.exit_code = code
