"""Broken .crit files: each gives exit 1 and one diagnostic at the right place.

Each fixture in tests/fixtures/errors/ has its expected rendering beside it
(NAME.expected); the table below also pins code, line and column as data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from crit.cli import cli
from crit.engine.eligibility import check_source
from crit.grammar.errors import CritError, render
from crit.grammar.parse import read_source

ERRORS = Path(__file__).parent / "fixtures" / "errors"

CASES = [
    # fixture,                   code,   line, col
    ("unclosed_string",          "E001", 2, 12),
    ("unknown_name",             "E102", 3, 19),
    ("bad_unit",                 "E104", 3, 26),
    ("inconvertible_unit",       "E104", 3, 26),
    ("unknown_declared_unit",    "E107", 2, 28),
    ("duplicate_name",           "E103", 3, 1),
    ("cycle",                    "E108", 3, 1),
    ("wrong_type",               "E106", 3, 21),
    ("number_as_condition",      "E106", 3, 14),
    ("empty",                    "E100", 1, 1),
    ("binary_junk",              "E008", 2, 2),
    ("control_chars",            "E002", 3, 1),
    ("range_on_boolean",         "E105", 3, 1),
    ("range_dash",               "E002", 3, 21),
    ("no_range",                 "E109", 3, 15),
    ("window_on_let",            "E113", 4, 19),
    ("window_unit",              "E113", 3, 29),
    ("window_fraction",          "E113", 3, 32),
    ("window_side",              "E002", 3, 22),
    ("sex_other",                "E106", 3, 24),
    ("kelvin",                   "E107", 2, 44),
    ("upper_and",                "E002", 4, 19),
    ("c_and",                    "E002", 4, 19),
    ("quoted_sex",               "E002", 3, 31),
    ("misspelt_keyword",         "E002", 2, 1),
    ("or_bars",                  "E002", 4, 21),
    ("upper_or",                 "E002", 4, 21),
    ("infer_numeric",            "E116", 2, 1),
]


def diagnostics_of(path: Path):
    try:
        text = read_source(path)
    except CritError as err:
        return err.diagnostics, None
    return check_source(text, str(path)).errors, text


@pytest.mark.parametrize("name,code,line,col", CASES)
def test_error_as_data(name: str, code: str, line: int, col: int) -> None:
    diags, _ = diagnostics_of(ERRORS / f"{name}.crit")
    assert [(d.code, d.line, d.col) for d in diags] == [(code, line, col)]


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_error_as_text(name: str) -> None:
    path = ERRORS / f"{name}.crit"
    diags, text = diagnostics_of(path)
    rendered = "\n\n".join(render(d.model_copy(update={"file": f"{name}.crit"}), text) for d in diags)
    assert rendered == (ERRORS / f"{name}.expected").read_text().rstrip("\n")


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_cli_exit_code_and_location(name: str) -> None:
    result = CliRunner().invoke(cli, ["check", str(ERRORS / f"{name}.crit")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    code, line, col = next((c[1], c[2], c[3]) for c in CASES if c[0] == name)
    assert f"error[{code}]" in result.output
    assert f"{name}.crit:{line}:{col}" in result.output


def test_all_errors_reported_in_order() -> None:
    text = 'trial T "t"\nboolean af "a"\ninclude zz\nexclude "b": af > 3\ninclude yy\n'
    codes = [(d.code, d.line) for d in check_source(text, "x.crit").errors]
    assert codes == [("E102", 3), ("E106", 4), ("E102", 5)]


def test_missing_file_is_a_user_error() -> None:
    result = CliRunner().invoke(cli, ["check", "no/such/file.crit"])
    assert result.exit_code == 1
    assert "no such file" in result.output


def test_a_crit_error_prints_with_its_line_and_caret() -> None:
    """A notebook prints an error by str(): the diagnostic with the user's line and the caret (issue 28)."""
    from crit.engine.eligibility import load_plan

    try:
        load_plan(ERRORS / "upper_and.crit")
    except CritError as err:
        text = str(err)
    assert "include \"both\": a AND b" in text and "^^^" in text and "hint:" in text
    assert str(CritError("store is locked")) == "store is locked"
