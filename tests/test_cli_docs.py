"""The CLI teaches: every command has help with an example, and the README mentions it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from crit.cli import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
COMMANDS = sorted(cli.commands)


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
