"""The dry run counts in SQL (crit.engine.notes.sql_checks): its counts are what a real `crit run --backend rules`
then does, and what reading every note through the reader finds, for JSONL, Parquet and in-memory notes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import crit
from crit.engine.dryrun import SHOWN, count_by_reading, count_in_sql, store_path
from crit.engine.notes.reader import NoteReader
from crit.engine.notes.shards import parse_shard
from crit.engine.run import answer_keys

ROOT = Path(__file__).resolve().parent.parent
FORMS = ROOT / "tests" / "fixtures" / "forms" / "patients.crit"  # six questions, the built-in sex among them

GOOD = [
    {"note_id": f"n{i}", "text": f"Note {i}: serum creatinine {i / 10 + 0.5} mg/dL, heart rate {60 + i} bpm.",
     "sex": sex, "note_date": date}
    for i, (sex, date) in enumerate([("F", "2024-01-02"), ("male", "2024-01-03T10:00:00Z"), (None, None),
                                     (" Female ", "2024-02-01 08:30"), ("x", ""), ("M", "2024-03-01"),
                                     (None, "2024-03-02"), ("woman", None)], start=1)
]
# Bad by the reader's rules, each for another reason (none quotes the text).
BAD = [
    {"note_id": "n2", "text": "a duplicate id", "sex": None, "note_date": None},
    {"note_id": "", "text": "no id", "sex": None, "note_date": None},
    {"note_id": "\u3000 ", "text": "an id of whitespace only", "sex": None, "note_date": None},
    {"note_id": "e1", "text": "", "sex": None, "note_date": None},
    {"note_id": "e2", "text": "\u00a0\u2003\t", "sex": None, "note_date": None},
    {"note_id": "d1", "text": "a date nobody can read", "sex": None, "note_date": "3/4/2019"},
    {"note_id": "d2", "text": "a date past the calendar", "sex": None, "note_date": "2023-02-29"},
    {"note_id": "d3", "text": "an hour past the day", "sex": None, "note_date": "2024-01-02 25:00"},
    {"note_id": None, "text": "a missing id", "sex": None, "note_date": None},
]


def _rows(changed: bool = False, duplicate: bool = True) -> list[dict]:
    """The corpus: good and bad rows mixed; `changed`: note n1's text edited since it was answered; e1 appears
    again, good this time (its first row was bad, so this is no duplicate). Without `duplicate`, no id is
    held by two usable rows (the dry run counts that in one pass)."""
    rows = [dict(r) for r in GOOD]
    if changed:
        rows[0]["text"] = rows[0]["text"].replace("creatinine 0.6", "creatinine 0.7")
    for i, bad in enumerate(BAD if duplicate else BAD[1:]):
        rows.insert(2 + 2 * i, dict(bad))
    rows.append({"note_id": "e1", "text": "Creatinine 1.0 mg/dL.", "sex": "f", "note_date": None})
    return rows


def _write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".duckdb":
        import duckdb

        table = pa.Table.from_pylist(rows)
        with duckdb.connect(str(path)) as con:
            con.register("rows", table)
            con.execute("CREATE TABLE notes AS SELECT * FROM rows")
    elif path.suffix == ".csv":  # read note by note (the reader's own CSV parser), not in SQL
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:  # JSONL, with the kinds of bad line only JSON has
        lines = [json.dumps(r) for r in rows]
        lines.insert(5, "{not json")
        lines.insert(9, '["a", "list"]')
        lines.insert(12, json.dumps({"note_id": True, "text": "an id that is a boolean"}))
        lines.insert(14, json.dumps({"note_id": "t1", "text": 42}))
        lines.insert(16, json.dumps({"note_id": "s1", "text": "sex as a list", "sex": ["f"]}))
        path.write_text("\n".join(lines[:7]) + "\n\n" + "\n".join(lines[7:]) + "\n")  # a blank line: rows != lines
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_the_dry_runs_counts_are_what_the_run_then_does(tmp_path: Path, suffix: str) -> None:
    plan = crit.load(FORMS)
    db = tmp_path / "store.duckdb"
    # Answer the first notes, then edit one of them.
    first = crit.run(plan, _write(tmp_path / f"v1{suffix}", _rows()), db=db, backend="rules", limit=4, progress=False)
    assert first.summary.answers_new > 0
    corpus = _write(tmp_path / f"v2{suffix}", _rows(changed=True))

    report = crit.dry_run(plan, corpus, db=db, backend="rules")
    summary = crit.run(plan, corpus, db=db, backend="rules", progress=False).summary

    assert report.pairs_left == summary.answers_new > 0
    assert report.pairs_cached + report.pairs_skipped == summary.answers_cached
    assert report.pairs_cached > 0 and report.pairs_skipped > 0  # both kinds of pair not asked are there
    assert (report.rows, report.notes) == (summary.notes_total, summary.notes_done)
    assert report.bad_row_count == len(summary.bad_rows) >= len(BAD)
    assert report.bad_rows == summary.bad_rows[:SHOWN]
    assert summary.notes_changed == 1
    # Once run, nothing is left.
    again = crit.dry_run(plan, corpus, db=db, backend="rules")
    assert (again.pairs_left, again.notes_left) == (0, 0)


@pytest.mark.parametrize("duplicate", [True, False])
@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", "memory", ".duckdb"])
def test_sql_counts_equal_reading_every_note(tmp_path: Path, suffix: str, duplicate: bool) -> None:
    """Every count, with and without a store and a shard, equals the note-by-note count of the reader."""
    plan = crit.load(FORMS)
    keys = sorted(set(answer_keys(plan, _rules()).values()))
    sex_key = answer_keys(plan, _rules())["sex"]
    rows = _rows(changed=True, duplicate=duplicate)
    source: object = rows if suffix == "memory" else _write(tmp_path / f"n{suffix}", rows)
    if suffix == ".duckdb":  # a table in a DuckDB file: the store is attached before it locks the configuration
        source = f"{source}:notes"
    db = tmp_path / "store.duckdb"
    crit.run(plan, _write(tmp_path / "v1.parquet", _rows()), db=db, backend="rules", limit=5, progress=False)
    for store in (None, store_path(db)):
        for shard in (None, parse_shard("1/2"), parse_shard("2/2")):
            with NoteReader(source, attach_store=store) as reader:
                in_sql = count_in_sql(reader, keys, store is not None, shard, sex_key)
            by_reading = count_by_reading(source, None, keys, store, shard, sex_key, 3)
            assert in_sql is not None
            assert in_sql == by_reading, (store, shard)
            assert in_sql.notes > 0 and in_sql.bad_row_count >= len(BAD) - (not duplicate)


def test_jsonl_with_a_byte_order_mark_is_read_note_by_note(tmp_path: Path) -> None:
    """DuckDB reads a first line that starts with a BOM as no JSON; Python drops the mark: the dry run then
    reads the notes as a run does, and counts the first row as the note it is."""
    path = tmp_path / "bom.jsonl"
    path.write_text("\ufeff" + "\n".join(json.dumps(r) for r in GOOD[:3]) + "\n", encoding="utf-8")
    with NoteReader(path) as reader:
        assert reader.sql_source() is None
    report = crit.dry_run(crit.load(FORMS), path, backend="rules")
    assert (report.rows, report.notes, report.bad_row_count) == (3, 3, 0)


def test_many_bad_rows_are_counted_and_only_the_first_shown(tmp_path: Path) -> None:
    rows = [{"note_id": f"n{i}", "text": "" if i % 3 else f"Note {i}."} for i in range(1, 301)]
    path = _write(tmp_path / "many.parquet", rows)
    report = crit.dry_run(crit.load(FORMS), path, backend="rules")
    assert report.bad_row_count == 200 and len(report.bad_rows) == SHOWN
    assert [b.row for b in report.bad_rows[:3]] == [1, 2, 4]
    assert report.bad_rows[0].describe() == "row 1 (note_id 'n1'): empty text"
    assert any("... and 150 more bad rows" in line for line in report.lines())


def test_whitespace_is_pythons() -> None:
    from crit.engine.notes.sql_checks import WHITESPACE

    assert WHITESPACE == "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


def _rules():  # the rules backend, as `--backend rules` makes it
    from crit.engine.answering.registry import factory_for

    return factory_for("rules")
