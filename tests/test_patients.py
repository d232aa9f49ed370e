"""Patients, note dates and time windows: the patient layer of the rules, end to end and in small.

The corpus (tests/fixtures/patients) groups MTSamples notes and hand-written notes into
seven synthetic patients with dates; expected.json holds each patient's status and
criteria, written by hand from the notes. The n2c2 fixture (tests/fixtures/n2c2) is three
patients in the n2c2 2018 layout with their gold tags. All of it runs through the rules
answerer: no model is loaded.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from crit.cli import cli
from crit.engine.answering.backends.rules import RulesFactory
from crit.engine.eligibility import load_plan, plan_from_text
from crit.engine.eligibility.evaluate import evaluate
from crit.engine.notes import n2c2
from crit.engine.notes.columns import NoteColumns
from crit.engine.notes.reader import parse_date, read_notes
from crit.engine.run import run
from tests.conftest import ScriptedFactory

ROOT = Path(__file__).resolve().parent.parent
PATIENTS = ROOT / "tests" / "fixtures" / "patients"
N2C2 = ROOT / "tests" / "fixtures" / "n2c2"
FORMS = ROOT / "tests" / "fixtures" / "forms"


def screen(tmp_path: Path, name: str, **columns: str):
    db = tmp_path / f"{name}.duckdb"
    summary = run(load_plan(PATIENTS / "screen.crit"), PATIENTS / "notes.jsonl", db, RulesFactory(),
                  columns=NoteColumns(**columns))
    return summary, duckdb.connect(str(db))


def test_patient_statuses_match_the_hand_labels(tmp_path: Path) -> None:
    expected = {k: v for k, v in json.loads((PATIENTS / "expected.json").read_text()).items() if not k.startswith("_")}
    summary, con = screen(tmp_path, "patients", patient_column="patient")
    statuses = dict(con.execute("SELECT patient_id, status FROM patient_eligibility").fetchall())
    assert statuses == {p: e["status"] for p, e in expected.items()}
    criteria = {(p, label): status for p, label, status in
                con.execute("SELECT patient_id, label, status FROM patient_criteria").fetchall()}
    assert criteria == {(p, label): s for p, e in expected.items() for label, s in e["criteria"].items()}
    assert summary.evaluation.by_patient is not None
    assert summary.evaluation.by_patient.model_dump() == {"patients": 7, "eligible": 3, "ineligible": 2, "unknown": 2}


def test_every_patient_answer_names_its_note_and_span(tmp_path: Path) -> None:
    _, con = screen(tmp_path, "spans", patient_column="patient")
    # P3's bleeding inside 6 months comes from the consult moved into the window, and its span says so.
    row = con.execute(
        "SELECT a.note_id, a.note_date, a.span_start, a.span_end, n.text FROM patient_answers a JOIN notes n USING (note_id) "
        "WHERE a.patient_id = 'P3' AND a.question = 'bleeding' AND a.time_window = '6 months'"
    ).fetchone()
    note_id, note_date, start, end, text = row
    assert (note_id, note_date) == ("mts-2208-p3", date(2024, 2, 20))
    assert "rectal bleeding" in text[start:end].lower()
    # Outside the window P2's same consult does not count, and inside it the clinic note's denial does.
    row = con.execute("SELECT note_id, converted FROM patient_answers WHERE patient_id = 'P2' AND question = 'bleeding' "
                      "AND time_window = '6 months'").fetchone()
    assert row == ("p2-clinic", 0.0)
    # Every decided answer keeps a note; only undecided ones lack it.
    orphans = con.execute("SELECT count(*) FROM patient_answers WHERE converted IS NOT NULL AND note_id IS NULL").fetchone()
    assert orphans == (0,)
    # The undated note of P6: the windows have nothing dated inside them.
    assert con.execute("SELECT DISTINCT reason FROM patient_answers WHERE patient_id = 'P6' AND time_window IS NOT NULL"
                       ).fetchall() == [("window",)]


def test_patients_change_only_the_patient_layer(tmp_path: Path) -> None:
    """Same file, same notes: the per-note answers and criteria are the same with and without --patient-column."""
    _, alone = screen(tmp_path, "alone")
    _, grouped = screen(tmp_path, "grouped", patient_column="patient")
    answers = "SELECT note_id, question, value, unit, na, span_start, span_end, method FROM answers ORDER BY ALL"
    assert alone.execute(answers).fetchall() == grouped.execute(answers).fetchall()
    per_note = "SELECT note_id, label, status, reason FROM criteria ORDER BY ALL"
    assert alone.execute(per_note).fetchall() == grouped.execute(per_note).fetchall()
    assert alone.execute("SELECT count(*) FROM patient_eligibility").fetchone() == (0,)
    assert grouped.execute("SELECT count(*) FROM patient_eligibility").fetchone() == (7,)


def test_a_window_edit_asks_no_model(tmp_path: Path) -> None:
    crit = tmp_path / "screen.crit"
    shutil.copy(PATIENTS / "screen.crit", crit)
    notes, db = PATIENTS / "notes.jsonl", tmp_path / "edit.duckdb"
    first = ScriptedFactory()
    run(load_plan(crit), notes, db, first, policy="model", columns=NoteColumns(patient_column="patient"))
    assert first.asked(), "the first run asks the scripted model"
    crit.write_text(crit.read_text().replace("stroke within 1 month", "stroke within 18 months"))
    again = ScriptedFactory()
    summary = run(load_plan(crit), notes, db, again, policy="model", columns=NoteColumns(patient_column="patient"))
    assert again.asked() == [] and summary.answers_new == 0
    con = duckdb.connect(str(db))
    assert con.execute("SELECT DISTINCT time_window FROM patient_answers WHERE question = 'stroke' "
                       "AND time_window IS NOT NULL").fetchall() == [("18 months",)]


def window_store(notes: list[tuple[str, str | None, str | None, str | None]], answers: dict[str, float | None]):
    """A store by hand: notes (note_id, patient_id, note_date, index_date) and one boolean answer per note."""
    con = duckdb.connect()
    con.execute("CREATE TABLE notes (note_id VARCHAR, sex VARCHAR, patient_id VARCHAR, note_date DATE, index_date DATE, "
                "source_row BIGINT)")
    for i, (note_id, patient, when, index) in enumerate(notes, 1):
        con.execute("INSERT INTO notes VALUES (?, NULL, ?, ?, ?, ?)", [note_id, patient, when, index, i])
    con.execute("CREATE TABLE answers (note_id VARCHAR, question VARCHAR, answer_key VARCHAR, value DOUBLE, "
                "unit VARCHAR, na BOOLEAN, error VARCHAR)")
    for note_id, value in answers.items():
        con.execute("INSERT INTO answers VALUES (?, 'mi', 'k', ?, NULL, ?, NULL)", [note_id, value, value is None])
    return con


MI = 'boolean mi "a myocardial infarction"\nexclude "recent MI": mi within 6 months\n'


def mi_status(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str]]:
    return {p: (s, r) for p, s, r in con.execute("SELECT patient_id, status, reason FROM patient_criteria").fetchall()}


def test_window_edges_are_inclusive_and_end_at_the_last_note() -> None:
    con = window_store(
        [("a1", "A", "2023-07-01", None), ("a2", "A", "2024-01-01", None),  # exactly 6 months: inside
         ("b1", "B", "2023-06-30", None), ("b2", "B", "2024-01-01", None),  # a day more: outside
         ("c1", "C", "2024-03-01", None), ("c2", "C", "2024-01-01", None)],  # the last note is not the last row
        {"a1": 1.0, "a2": None, "b1": 1.0, "b2": 0.0, "c1": 1.0, "c2": None},
    )
    evaluate(con, plan_from_text(MI))
    assert mi_status(con) == {"A": ("met", "value"), "B": ("not met", "value"), "C": ("met", "value")}


def test_a_month_and_thirty_days_are_different_windows() -> None:
    """DuckDB 2.0 holds INTERVAL 30 DAY equal to INTERVAL 1 MONTH and merges two such expressions in one
    SELECT; the rules once read `within 1 month` as `within 30 days` where a file had both."""
    both = ('boolean mi "a myocardial infarction"\n'
            'exclude "MI, a month": mi within 1 month\nexclude "MI, 30 days": mi within 30 days\n')
    # 2023-08-12 back a month is 2023-07-12, back 30 days 2023-07-13: a1 lies in the month only.
    notes = [("a1", "A", "2023-07-12", None), ("a2", "A", "2023-08-12", None)]
    con = window_store(notes, {"a1": 1.0, "a2": 0.0})
    evaluate(con, plan_from_text(both))
    statuses = dict(con.execute("SELECT label, status FROM patient_criteria").fetchall())
    assert statuses == {"MI, a month": "met", "MI, 30 days": "not met"}
    starts = dict(con.execute("SELECT time_window, window_start FROM patient_answers WHERE window_id > 0").fetchall())
    assert starts == {"1 month": date(2023, 7, 12), "30 days": date(2023, 7, 13)}
    # A note alone, with the corpus's index date: the same two windows.
    con = window_store([("a1", None, "2023-07-12", "2023-08-12")], {"a1": 1.0})
    evaluate(con, plan_from_text(both))
    assert dict(con.execute("SELECT label, status FROM criteria").fetchall()) == {"MI, a month": "met",
                                                                                  "MI, 30 days": "unknown"}


def test_index_date_first_note_and_an_index_column() -> None:
    notes = [("a1", "A", "2020-01-01", None), ("a2", "A", "2020-03-01", None), ("a3", "A", "2024-01-01", None)]
    answers = {"a1": 0.0, "a2": 1.0, "a3": None}
    con = window_store(notes, answers)
    evaluate(con, plan_from_text(MI))  # from the last note (2024): nothing dated inside says anything
    assert mi_status(con) == {"A": ("unknown", "na")}
    evaluate(con, plan_from_text("index date = first note\n" + MI))  # from 2020-01-01: only a1, which says absent
    assert mi_status(con) == {"A": ("not met", "value")}
    con = window_store([(n, p, d, "2020-04-01") for n, p, d, _ in notes], answers)
    evaluate(con, plan_from_text(MI))  # the corpus's index date: a1 and a2 inside, a2 says present
    assert mi_status(con) == {"A": ("met", "value")}


def test_numbers_across_notes_follow_the_order() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE notes AS SELECT * FROM (VALUES ('n1', 'P', DATE '2024-01-01', 1), "
                "('n2', 'P', DATE '2024-03-01', 2), ('n3', 'P', DATE '2024-02-01', 3)) t(note_id, patient_id, note_date, source_row)")
    con.execute("CREATE TABLE answers AS SELECT note_id, q AS question, q AS answer_key, v AS value, 'mg/dL' AS unit, "
                "FALSE AS na, NULL::VARCHAR AS error FROM (VALUES ('n1', 2.0), ('n2', 1.0), ('n3', 3.0)) t(note_id, v), "
                "(VALUES ('hi'), ('lo'), ('first'), ('last'), ('plain')) q(q)")
    text = ("\n".join(f'numeric {q} {o} "creatinine" in mg/dL' for q, o in
                      (("hi", "highest"), ("lo", "lowest"), ("first", "first"), ("last", "last"), ("plain", "value")))
            + "\ninclude hi + lo + first + last + plain > 0\n")
    evaluate(con, plan_from_text(text))
    picked = dict(con.execute("SELECT question, note_id FROM patient_answers").fetchall())
    # highest 3.0 (n3), lowest 1.0 (n2), first by date n1, last by date n2, a plain value is the latest.
    assert picked == {"hi": "n3", "lo": "n2", "first": "n1", "last": "n2", "plain": "n2"}


def test_the_rank_across_notes_at_its_edges() -> None:
    """The patient's pick by note time (one packed integer in the SQL): a dated note beats an undated
    one whichever way the order runs, a date before 1970 sorts as a date, the same day falls back to
    the corpus row, and a boolean's present beats any absent, however late."""
    con = duckdb.connect()
    con.execute("CREATE TABLE notes AS SELECT * FROM (VALUES "
                "('u1', 'P', NULL::DATE, 1), ('old', 'P', DATE '1965-05-01', 2), ('u2', 'P', NULL::DATE, 3), "
                "('d1', 'P', DATE '2024-01-01', 4), ('d2', 'P', DATE '2024-01-01', 5), "
                "('x1', 'Q', NULL::DATE, 1), ('x2', 'Q', NULL::DATE, 2)) t(note_id, patient_id, note_date, source_row)")
    con.execute("CREATE TABLE answers AS SELECT note_id, q AS question, q AS answer_key, "
                "CASE WHEN q = 'mi' THEN (note_id IN ('old', 'x1'))::DOUBLE ELSE 1.0 END AS value, "
                "CASE WHEN q = 'mi' THEN NULL ELSE 'mg/dL' END AS unit, FALSE AS na, NULL::VARCHAR AS error "
                "FROM notes, (VALUES ('first'), ('last'), ('mi')) q(q)")
    text = ('numeric first first "creatinine" in mg/dL\nnumeric last last "creatinine" in mg/dL\n'
            'boolean mi "a myocardial infarction"\ninclude first + last > 0 and mi\n')
    evaluate(con, plan_from_text(text))
    picked = {(p, q): n for p, q, n in con.execute("SELECT patient_id, question, note_id FROM patient_answers").fetchall()}
    assert picked == {("P", "first"): "old", ("P", "last"): "d2", ("P", "mi"): "old",
                      ("Q", "first"): "x1", ("Q", "last"): "x2", ("Q", "mi"): "x1"}


def _months_before(day: date, months: int) -> date:
    """`day` less a number of calendar months, the day clamped to the month's end (as DuckDB does)."""
    import calendar

    total = day.year * 12 + day.month - 1 - months
    year, month = divmod(total, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


RANDOM_TEXT = ('boolean mi "a myocardial infarction"\nnumeric creat last "serum creatinine" in mg/dL\n'
               'numeric hb lowest "hemoglobin" in g/dL\n'
               'include mi within 6 months or creat within 30 days > 2 or hb within 3 months < 10 or mi or creat > 1 or hb < 9\n')
RANDOM_WINDOWS = {1: ("mi", ("month", 6)), 2: ("creat", ("day", 30)), 3: ("hb", ("month", 3))}


def random_patients(seed: int) -> tuple[duckdb.DuckDBPyConnection, list[tuple], list[tuple]]:
    """A store of seeded random patients for RANDOM_TEXT: dated and undated notes, and answers with values,
    errors, NA, a unit that does not convert, or no row. Returns the connection, the notes and the answers."""
    import random

    rng = random.Random(seed)
    notes, answers = [], []
    for p in range(60):
        for _ in range(rng.randint(1, 6)):
            row = len(notes) + 1
            when = None if p == 0 or rng.random() < 0.1 else date(2022, 1, 1) + timedelta(days=rng.randrange(730))
            notes.append((f"n{row}", f"P{p}", when, row))  # P0: undated, so no window holds a note
            for q in ("mi", "creat", "hb"):
                r = rng.random()
                if r < 0.1:
                    continue  # no answer row: 'missing'
                unit = None if q == "mi" else ("kg" if r < 0.15 else {"creat": "mg/dL", "hb": "g/dL"}[q])
                value = float(rng.random() < 0.3) if q == "mi" else round(rng.uniform(0.5, 14), 1)
                error = "boom" if 0.15 <= r < 0.2 else None
                na = 0.2 <= r < 0.5
                answers.append((f"n{row}", q, q, None if na or error else value, unit, na, error))
    con = duckdb.connect()
    con.execute("CREATE TABLE notes (note_id VARCHAR, patient_id VARCHAR, note_date DATE, source_row BIGINT)")
    con.executemany("INSERT INTO notes VALUES (?, ?, ?, ?)", notes)
    con.execute("CREATE TABLE answers (note_id VARCHAR, question VARCHAR, answer_key VARCHAR, value DOUBLE, "
                "unit VARCHAR, na BOOLEAN, error VARCHAR)")
    con.executemany("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)", answers)
    return con, notes, answers


def test_the_patient_pick_matches_a_plain_reading_of_the_rule() -> None:
    """Seeded random patients, checked against the rule as the docs state it, written plainly here.

    Each question and window: of the patient's notes (inside the window: dated from its start to the
    last note's date), those with a value decide: booleans present over absent, numbers by the
    question's order, then the later note (dated over undated, then by corpus row). With no value,
    the reason is the worst of the notes' (error, unit, na, missing), or 'window' with no note inside.
    The SQL packs all of this into one integer per note; this test is what keeps that honest."""
    con, notes, answers = random_patients(15)
    text, windows = RANDOM_TEXT, RANDOM_WINDOWS
    evaluate(con, plan_from_text(text))
    got = {(p, q, w): (n, v, r) for p, q, w, n, v, r in con.execute(
        "SELECT patient_id, question, window_id, note_id, converted, reason FROM patient_answers").fetchall()}

    by_note = {(a[0], a[1]): a for a in answers}
    expected = {}
    for p in {n[1] for n in notes}:
        mine = [n for n in notes if n[1] == p]
        dated = [n[2] for n in mine if n[2] is not None]
        index = max(dated) if dated else None
        for w, (q, span) in [(0, (q, None)) for q in ("mi", "creat", "hb")] + list(windows.items()):
            if span is None:
                read = mine
            else:
                start = None if index is None else (
                    index - timedelta(days=span[1]) if span[0] == "day" else _months_before(index, span[1]))
                read = [n for n in mine if index is not None and n[2] is not None and start <= n[2] <= index]
            valued, reasons = [], []
            for note_id, _, when, row in read:
                a = by_note.get((note_id, q))
                reason = ("missing" if a is None else "error" if a[6] else "na" if a[5] else
                          "unit" if a[4] == "kg" else None)
                if reason:
                    reasons.append(reason)
                else:
                    later = (when is not None, when or date.min, row)
                    order = {"mi": (a[3], later), "creat": later, "hb": (-a[3], later)}[q]
                    valued.append((order, note_id, a[3]))
            if valued:
                _, note_id, value = max(valued)
                expected[(p, q, w)] = (note_id, value, None)
            elif not read:
                expected[(p, q, w)] = (None, None, "window")
            else:
                worst = min(reasons, key=["error", "unit", "na", "missing"].index)
                expected[(p, q, w)] = (None, None, worst)
    assert got == expected
    assert {r for _, _, r in got.values()} >= {None, "window", "na", "error", "unit", "missing"}


def test_deciding_the_notes_in_slices_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eligibility is decided a slice of notes at a time (so that a million notes fit in memory): every
    table and view it writes is the same, row for row, as when the whole store is one slice."""
    from crit.engine.eligibility import evaluate as evaluation

    outputs = ("note_decisions", "patient_decisions", "answer_values", "criteria", "eligibility", "attrition",
               "patient_answers", "patient_criteria", "patient_eligibility", "patient_attrition")

    def decided(cells: int) -> tuple[dict[str, list[tuple]], int]:
        monkeypatch.setattr(evaluation, "SLICE_CELLS", cells)
        con, notes, _ = random_patients(16)
        summary = evaluate(con, plan_from_text(RANDOM_TEXT))
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in outputs}, summary.notes

    whole, notes = decided(10 ** 9)
    sliced, _ = decided(3 * 7)  # 7 notes of 3 questions a slice: dozens of slices
    assert notes >= 100 and whole["note_decisions"] and whole["patient_decisions"]
    assert sliced == whole


def test_a_patient_sex_is_the_one_their_notes_agree_on() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE notes AS SELECT * FROM (VALUES ('a1', 'A', 'F'), ('a2', 'A', 'woman'), ('b1', 'B', 'female'), "
                "('b2', 'B', 'male')) t(note_id, patient_id, sex)")
    con.execute("CREATE TABLE answers AS SELECT note_id, 'af' AS question, 'k' AS answer_key, 1.0 AS value, NULL AS unit, "
                "FALSE AS na, NULL::VARCHAR AS error FROM notes")
    evaluate(con, plan_from_text('boolean af "atrial fibrillation"\ninclude "women": sex = female\n'))
    assert dict(con.execute("SELECT patient_id, status FROM patient_criteria").fetchall()) == {"A": "met", "B": "unknown"}


# ---- reading patients and dates ---------------------------------------------------------------


def test_dates_are_read_or_the_row_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text("note_id,patient_id,date,text\n"
                    "n1,P1,2024-01-02,a note\n"
                    "n2,P1,2024-01-03T10:30:00,a note\n"
                    "n3,P2,03/04/2024,a note\n"
                    "n4,,2024-01-05,a note\n"
                    "n5,P2,,a note\n")
    notes, bad = read_notes(path)
    assert [(n.note_id, n.patient_id, n.note_date) for n in notes] == [
        ("n1", "P1", date(2024, 1, 2)), ("n2", "P1", date(2024, 1, 3)), ("n5", "P2", None)]
    assert [(b.note_id, b.reason) for b in bad] == [
        ("n3", "note date (column 'date') '03/04/2024' is not a date written YYYY-MM-DD"),
        ("n4", "no patient id (column 'patient_id' is empty)"),
    ]
    with pytest.raises(ValueError):
        parse_date("2024-13-01")


def test_n2c2_files_split_into_dated_records() -> None:
    records = n2c2.records(N2C2 / "p02.xml")
    assert [(r.number, r.date) for r in records] == [(1, "2066-02-10"), (2, "2068-11-01"), (3, "2069-05-01")]
    assert records[1].text.startswith("Record date: 2068-11-01") and "*****" not in records[1].text
    assert n2c2.tags(N2C2 / "p02.xml")["MI-6MOS"] == "not met"
    notes, bad = read_notes(N2C2)
    assert bad == [] and [(n.note_id, n.patient_id) for n in notes][:2] == [("p01-1", "p01"), ("p01-2", "p01")]


def test_an_n2c2_file_with_entities_is_refused(tmp_path: Path) -> None:
    (tmp_path / "evil.xml").write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
                                       "<PatientMatching><TEXT>&a;</TEXT></PatientMatching>")
    shutil.copy(N2C2 / "p01.xml", tmp_path / "p01.xml")
    notes, bad = read_notes(tmp_path)
    assert [n.patient_id for n in notes] == ["p01", "p01"]
    assert [(b.where, b.reason) for b in bad] == [
        ("evil.xml", "not an n2c2 patient file: declares a DOCTYPE or entities, which the n2c2 layout never does")]


def test_the_n2c2_fixture_runs_and_matches_its_tags(tmp_path: Path) -> None:
    db = tmp_path / "n2c2.duckdb"
    result = CliRunner().invoke(cli, ["run", str(ROOT / "criteria" / "n2c2_2018.crit"), str(N2C2), "--db", str(db),
                                      "--backend", "rules"])
    assert result.exit_code == 0, result.output
    assert "patients" in result.output
    con = duckdb.connect(str(db))
    got = {(p, label): status for p, label, status in
           con.execute("SELECT patient_id, label, status FROM patient_criteria").fetchall()}
    gold = {(f.stem, label): met for f in sorted(N2C2.glob("*.xml")) for label, met in n2c2.tags(f).items()}
    assert len(gold) == 3 * 13
    assert got == gold


# ---- the language ------------------------------------------------------------------------------


def test_every_new_form_checks_and_compiles_to_its_pinned_sql() -> None:
    """tests/fixtures/forms/patients.crit uses every form of the patient layer; its SQL is pinned beside it.
    Regenerate after a deliberate change: CRIT_UPDATE_GOLDEN=1 python -m pytest tests/test_patients.py -k new_form"""
    import os

    from crit.engine.eligibility.compile import rules_sql

    result = CliRunner().invoke(cli, ["check", str(FORMS / "patients.crit")])
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(cli, ["compile", str(FORMS / "patients.crit")])
    assert "windows (read from note dates, never asked): mi within 6 months, stroke within 1 year" in shown.output
    plan = load_plan(FORMS / "patients.crit")
    assert [w.label for w in plan.windows] == ["6 months", "1 year", "30 days", "2 weeks"]
    assert plan.index == "first note"
    sql = rules_sql(plan).replace(str(FORMS), "tests/fixtures/forms")
    golden = FORMS / "patients.sql"
    if os.environ.get("CRIT_UPDATE_GOLDEN") == "1":
        golden.write_text(sql)
    assert sql == golden.read_text()


def test_a_window_edit_changes_the_rules_not_the_questions() -> None:
    before = load_plan(PATIENTS / "screen.crit")
    after = plan_from_text((PATIENTS / "screen.crit").read_text().replace("within 6 months", "within 3 months"))
    assert after.rules_fingerprint != before.rules_fingerprint
    assert [q.fingerprint for q in after.questions] == [q.fingerprint for q in before.questions]


def test_the_report_draws_each_patient_timeline(tmp_path: Path) -> None:
    screen(tmp_path, "report", patient_column="patient")
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "report.duckdb"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    start = html.index('data-patient="P4"')
    p4 = html[start:html.index("</details>", start)]
    # The window drawn (a band from its start to the index date) and the evidence that decided it.
    assert "<title>2024-03-30 to 2024-04-30</title>" in p4
    assert "stroke</code> within 1 month (from 2024-03-30)" in p4
    assert "present" in p4 and "p4-admission</code> (2024-04-15): <q>She was admitted with an acute stroke.</q>" in p4
    assert "<title>index date 2024-04-30</title>" in p4
    # Notes by date: P4's three notes, as dots.
    assert p4.count("<circle") == 3
    assert 'id="patient-cards"' in html


def test_a_dry_run_counts_patients_and_dated_notes(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(PATIENTS / "screen.crit"), str(PATIENTS / "notes.jsonl"), "--db",
                                      str(tmp_path / "dry.duckdb"), "--dry-run", "--patient-column", "patient"])
    assert result.exit_code == 0, result.output
    assert "7 patients; 14 of 15 notes dated" in result.output
    assert not (tmp_path / "dry.duckdb").exists()


def test_shards_split_a_patient_and_the_merge_puts_them_together(tmp_path: Path) -> None:
    """Sharding is by note id, so one patient's notes land in different shards; the merge evaluates
    the rules again over all the answers, and each patient is whole again."""
    plan = load_plan(PATIENTS / "screen.crit")
    from crit.engine.merge import merge_stores
    from crit.engine.notes.shards import parse_shard

    shards = []
    for i in (1, 2):
        db = tmp_path / f"shard-{i}.duckdb"
        run(plan, PATIENTS / "notes.jsonl", db, RulesFactory(), columns=NoteColumns(patient_column="patient"), shard=parse_shard(f"{i}/2"))
        shards.append(db)
    split = {duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM notes").fetchone()[0] for db in shards}
    assert 0 not in split  # both shards got notes
    merged = tmp_path / "merged.duckdb"
    assert merge_stores(merged, shards).evaluated
    _, whole = screen(tmp_path, "whole", patient_column="patient")
    query = "SELECT patient_id, status, deciding FROM patient_eligibility ORDER BY patient_id"
    assert duckdb.connect(str(merged)).execute(query).fetchall() == whole.execute(query).fetchall()


def test_windows_over_undated_notes_say_so(tmp_path: Path) -> None:
    notes = tmp_path / "notes.jsonl"
    notes.write_text(json.dumps({"note_id": "n1", "text": "Admitted with acute stroke."}) + "\n")
    result = CliRunner().invoke(cli, ["run", str(PATIENTS / "screen.crit"), str(notes), "--db",
                                      str(tmp_path / "undated.duckdb"), "--backend", "rules"])
    assert result.exit_code == 0, result.output
    assert "no note has a date" in result.output and "--date-column" in result.output
