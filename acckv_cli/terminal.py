"""What every command shares at the terminal: the two consoles, one-line errors and exit codes.

stdout carries the result (human tables, or JSON with `--json`); stderr carries notices, progress and
errors. Every expected failure becomes one line `error: …` and an exit code (2 usage, 1 runtime), never a
traceback — including the usage errors Click itself detects (a missing argument, a bad option value), which
`OneLineErrors` catches before Click prints its multi-line usage box.
"""

from __future__ import annotations

import logging
import os
import sys

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from acckv_cli.errors import AcckvError, Fail

# Recent Typer releases vendor their own Click; take its exception classes from where BadParameter lives.
_click_exceptions = sys.modules[typer.BadParameter.__module__]
ClickUsageError = _click_exceptions.UsageError
NoArgsIsHelpError = getattr(_click_exceptions, "NoArgsIsHelpError", ())

out = Console()                 # stdout: human output, or JSON with --json
err = Console(stderr=True)      # notices, progress, errors
log = logging.getLogger("acckv_cli")


def classify(exc: BaseException) -> Fail:
    """The one-line message and exit code of any exception."""
    if isinstance(exc, Fail):
        return exc
    if isinstance(exc, AcckvError):
        return Fail(str(exc), exc.exit_code)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch's is a RuntimeError
        return Fail("out of memory: lower --max-pixels or --fps, or use a shorter clip", 1)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return Fail(f"unexpected {type(exc).__name__}: {first} (rerun with --verbose for details)", 1)


def print_error(message: str) -> None:
    # a message is text: "acckv[ray]" or a file name "[1].mp4" must not be read as Rich markup
    err.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


def run(fn, *args, **kwargs):
    """Run a command body; every failure becomes one line on stderr and an exit code."""
    try:
        return fn(*args, **kwargs)
    except typer.Exit:
        raise
    except Exception as exc:
        log.debug("failure", exc_info=True)
        fail = classify(exc)
        print_error(str(fail))
        raise typer.Exit(fail.exit_code) from None


def set_verbose(verbose: bool) -> None:
    """Logging on stderr: debug logs and a failure's traceback with `-v/--verbose`, else warnings only.

    The group's callback calls it on every run; a command's own `-v` (after the command name) can only turn
    it on. `force`: each run logs to the stderr of that run (tests swap it)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s", force=True)


def new_table(title: str | None, *columns: str, left: tuple[str, ...] = (), **kwargs) -> Table:
    """A table whose cells wrap instead of being cut to `…` when the terminal is narrow (80 columns, or a
    pipe): a cut number is a wrong number. Columns are right-aligned (numbers) except those in `left`."""
    table = Table(title=title, title_justify="left", caption_justify="left", **kwargs)
    for name in columns:
        table.add_column(name, justify="left" if name in left else "right", overflow="fold")
    return table


def percent(fraction: float | None, digits: int = 1) -> str:
    """A fraction as people read it: 0.889 → `88.9 %`; None → `–`."""
    return "–" if fraction is None else f"{100 * fraction:.{digits}f} %"


def notice(text: str) -> None:
    err.print(f"[yellow]note:[/yellow] {escape(text)}", highlight=False)


def quiet_libraries() -> None:
    """Keep transformers' warnings and progress bars out of the output (`--verbose` shows logs)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


class OneLineErrors(TyperGroup):
    """Click's own usage errors (missing argument, bad value, unknown option) as one line, exit code 2."""

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        for param in getattr(command, "params", ()):
            if param.param_type_name == "argument" and param.metavar:
                # the metavar names the value (VIDEO, QUESTION): no Python type (`<str>`) after it in the help
                param.display_type_rich = lambda ctx: None
        return command

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:  # `acckv` alone: the help, as Click shows it
            out.print(exc.ctx.get_help(), highlight=False, markup=False)
            result = 0
        except ClickUsageError as exc:
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            message = exc.format_message().replace("Value error, ", "")  # pydantic's prefix in new Typer
            print_error(f"{message}{hint}")
            result = 2
        except typer.Abort:
            print_error("aborted")
            result = 130
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)
