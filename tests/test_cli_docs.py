"""The CLI teaches: every command has help with an example, and the README mentions it.

The README's command reference is each command's `--help`, as it prints. After changing a
command, rewrite it with `python tests/test_cli_docs.py`; test_readme_reference_is_the_help fails
until then, so the two cannot drift.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from crit.cli import cli

README_PATH = Path(__file__).resolve().parent.parent / "README.md"
README = README_PATH.read_text()
COMMANDS = sorted(cli.commands)
BEGIN = "<!-- command reference: generated from --help by `python tests/test_cli_docs.py` -->"
END = "<!-- end of command reference -->"


def help_text(name: str) -> str:
    result = CliRunner().invoke(cli, [name, "--help"], prog_name="crit", terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output.rstrip()


def reference() -> str:
    """The README's command reference: every command's --help, in the order `crit --help` lists them."""
    parts = [BEGIN, ""]
    for name in COMMANDS:
        parts += [f"### crit {name}", "", "```text", help_text(name), "```", ""]
    return "\n".join([*parts, END])


def readme_reference(text: str) -> str:
    start, end = text.find(BEGIN), text.find(END)
    assert start >= 0 and end > start, "README.md has no command reference section"
    return text[start : end + len(END)]


def test_the_cli_has_the_documented_commands() -> None:
    assert {"check", "compile", "run", "sql", "report", "merge", "synth", "select", "train", "eval"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help_with_an_example(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert cli.commands[name].help, f"crit {name} has no help text"
    assert "Example" in result.output, f"crit {name} --help shows no example"


@pytest.mark.parametrize("name", COMMANDS)
def test_readme_mentions_command(name: str) -> None:
    assert f"crit {name}" in README, f"README.md never shows `crit {name}`"


def test_usage_error_exits_2() -> None:
    assert CliRunner().invoke(cli, ["run"]).exit_code == 2


def test_readme_reference_is_the_help() -> None:
    assert readme_reference(README) == reference(), "README's command reference is stale: run python tests/test_cli_docs.py"


if __name__ == "__main__":
    README_PATH.write_text(README.replace(readme_reference(README), reference()))
    print(f"rewrote the command reference in {README_PATH}")
