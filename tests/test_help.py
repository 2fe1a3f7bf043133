"""Help text a newcomer can trust: named values (no `<str>`), listed choices, the same words as the errors and
the README, and examples that run as printed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from acckv_cli.cli.app import app
from acckv_cli.media.probe import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from acckv_cli.options import PROTOCOLS

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("ask", "methods", "eval", "inspect", "batch", "bench")
METHOD_COMMANDS = ("ask", "eval", "inspect", "batch")
runner = CliRunner()


def help_of(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], catch_exceptions=False, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    return result.stdout


def examples_of(command: str) -> list[str]:
    text = help_of(command)
    block = text.split("Examples:", 1)[1] if "Examples:" in text else ""
    return [line.strip() for line in block.splitlines() if line.strip().startswith("acckv ")]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_value_is_named(command):
    """Python types (`<str>`, `<list[str]>`, `<float>`) say nothing about what to type."""
    text = help_of(command)
    assert not re.search(r"<(str|int|float|list\[str\])>", text), text


def test_positionals_are_named_alike():
    assert "{VIDEO} [QUESTION]..." in help_of("ask")
    assert "{VIDEO} [QUESTION]" in help_of("inspect")
    assert "{INPUT}" in help_of("batch")
    assert not re.search(r"\{[a-z]+\}", help_of("ask") + help_of("inspect") + help_of("batch"))


@pytest.mark.parametrize("command", ["ask", "batch", "eval"])
def test_protocol_lists_its_choices(command):
    text = help_of(command)
    assert all(p in text for p in PROTOCOLS)


def test_fps_help_says_what_the_error_says():
    assert "between 1 and 30" in help_of("ask")
    result = runner.invoke(app, ["ask", str(ROOT / "samples" / "bell.wav"), "q", "--fps", "40"])
    assert result.exit_code == 2 and "between 1 and 30" in result.stderr


@pytest.mark.parametrize("command", METHOD_COMMANDS)
def test_one_method_grammar_everywhere(command):
    text = help_of(command)
    assert "-m, --method NAME[:KEY=VALUE,...]" in text and "-o, --option KEY=VALUE" in text


def test_eval_takes_b_and_bench_counts_are_not_called_questions():
    assert "-b, --budget" in help_of("eval")
    bench = help_of("bench")
    assert "--question-counts COUNTS" in bench and "--questions" not in bench
    assert "-q, --questions FILE" in help_of("ask")


def test_top_level_help_names_both_families_and_where_verbose_goes():
    text = help_of()
    assert "Qwen2.5-Omni" in text and "Qwen3-Omni" in text
    assert "after the command" in text
    assert "-v, --verbose" in help_of("ask")


def listed_extensions(text: str) -> set[str]:
    return {"." + e for e in re.findall(r"\b([a-z0-9]{2,4})\b", text)} & (VIDEO_EXTENSIONS | AUDIO_EXTENSIONS)


def test_media_formats_are_listed_alike_in_help_readme_and_docs():
    """One list (the probe's tables) in the help; the README and docs/commands.md name the same formats."""
    help_text = help_of("ask")
    assert listed_extensions(help_text) == VIDEO_EXTENSIONS | AUDIO_EXTENSIONS
    for page in (ROOT / "README.md", ROOT / "docs" / "commands.md"):
        text = page.read_text()
        start = text.index("**Inputs**")
        paragraph = re.split(r"\n\s*\n|\n- ", text[start:], maxsplit=1)[0]  # to the next blank line or bullet
        assert listed_extensions(paragraph) == VIDEO_EXTENSIONS | AUDIO_EXTENSIONS, page


def test_the_example_check_sees_a_failing_example():
    """`-o merge=none`, the example `ask --help` used to give, fails with the default method: such an example
    fails the test below."""
    result = runner.invoke(app, ["ask", str(ROOT / "samples" / "bell.wav"), "q", "-o", "merge=none"])
    assert result.exit_code == 2 and "no parameter 'merge'" in result.stderr


@pytest.fixture
def examples_dir(tmp_path, monkeypatch):
    """A working folder with the repository's samples and a questions file, as the examples assume."""
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    (tmp_path / "questions.txt").write_text("What instrument plays?\nWhat colour is the shape?\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("command", ["ask", "methods", "eval", "inspect", "batch"])
def test_help_examples_run_as_printed(command, examples_dir):
    lines = examples_of(command)
    assert lines, f"`acckv {command} --help` shows no example"
    for line in lines:
        argv = shlex.split(line)[1:]
        result = runner.invoke(app, argv, catch_exceptions=False)
        assert result.exit_code == 0, (line, result.stderr)
        assert "error" not in result.stderr, (line, result.stderr)
