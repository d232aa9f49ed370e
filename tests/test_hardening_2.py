"""Inputs that once crashed or misled crit (issue 30), kept as regression tests, and the fuzzing that
guards each reader of outside text: dates, (more to come)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from crit.cli import cli
from crit.engine.notes.reader import parse_date

ROOT = Path(__file__).resolve().parent.parent
SMALL = ROOT / "tests" / "fixtures" / "run" / "small.crit"


# ---- dates: one strict parser, total ---------------------------------------------------------------

@pytest.mark.parametrize("text", ["3/4/2019", "2024", "20240101", "2024-1-1", "2024-01-01 garbage", "20240101xx",
                                  "2024-W01-1", "2024-02-30", "2024-01-01T25:00", "１２３４-01-01"])
def test_a_date_crit_cannot_read_is_a_reason_not_a_crash(text: str) -> None:
    with pytest.raises(ValueError, match="not a (date written YYYY-MM-DD|calendar date)"):
        parse_date(text)


@pytest.mark.parametrize(("text", "day"), [("2024-01-31", date(2024, 1, 31)), (" 2024-01-31 ", date(2024, 1, 31)),
                                            ("2024-01-31T08:15:00Z", date(2024, 1, 31)),
                                            ("2024-01-31 08:15", date(2024, 1, 31)),
                                            ("2024-01-31T08:15:00.123+02:00", date(2024, 1, 31)),
                                            ("0001-01-01", date(1, 1, 1)), ("", None)])
def test_iso_dates_and_datetimes_pass(text: str, day: date | None) -> None:
    assert parse_date(text) == day


@settings(max_examples=10_000, deadline=None)
@given(st.text(max_size=40))
def test_any_string_is_a_date_none_or_a_value_error(text: str) -> None:
    try:
        got = parse_date(text)
    except ValueError:
        return
    assert got is None or isinstance(got, date)


@pytest.mark.parametrize("dry_run", [False, True])
def test_short_note_dates_are_bad_rows_and_the_run_goes_on(tmp_path: Path, dry_run: bool) -> None:
    notes = tmp_path / "notes.jsonl"
    rows = [{"note_id": "ok", "note_date": "2024-01-01", "text": "A 72-year-old with hypertension."}]
    rows += [{"note_id": f"bad{i}", "note_date": d, "text": "Hypertension."}
             for i, d in enumerate(["3/4/2019", "2024", "20240101", "2024-1-1"])]
    notes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["run", str(SMALL), str(notes), "--db", str(tmp_path / "d.duckdb"), "--backend", "rules"]
    result = CliRunner().invoke(cli, args + (["--dry-run"] if dry_run else []))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    if not dry_run:
        assert result.output.count("is not a date written YYYY-MM-DD") == 4
