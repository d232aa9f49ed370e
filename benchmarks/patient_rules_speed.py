"""Benchmark: the rules over patients (many dated notes each, time windows) against the same rules per note.

Builds, inside DuckDB, a corpus of synthetic patients with dated notes (default
1,000,000 notes of 100,000 patients, 10 notes each over four years) answering the
three questions of a small criteria file with three windows, then times `evaluate`:

- per note: the notes carry no patient id, so each note is screened alone (windows
  read the note's own date);
- per patient: the same notes and answers with patient ids, so the script also
  combines every patient's notes, draws each window back from the patient's last
  note, and decides eligibility per patient.

Both runs go through the one evaluator (crit.engine.eligibility.evaluate); the ratio is the cost
of the patient layer. The per-note run is measured in the same process, on the
same answers, right before.

    python benchmarks/patient_rules_speed.py [--notes 1000000] [--per-patient 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import duckdb

from crit.engine.eligibility import plan_from_text
from crit.engine.eligibility.evaluate import evaluate

CRITERIA = """
trial BENCH-PATIENTS "patients, dates and windows"
boolean mi "a myocardial infarction"
boolean stroke "a stroke"
numeric creat last "serum creatinine" in mg/dL
exclude "recent MI":       mi within 6 months
exclude "recent stroke":   stroke within 1 month
exclude "renal, recent":   creat within 30 days > 2.5 mg/dL
include "creatinine known": creat < 4 mg/dL
"""


def build(con: duckdb.DuckDBPyConnection, notes: int, per_patient: int) -> int:
    """Notes with dates and patients, and their answers; returns the number of answer rows."""
    # Draws by hash, not random(): a parallel scan would hand random() out in another order each run.
    # note_id is the key, as in a crit store (so the rules need not check it for duplicates).
    con.execute("CREATE TABLE notes (note_id VARCHAR PRIMARY KEY, patient_id VARCHAR, note_date DATE, "
                "index_date DATE, source_row BIGINT, sex VARCHAR)")
    con.execute(
        "INSERT INTO notes SELECT 'n' || i AS note_id, "
        "'p' || (i // ?) AS patient_id, DATE '2020-01-01' + CAST(hash(i, 'date') % 1460 AS INTEGER) AS note_date, "
        "NULL::DATE AS index_date, i + 1 AS source_row, "
        "CASE WHEN hash(i, 'sex') % 2 = 0 THEN 'female' ELSE 'male' END AS sex FROM range(?) t(i)",
        [per_patient, notes],
    )
    con.execute(
        """CREATE TABLE answers AS
        WITH q(question) AS (VALUES ('mi'), ('stroke'), ('creat')),
        draws AS (SELECT n.note_id, q.question, (hash(n.note_id, q.question, 'r') % 10000) / 10000 AS r,
                         (hash(n.note_id, q.question, 'v') % 10000) / 10000 AS v FROM notes n CROSS JOIN q)
        SELECT note_id, question, question || '-key' AS answer_key,
            CASE WHEN r < 0.6 THEN NULL
                 WHEN question = 'creat' THEN round(0.5 + v * 3.5, 2)
                 WHEN v < 0.1 THEN 1.0 ELSE 0.0 END AS value,
            CASE WHEN question = 'creat' AND r >= 0.6 THEN 'mg/dL' END AS unit,
            r < 0.6 AS na, NULL::VARCHAR AS error, NULL::VARCHAR AS candidates,
            NULL::BIGINT AS span_start, NULL::BIGINT AS span_end
        FROM draws"""
    )
    row = con.execute("SELECT count(*) FROM answers").fetchone()
    return int(row[0]) if row else 0


def best_of(con: duckdb.DuckDBPyConnection, plan, repeat: int) -> tuple[float, object]:
    times, summary = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        summary = evaluate(con, plan)
        times.append(time.perf_counter() - started)
    return min(times), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=1_000_000)
    parser.add_argument("--per-patient", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    plan = plan_from_text(CRITERIA, "bench.crit")
    con = duckdb.connect()
    started = time.perf_counter()
    rows = build(con, args.notes, args.per_patient)
    print(f"built {args.notes:,} notes of {args.notes // args.per_patient:,} patients, {rows:,} answer rows "
          f"in {time.perf_counter() - started:.1f} s")

    # Per note: the same notes with no patient id (each note is screened alone).
    con.execute("ALTER TABLE notes RENAME COLUMN patient_id TO kept_patient_id")
    con.execute("ALTER TABLE notes ADD COLUMN patient_id VARCHAR")
    per_note, note_summary = best_of(con, plan, args.repeat)
    print(f"per note:    {per_note:.2f} s  (best of {args.repeat})  {note_summary.notes:,} notes: "
          f"{note_summary.eligible:,} eligible, {note_summary.ineligible:,} ineligible, {note_summary.unknown:,} unknown")

    con.execute("UPDATE notes SET patient_id = kept_patient_id")
    per_patient, patient_summary = best_of(con, plan, args.repeat)
    p = patient_summary.by_patient
    assert p is not None
    print(f"per patient: {per_patient:.2f} s  (best of {args.repeat})  {p.patients:,} patients: "
          f"{p.eligible:,} eligible, {p.ineligible:,} ineligible, {p.unknown:,} unknown")
    print(f"ratio per patient / per note: {per_patient / per_note:.2f}x; "
          f"{'under' if per_patient < 3 else 'OVER'} the 3 s target")


if __name__ == "__main__":
    main()
