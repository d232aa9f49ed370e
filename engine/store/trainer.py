"""The trainer's tables: the synthetic Q/A database, and the scores `crit eval --out` appends.

- synth.duckdb (a file of its own): notes a teacher read, the pairs it wrote and the ones it
  dropped; crit.trainer writes it (synth, teach, generate) and reads it (select).
- `eval` and `eval_answers`: metrics per source, question and metric, and the answers of the
  direct runs, appended to the file `crit eval --out` names.

Declared here with the store's other tables, so every table crit keeps has its DDL in
crit.engine.store.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

import duckdb

from crit.engine.sql import OFFLINE

SYNTH_SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (note_id VARCHAR PRIMARY KEY, text VARCHAR, text_sha256 VARCHAR,
    teacher VARCHAR, prompt_version VARCHAR, done_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS pairs (note_id VARCHAR, type VARCHAR, question VARCHAR, answer VARCHAR,
    unit VARCHAR, source VARCHAR, span_start INTEGER, span_end INTEGER, section VARCHAR,
    explanation VARCHAR, difficulty INTEGER, teacher VARCHAR, prompt_version VARCHAR, created_at TIMESTAMPTZ,
    question_json VARCHAR);
CREATE TABLE IF NOT EXISTS dropped (note_id VARCHAR, type VARCHAR, reason VARCHAR, raw VARCHAR,
    teacher VARCHAR, prompt_version VARCHAR, created_at TIMESTAMPTZ);
"""


def open_db(path: str) -> duckdb.DuckDBPyConnection:
    """The synth database, its tables created (an older one gains the question_json column)."""
    con = duckdb.connect(path, config=OFFLINE)
    con.execute(SYNTH_SCHEMA)
    con.execute("ALTER TABLE pairs ADD COLUMN IF NOT EXISTS question_json VARCHAR")
    return con


def store_note(con: Any, note_id: str, text: str, rows: list[dict[str, Any]], drops: list[tuple[str, str, str]],
               teacher: str, now: datetime, prompt_version: str) -> None:
    """One note with its pairs and dropped pairs, in one transaction: a note is either fully stored
    and marked done, or not at all."""
    con.execute("BEGIN")
    for r in rows:
        con.execute(
            "INSERT INTO pairs VALUES ($note_id, $type, $question, $answer, $unit, $source, $span_start,"
            " $span_end, $section, $explanation, $difficulty, $teacher, $prompt_version, $created_at, $question_json)",
            r,
        )
    for kind, reason, raw in drops:
        con.execute("INSERT INTO dropped VALUES (?, ?, ?, ?, ?, ?, ?)", [note_id, kind, reason, raw, teacher, prompt_version, now])
    con.execute(
        "INSERT INTO notes VALUES (?, ?, ?, ?, ?, ?)",
        [note_id, text, hashlib.sha256(text.encode()).hexdigest(), teacher, prompt_version, now],
    )
    con.execute("COMMIT")


def write_eval(path: str, results: list[dict[str, Any]], answer_rows: list[dict[str, Any]]) -> None:
    """Append the metrics (and the direct runs' answers) to DuckDB tables `eval` and `eval_answers`."""
    now = datetime.now(timezone.utc)
    con = duckdb.connect(path, config=OFFLINE)
    try:
        con.execute(
            "CREATE TABLE IF NOT EXISTS eval (evaluated_at TIMESTAMPTZ, source VARCHAR, question VARCHAR,"
            " metric VARCHAR, value DOUBLE, ci_low DOUBLE, ci_high DOUBLE, n INTEGER)"
        )
        con.execute(
            "CREATE TABLE IF NOT EXISTS eval_answers (evaluated_at TIMESTAMPTZ, source VARCHAR, identity VARCHAR,"
            " note_id VARCHAR, question VARCHAR, raw VARCHAR, value DOUBLE, na BOOLEAN, error VARCHAR, latency_s DOUBLE)"
        )
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO eval VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [[now, r["source"], r["question"], r["metric"], r["value"], r["ci_low"], r["ci_high"], r["n"]] for r in results],
        )
        if answer_rows:
            con.executemany(
                "INSERT INTO eval_answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [[now, r["source"], r["identity"], r["note_id"], r["question"], r["raw"], r["value"], r["na"],
                  r["error"], r["latency_s"]] for r in answer_rows],
            )
        con.execute("COMMIT")
    finally:
        con.close()
