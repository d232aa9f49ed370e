"""The notebook API: notes passed in memory, Arrow and pandas results, and stores that never block a run."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pyarrow as pa
import pytest

import crit
from crit.engine.notes.reader import read_notes
from crit.grammar.errors import CritError

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "mtsamples-sample.jsonl"
PATIENTS = ROOT / "tests" / "fixtures" / "patients"


def _sample_rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


def test_a_list_of_dicts_reads_like_a_file_with_its_bad_rows() -> None:
    rows = [
        {"note_id": "a", "text": "AF. Age 80.", "note_date": datetime.date(2024, 1, 2), "patient_id": "p1"},
        {"note_id": "b", "text": "   "},
        {"note_id": "a", "text": "again"},
        {"note_id": "c", "text": "hello", "note_date": "03/04/2024", "patient_id": "p2"},
    ]
    notes, bad = read_notes(rows)
    assert [(n.note_id, n.patient_id, n.note_date, n.row) for n in notes] == [("a", "p1", datetime.date(2024, 1, 2), 1)]
    assert [(b.where, b.reason.split(" (")[0]) for b in bad] == [
        ("row 2", "empty text"), ("row 3", "duplicate note id"), ("row 4", "note date"),
    ]


def test_a_dataframe_and_an_arrow_table_give_the_notes_the_file_gives() -> None:
    pd = pytest.importorskip("pandas")
    from_file, _ = read_notes(SAMPLE)
    from_frame, _ = read_notes(pd.read_json(SAMPLE, lines=True))
    from_arrow, _ = read_notes(pa.Table.from_pylist(_sample_rows()))
    assert from_frame == from_file == from_arrow


def test_notes_that_cannot_be_read_say_why_in_one_line() -> None:
    with pytest.raises(CritError, match="key 'note_id' holds values of more than one type"):
        read_notes([{"note_id": 1, "text": "x"}, {"note_id": "b", "text": "y"}])
    with pytest.raises(CritError, match="note 2 of the list is a str"):
        read_notes([{"note_id": "a", "text": "x"}, "just text"])
    with pytest.raises(CritError, match="no note text column"):
        read_notes([{"note_id": "a", "body_of_it": "x"}])
    with pytest.raises(CritError, match="cannot read notes from a int"):
        read_notes(42)
    with pytest.raises(CritError, match="holds BIGINT, not text"):
        read_notes(pa.table({"note_id": ["a"], "text": [7]}))


def test_run_in_memory_returns_arrow_tables_and_a_store_reader_never_blocks_the_next_run(tmp_path: Path) -> None:
    db = tmp_path / "nb.duckdb"
    rows = _sample_rows()
    first = crit.run(ROOT / "criteria" / "aristotle.crit", rows, db=db, backend="rules", progress=False)
    assert first.summary.notes_done == 20 and sum(first.summary.this_run.values()) == 20
    eligibility = first.eligibility
    assert isinstance(eligibility, pa.Table) and eligibility.num_rows == 20
    assert first.sql("select notes_source from runs").fetchall() == [("the notes passed in memory (20 rows)",)]

    store = crit.connect(db)
    statuses = store.sql("select status, count(*) as n from eligibility group by status order by status")
    unread = store.sql("select * from answers").arrow()  # read whole: nothing is left open on the file
    again = crit.run(ROOT / "criteria" / "aristotle.crit", rows[:3], db=db, backend="rules", progress=False)
    assert again.summary.answers_new == 0 and again.summary.answers_cached == 3 * 26
    assert unread.num_rows == 20 * 26 and len(statuses) >= 1
    assert store.table("criteria").num_rows == first.criteria.num_rows
    with pytest.raises(CritError, match="no table 'secrets'"):
        store.table("secrets")
    with pytest.raises(CritError, match="read-only"):
        store.sql("delete from answers")


def test_progress_reaches_the_callback_and_patient_views_come_as_arrow(tmp_path: Path) -> None:
    seen: list[int] = []
    screening = crit.run(PATIENTS / "screen.crit", PATIENTS / "notes.jsonl", db=tmp_path / "p.duckdb", backend="rules",
                         patient_column="patient", batch_size=2, on_progress=lambda p: seen.append(p.notes_done))
    assert seen == sorted(seen) and seen[-1] == screening.summary.notes_done
    patients = screening.patient_eligibility
    assert patients.num_rows == screening.summary.evaluation.by_patient.patients
    assert set(patients.column_names) >= {"patient_id", "status"}
