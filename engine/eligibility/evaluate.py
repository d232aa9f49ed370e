"""Rules, run: evaluate a plan's compiled SQL (crit.engine.eligibility.compile) over a store's answers.

``evaluate`` loads the script's inputs (the chosen answer keys, the questions, one
unit map per reported unit, the notes with their sex, patient and dates, and every
candidate value), runs the script in one transaction (the statement that reads the notes' answers
once per slice of SLICE_CELLS answers, so that memory stays bounded however many notes), and records
what it produced
in the store's ``evaluation`` table. A plan error leaves the store untouched. No
model is involved: editing a threshold or a window and calling ``evaluate`` again
re-decides every note and patient from the same answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import duckdb
from pydantic import BaseModel, ConfigDict

from crit.engine.eligibility.compile import (
    SLICE,
    SLICES,
    Tables,
    analyte,
    decision_statements,
    slice_statements,
    statements,
)
from crit.engine.notes.columns import FEMALE, MALE
from crit.engine.sql import ident, literal, rollback
from crit.engine.store.schema import ELIGIBILITY_TABLES, ELIGIBILITY_VIEWS, EVALUATION_SQL
from crit.grammar import ast, units
from crit.grammar.errors import CritError
from crit.grammar.plan import Plan
from crit.grammar.questions import SEX_PHRASE, Question

__all__ = ["EvaluationSummary", "PatientCounts", "evaluate"]

# Columns of the store's answers table the script reads; other columns are ignored.
ANSWER_COLUMNS = ("note_id", "question", "answer_key", "value", "unit", "na", "error")


class PatientCounts(BaseModel):
    """Eligibility per patient (notes that carry a patient id, combined)."""

    model_config = ConfigDict(extra="forbid")

    patients: int
    eligible: int
    ineligible: int
    unknown: int


class EvaluationSummary(BaseModel):
    """What one evaluation produced (the same counts are in the store's `evaluation` table)."""

    model_config = ConfigDict(extra="forbid")

    rules_fingerprint: str
    trial: str | None
    notes: int
    eligible: int
    ineligible: int
    unknown: int
    criteria: int
    seconds: float
    by_patient: PatientCounts | None = None  # None when no note names a patient
    dated_notes: int = 0  # notes with a date: the only ones a window reads


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str] | None:
    """The columns of a table or view in the current schema, None when there is none."""
    found = con.execute(
        "SELECT 1 FROM duckdb_tables() WHERE table_name = ? AND schema_name = current_schema() "
        "UNION ALL SELECT 1 FROM duckdb_views() WHERE view_name = ? AND schema_name = current_schema()",
        [table, table],
    ).fetchone()
    if found is None:
        return None
    description = con.execute(f"SELECT * FROM {ident(table)} LIMIT 0").description or []
    return {d[0] for d in description}


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple[Any, ...]]) -> None:
    """Insert a few rows in one statement (executemany costs a round trip per row)."""
    if rows:
        one = "(" + ", ".join("?" * len(rows[0])) + ")"
        con.execute(f"INSERT INTO {table} VALUES " + ", ".join([one] * len(rows)), [v for r in rows for v in r])


def _unique_note_ids(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the notes table declares note_id its key (a crit store's does), so no note is listed twice."""
    row = con.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'notes' AND schema_name = current_schema() "
        "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE') AND constraint_column_names = ['note_id']"
    ).fetchone()
    return bool(row and row[0])


def _needed(plan: Plan) -> list[str]:
    """Questions some let or criterion reads, in plan order (the sex question is decided apart)."""
    names: set[str] = set()
    for e in [l.expr for l in plan.lets] + [c.expr for c in plan.criteria]:
        for node in ast.walk(e):
            if isinstance(node, ast.Name):
                names.add(node.name)
            elif isinstance(node, ast.BoundRef):
                names.add(node.name)
    return [q.name for q in plan.questions if q.name in names and q.phrase != SEX_PHRASE]


def _describe(q: Question) -> str:
    words = " ".join(w for w in (q.order if q.order not in (None, "value") else None, q.phrase) if w)
    return f"{words}, {q.unit}" if q.unit else words


def _load_inputs(con: duckdb.DuckDBPyConnection, plan: Plan, answer_keys: Mapping[str, str] | None) -> None:
    answer_cols = _columns(con, "answers")
    if answer_cols is None:
        raise CritError("the store has no answers table; run `crit run` first")
    lacking = [c for c in ANSWER_COLUMNS if c not in answer_cols]
    if lacking:
        raise CritError(f"the store's answers table lacks column(s) {', '.join(lacking)}")

    note_cols = _columns(con, "notes")
    if note_cols is None:
        note_cols = set()
        source = "(SELECT DISTINCT note_id FROM answers)"
    elif "note_id" not in note_cols:
        raise CritError("the store's notes table has no note_id column")
    else:
        source = "notes"

    def column(name: str, sql_type: str) -> str:
        # A store of schema 1 or 2 has no patients or dates: every note is its own, undated.
        return f"CAST({ident(name)} AS {sql_type}) AS {name}" if name in note_cols else f"NULL::{sql_type} AS {name}"

    notes_sql = (
        "SELECT CAST(note_id AS VARCHAR) AS note_id, "
        + ", ".join(column(c, t) for c, t in (("sex", "VARCHAR"), ("patient_id", "VARCHAR"), ("note_date", "DATE"),
                                              ("index_date", "DATE"), ("source_row", "BIGINT")))
        + f" FROM {source}"
    )
    con.execute(f"CREATE OR REPLACE TEMP VIEW {Tables.notes} AS {notes_sql}")
    if source == "notes" and not _unique_note_ids(con):  # a store's notes table has note_id as its key
        dup = con.execute(f"SELECT note_id FROM {Tables.notes} GROUP BY note_id HAVING count(*) > 1 LIMIT 1").fetchone()
        if dup:
            raise CritError(f"the notes table lists note_id {dup[0]!r} more than once")

    spans = ", ".join(c if c in answer_cols else f"NULL::BIGINT AS {c}" for c in ("span_start", "span_end"))
    con.execute(f"CREATE OR REPLACE TEMP VIEW {Tables.answers} AS SELECT {', '.join(ANSWER_COLUMNS)}, {spans} FROM answers")

    use_all = answer_keys is None
    con.execute(f"CREATE OR REPLACE TEMP TABLE {Tables.questions} (question VARCHAR, kind VARCHAR, cap DOUBLE, ord VARCHAR, pos INTEGER)")
    _insert(con, Tables.questions, [(q.name, q.kind, q.cap, q.order or "value", i) for i, q in enumerate(plan.questions, 1)])
    # The answers to read, as (question, answer_key) pairs so that every join below is an equality.
    con.execute(f"CREATE OR REPLACE TEMP TABLE {Tables.keys} (question VARCHAR, answer_key VARCHAR)")
    if answer_keys is not None:
        _insert(con, Tables.keys, [(q.name, answer_keys[q.name]) for q in plan.questions if q.name in answer_keys])
    # One scan of the answers finds the keys (when every key is read), which questions have answers,
    # and every unit reported.
    read = (f"SEMI JOIN {Tables.questions} q ON a.question = q.question" if use_all else
            f"SEMI JOIN {Tables.keys} k ON a.question = k.question AND a.answer_key = k.answer_key")
    seen = con.execute(f"SELECT DISTINCT a.question, a.answer_key, COALESCE(a.unit, '') FROM answers a {read}").fetchall()
    if use_all:
        _insert(con, Tables.keys, sorted({(q, k) for q, k, _ in seen}))
    # only_key: the question is read under this one key, so each note has at most one answer to it.
    con.execute(f"ALTER TABLE {Tables.keys} ADD COLUMN only_key BOOLEAN")
    con.execute(f"UPDATE {Tables.keys} k SET only_key = (SELECT count(*) = 1 FROM {Tables.keys} o WHERE o.question = k.question)")

    # A question a rule reads must have answers in the store; the sex question only when some note lacks a sex.
    needed = _needed(plan)
    if plan.needs_sex:
        unsexed = con.execute(
            f"SELECT count(*) FROM {Tables.notes} WHERE lower(trim(sex)) NOT IN "
            f"({', '.join(map(literal, MALE + FEMALE))}) OR sex IS NULL"
        ).fetchone()
        if unsexed and unsexed[0] > 0:
            needed.append("sex")
    answered = {q for q, _, _ in seen}
    for name in needed:
        if name not in answered:
            q = plan.question(name)
            under = "" if use_all else " under the current model"
            raise CritError(f"the store has no answers for question '{name}' ({_describe(q)}){under}; run `crit run` first")

    # Every value an answer lists (stores before schema 2 have no candidates column: none).
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {Tables.candidates} (note_id VARCHAR, question VARCHAR, answer_key VARCHAR, "
        "value DOUBLE, unit VARCHAR, span_start BIGINT, span_end BIGINT)"
    )
    if "candidates" in answer_cols:
        con.execute(
            f"INSERT INTO {Tables.candidates} SELECT note_id, question, answer_key, c.value, c.unit, c.span_start, c.span_end "
            "FROM (SELECT a.note_id, a.question, a.answer_key, unnest(from_json(a.candidates, "
            """'[{"value": "DOUBLE", "unit": "VARCHAR", "span_start": "BIGINT", "span_end": "BIGINT"}]')) AS c """
            "FROM answers a "
            f"JOIN {Tables.keys} k ON a.question = k.question AND a.answer_key = k.answer_key "
            "WHERE a.candidates IS NOT NULL AND a.error IS NULL) WHERE c.value IS NOT NULL"
        )

    # One linear map per distinct (numeric question, reported unit), computed here and joined in SQL.
    numeric = {q.name: q for q in plan.questions if q.kind == "numeric"}
    listed = con.execute(f"SELECT DISTINCT question, COALESCE(unit, '') FROM {Tables.candidates}").fetchall()
    reported = sorted({(q, u) for q, _, u in seen} | set(listed))
    maps = []
    for name, unit in ((q, u) for q, u in reported if q in numeric):
        q = numeric[name]
        if q.unit is None:  # a unitless question compares numbers as reported
            lin: units.Linear | None = units.IDENTITY
        elif not unit and q.name not in plan.unit_assumed and not units.has_no_dimension(q.unit):
            lin = None  # a bare number for a question in kg or °C: it might be pounds or Fahrenheit (reason unit)
        else:
            lin = units.linear(unit or None, q.unit, analyte(q), plan.conversions)
        maps.append((name, unit, lin.factor if lin else None, lin.offset if lin else None))
    con.execute(
        f'CREATE OR REPLACE TEMP TABLE {Tables.units} (question VARCHAR, unit_key VARCHAR, factor DOUBLE, "offset" DOUBLE)'
    )
    _insert(con, Tables.units, maps)


def _clear_outputs(con: duckdb.DuckDBPyConnection) -> None:
    """Drop what an earlier evaluation wrote under the names the script writes: a store of an older
    crit holds `criteria` and the other long tables as tables, where they are now views."""
    names = list(ELIGIBILITY_TABLES + ELIGIBILITY_VIEWS)
    for name, kind in con.execute(
        "SELECT table_name, 'TABLE' FROM duckdb_tables() WHERE schema_name = current_schema() "
        "AND NOT temporary AND list_contains(?, table_name) "
        "UNION ALL SELECT view_name, 'VIEW' FROM duckdb_views() WHERE schema_name = current_schema() "
        "AND NOT temporary AND list_contains(?, view_name)",
        [names, names],
    ).fetchall():
        con.execute(f"DROP {kind} {ident(name)}")


def _status_counts(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, int, int, int]:
    """(all, eligible, ineligible, unknown) rows of an eligibility table."""
    row = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE status = 'eligible'), "
        f"count(*) FILTER (WHERE status = 'ineligible'), count(*) FILTER (WHERE status = 'unknown') FROM {table}"
    ).fetchone()
    assert row is not None
    total, eligible, ineligible, unknown = (int(x) for x in row)
    return total, eligible, ineligible, unknown


# DuckDB's statistics propagation plans the patient table in time quadratic in the number of
# questions (1,000 questions: 16 s on 2 notes, 3 s without it); the script gains nothing from it.
_SLOW_OPTIMIZERS = ("statistics_propagation",)


def _disable_slow_optimizers(con: duckdb.DuckDBPyConnection) -> str:
    """Turn off the optimizers the script cannot afford; returns the connection's own setting, for
    `_restore_optimizers` (outside the transaction: an aborted one refuses SET)."""
    row = con.execute("SELECT current_setting('disabled_optimizers')").fetchone()
    before = str(row[0]) if row and row[0] else ""
    off = [o for o in before.split(",") if o.strip()] + [o for o in _SLOW_OPTIMIZERS if o not in before]
    con.execute(f"SET disabled_optimizers = {literal(','.join(off))}")
    return before


def _restore_optimizers(con: duckdb.DuckDBPyConnection, before: str) -> None:
    con.execute(f"SET disabled_optimizers = {literal(before)}")


# Notes x questions decided in one statement: the pivot of that many answers, a few hundred bytes each,
# fits in the store's memory cap while a run writes (crit.engine.run.STORE_MEMORY).
SLICE_CELLS = 1_000_000


def evaluate(
    con: duckdb.DuckDBPyConnection, plan: Plan, answer_keys: Mapping[str, str] | None = None
) -> EvaluationSummary:
    """Evaluate `plan` over the store's answers; (re)write answer_values, criteria, eligibility, attrition.

    `answer_keys` maps a question name to the answer_key of its answers under the
    current model (a question it omits has no answers); None uses every answer row
    of each question name. Raises CritError when a question the rules read has no
    answers at all. No model is involved: editing a threshold and calling this again
    re-decides every note from the same answers.
    """
    started = time.perf_counter()
    statements(plan)  # compile first: a plan error leaves the store untouched
    optimizers = _disable_slow_optimizers(con)
    con.execute("BEGIN TRANSACTION")
    try:
        _load_inputs(con, plan, answer_keys)
        _clear_outputs(con)
        row = con.execute(f"SELECT count(*) FROM {Tables.notes}").fetchone()
        slices = max(1, -(-(row[0] if row else 0) * max(1, len(plan.questions)) // SLICE_CELLS))
        con.execute(f"SET VARIABLE {SLICES} = {slices}")
        for i in range(slices):
            con.execute(f"SET VARIABLE {SLICE} = {i}")
            for sql in slice_statements(plan, append=i > 0):
                con.execute(sql)
        for sql in decision_statements(plan):
            con.execute(sql)
        notes, eligible, ineligible, unknown = _status_counts(con, "eligibility")
        patients = PatientCounts(**dict(zip(("patients", "eligible", "ineligible", "unknown"),
                                            _status_counts(con, "patient_eligibility"))))
        dated = con.execute(f"SELECT count(note_date) FROM {Tables.notes}").fetchone()
        con.execute(
            EVALUATION_SQL,
            [
                plan.rules_fingerprint,
                plan.trial_id,
                plan.source,
                datetime.now(timezone.utc),
                None if answer_keys is None else json.dumps(dict(answer_keys), sort_keys=True),
                notes,
                eligible,
                ineligible,
                unknown,
                patients.patients,
                patients.eligible,
                patients.ineligible,
                patients.unknown,
            ],
        )
        for view in Tables.views:
            con.execute(f"DROP VIEW IF EXISTS {view}")
        for table in Tables.tables:
            con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    finally:
        _restore_optimizers(con, optimizers)
    return EvaluationSummary(
        rules_fingerprint=plan.rules_fingerprint,
        trial=plan.trial_id,
        notes=notes,
        eligible=eligible,
        ineligible=ineligible,
        unknown=unknown,
        criteria=len(plan.criteria),
        seconds=round(time.perf_counter() - started, 3),
        by_patient=patients if patients.patients else None,
        dated_notes=int(dated[0]) if dated else 0,
    )
