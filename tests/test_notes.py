"""Reading notes (crit.engine.notes): every input format through DuckDB, bad rows reported by number and skipped."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from crit.engine.notes.columns import NoteColumns
from crit.engine.notes.reader import NoteReader, read_notes
from crit.grammar.errors import CritError

GOOD = [
    {"note_id": "n1", "sex": "female", "text": "72-year-old woman.\nHypertension."},
    {"note_id": "n2", "sex": "M", "text": "56-year-old man, sleep apnea."},
    {"note_id": "n3", "sex": None, "text": "No history given."},
]


def _ids(notes):
    return [(n.note_id, n.row, n.sex) for n in notes]


EXPECTED = [("n1", 1, "female"), ("n2", 2, "M"), ("n3", 3, None)]


def test_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in GOOD))
    notes, bad = read_notes(path)
    assert _ids(notes) == EXPECTED and bad == []
    assert notes[0].text == GOOD[0]["text"]


def test_json_array(tmp_path: Path) -> None:
    path = tmp_path / "notes.json"
    path.write_text(json.dumps(GOOD))
    notes, bad = read_notes(path)
    assert _ids(notes) == EXPECTED and bad == []


def test_csv_parquet_and_duckdb_table(tmp_path: Path) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (note_id VARCHAR, sex VARCHAR, text VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?)", [(r["note_id"], r["sex"], r["text"]) for r in GOOD])
    con.execute(f"COPY t TO '{tmp_path / 'notes.csv'}' (HEADER)")
    con.execute(f"COPY t TO '{tmp_path / 'notes.parquet'}' (FORMAT parquet)")
    con.execute(f"ATTACH '{tmp_path / 'corpus.duckdb'}' AS c")
    con.execute("CREATE TABLE c.clinic_notes AS SELECT * FROM t")
    con.close()
    for source in (tmp_path / "notes.csv", tmp_path / "notes.parquet", f"{tmp_path / 'corpus.duckdb'}:clinic_notes"):
        notes, bad = read_notes(source)
        assert _ids(notes) == EXPECTED, source
        assert notes[0].text == GOOD[0]["text"]  # the newline inside the CSV field survives
        assert bad == []


def test_folder_of_txt(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "c.txt").write_bytes(b"caf\xe9")  # Latin-1, not UTF-8
    (tmp_path / "d.txt").write_text("   \n")
    (tmp_path / "readme.md").write_text("not a note")
    notes, bad = read_notes(tmp_path)
    assert [(n.note_id, n.text) for n in notes] == [("a", "first"), ("b", "second")]
    assert [(b.where, b.reason) for b in bad] == [("c.txt", "not UTF-8 (byte 3)"), ("d.txt", "empty text")]


def test_bad_jsonl_rows_reported_by_row_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    lines = [
        json.dumps({"note_id": "ok1", "text": "fine"}).encode(),
        json.dumps({"text": "no id here"}).encode(),
        json.dumps({"note_id": "ok1", "text": "same id again"}).encode(),
        json.dumps({"note_id": "empty", "text": "  "}).encode(),
        b'{"note_id": "latin", "text": "caf\xe9"}',
        b'{"note_id": "broken", "text": ',
        json.dumps({"note_id": "long", "text": "x" * 101}).encode(),
        json.dumps({"note_id": 7, "text": "an integer id"}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    notes, bad = read_notes(path, max_chars=100)
    assert [(n.note_id, n.row) for n in notes] == [("ok1", 1), ("7", 8)]
    assert [(b.row, b.reason.split(" (")[0]) for b in bad] == [
        (2, "no note id"),
        (3, "duplicate note id"),
        (4, "empty text"),
        (5, "not UTF-8"),
        (6, "not valid JSON"),
        (7, "text too long"),
    ]
    assert all("same id again" not in b.describe() for b in bad)  # reasons never quote the text


def test_bad_csv_rows_keep_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_bytes(b'id,note\na,"line one\nline two"\nb,"caf\xe9"\nc,fine\n,no id\n')
    notes, bad = read_notes(path)
    assert [(n.note_id, n.row) for n in notes] == [("a", 1), ("c", 3)]
    assert [(b.row, b.reason) for b in bad] == [(2, "not UTF-8"), (4, "no note id")]


def test_columns_named_or_missing(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text(json.dumps({"doc": "d1", "body_text": "hello", "gender": "F"}) + "\n")
    with pytest.raises(CritError, match="no note id column"):
        NoteReader(path)
    notes, _ = read_notes(path, NoteColumns(id_column="doc", text_column="body_text"))
    assert _ids(notes) == [("d1", 1, "F")]
    with pytest.raises(CritError, match="no column 'nope'"):
        NoteReader(path, NoteColumns(id_column="nope"))


def test_missing_and_unknown_sources(tmp_path: Path) -> None:
    with pytest.raises(CritError, match="not found"):
        NoteReader(tmp_path / "absent.jsonl")
    (tmp_path / "notes.xlsx").write_bytes(b"PK")
    with pytest.raises(CritError, match="cannot read notes"):
        NoteReader(tmp_path / "notes.xlsx")
    with pytest.raises(CritError, match="holds no .txt files"):
        NoteReader(tmp_path / "empty_dir" if (tmp_path / "empty_dir").mkdir() is None else tmp_path)


def test_streams_in_batches_with_limit(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(json.dumps({"id": f"n{i}", "text": f"note {i}"}) + "\n" for i in range(5000)))
    with NoteReader(path) as reader:
        assert reader.count() == 5000
        sizes = [len(b) for b in reader.batches(size=64)]
        assert sizes[:-1] == [64] * (len(sizes) - 1) and sum(sizes) == 5000
        first = next(iter(reader.batches(size=10, limit=25)))
        assert [n.note_id for n in first][:2] == ["n0", "n1"]
        assert sum(len(b) for b in reader.batches(size=10, limit=25)) == 25
