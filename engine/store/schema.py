"""The store's tables: their DDL, the Arrow layout of each batch written to them, and their merge keys.

Every table crit keeps in a store is declared here, with the version that names its layout;
crit.engine.store writes and reads them, and crit.engine.eligibility fills the tables of its
decisions (ELIGIBILITY_TABLES, ELIGIBILITY_VIEWS) with the SQL it compiles.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa

from crit.engine.sql import OFFLINE

SCHEMA_VERSION = 5  # 2: answers.method and answers.candidates; the passages table. 3: notes' patients and dates.
# 4: answers.window is answers.chunk (a chunk of a long note; "window" is a time window of the rules).
# 5: answers.reading (how the reader read it) and answers.sure (whether the rules stand by it)

RunStatus = Literal["running", "done", "interrupted", "failed"]

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        status VARCHAR NOT NULL CHECK (status IN ('running', 'done', 'interrupted', 'failed')),
        crit_file VARCHAR,
        crit_hash VARCHAR,
        rules_fingerprint VARCHAR,
        trial_id VARCHAR,
        notes_source VARCHAR,
        model VARCHAR,
        adapter VARCHAR,
        backend VARCHAR,
        backend_identity VARCHAR,
        parameters JSON,
        notes_total BIGINT,
        notes_done BIGINT DEFAULT 0,
        bad_rows BIGINT DEFAULT 0,
        answers_new BIGINT DEFAULT 0,
        answers_cached BIGINT DEFAULT 0,
        errors BIGINT DEFAULT 0,
        message VARCHAR
    )""",
    # What each answer_key means: the question as asked, under which model.
    """CREATE TABLE IF NOT EXISTS questions (
        answer_key VARCHAR PRIMARY KEY,
        question VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        text VARCHAR NOT NULL,
        unit VARCHAR,
        question_fingerprint VARCHAR NOT NULL,
        backend_identity VARCHAR NOT NULL,
        answer_schema JSON
    )""",
    "CREATE TABLE IF NOT EXISTS run_questions (run_id VARCHAR, question VARCHAR, answer_key VARCHAR, "
    "PRIMARY KEY (run_id, question))",
    # The text stays here, in the user's own file: reports highlight evidence spans in it.
    """CREATE TABLE IF NOT EXISTS notes (
        note_id VARCHAR PRIMARY KEY,
        sex VARCHAR,
        text VARCHAR NOT NULL,
        text_hash VARCHAR NOT NULL,
        length BIGINT NOT NULL,
        source_row BIGINT
    )""",
    """CREATE TABLE IF NOT EXISTS answers (
        note_id VARCHAR NOT NULL,
        answer_key VARCHAR NOT NULL,
        question VARCHAR NOT NULL,
        question_fingerprint VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        value DOUBLE,
        unit VARCHAR,
        na BOOLEAN NOT NULL,
        source VARCHAR,
        span_start BIGINT,
        span_end BIGINT,
        grounded BOOLEAN NOT NULL,
        match VARCHAR,
        raw VARCHAR,
        latency_s DOUBLE,
        prompt_tokens BIGINT,
        output_tokens BIGINT,
        error VARCHAR,
        chunk BIGINT,
        created_at TIMESTAMPTZ NOT NULL,
        method VARCHAR,
        candidates JSON,
        reading VARCHAR,
        sure BOOLEAN,
        PRIMARY KEY (note_id, answer_key)
    )""",
    # A store of schema 1 gains the columns of 2 (its answers were all the model's).
    "ALTER TABLE answers ADD COLUMN IF NOT EXISTS method VARCHAR DEFAULT 'model'",
    "ALTER TABLE answers ADD COLUMN IF NOT EXISTS candidates JSON",
    # Schema 5: the reader's reading class and whether the rules are sure of it (NULL for a model's answer).
    "ALTER TABLE answers ADD COLUMN IF NOT EXISTS reading VARCHAR",
    "ALTER TABLE answers ADD COLUMN IF NOT EXISTS sure BOOLEAN",
    # The .crit text a run compiled (schema 2): reports and merges read the plan from the store.
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS crit_source VARCHAR",
    # Schema 3: the patient a note is about and its dates (the rules' patient layer and windows read them).
    "ALTER TABLE notes ADD COLUMN IF NOT EXISTS patient_id VARCHAR",
    "ALTER TABLE notes ADD COLUMN IF NOT EXISTS note_date DATE",
    "ALTER TABLE notes ADD COLUMN IF NOT EXISTS index_date DATE",
    # Why a question was or was not asked of a note: the sentences that mention it, with
    # spans into notes.text. A (note, answer_key) with no rows here was answered by the gate.
    """CREATE TABLE IF NOT EXISTS passages (
        note_id VARCHAR NOT NULL,
        answer_key VARCHAR NOT NULL,
        question VARCHAR NOT NULL,
        passage INTEGER NOT NULL,
        span_start BIGINT NOT NULL,
        span_end BIGINT NOT NULL,
        term VARCHAR NOT NULL,
        section VARCHAR,
        PRIMARY KEY (note_id, answer_key, passage)
    )""",
    "CREATE OR REPLACE VIEW latest_run AS SELECT * FROM runs ORDER BY started_at DESC LIMIT 1",
    # The answers the latest run's questions use (another model's answers stay in `answers`).
    """CREATE OR REPLACE VIEW latest_answers AS
        SELECT a.* FROM answers a
        JOIN run_questions rq ON rq.answer_key = a.answer_key
        WHERE rq.run_id = (SELECT run_id FROM latest_run)""",
]

# Arrow layout of one batch of answers; column order is the INSERT's.
ANSWER_ARROW = pa.schema(
    [
        ("note_id", pa.string()),
        ("answer_key", pa.string()),
        ("question", pa.string()),
        ("question_fingerprint", pa.string()),
        ("run_id", pa.string()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("na", pa.bool_()),
        ("source", pa.string()),
        ("span_start", pa.int64()),
        ("span_end", pa.int64()),
        ("grounded", pa.bool_()),
        ("match", pa.string()),
        ("raw", pa.string()),
        ("latency_s", pa.float64()),
        ("prompt_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("error", pa.string()),
        ("chunk", pa.int64()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("method", pa.string()),
        ("candidates", pa.string()),
        ("reading", pa.string()),
        ("sure", pa.bool_()),
    ]
)

NOTE_ARROW = pa.schema(
    [
        ("note_id", pa.string()),
        ("sex", pa.string()),
        ("text", pa.string()),
        ("text_hash", pa.string()),
        ("length", pa.int64()),
        ("source_row", pa.int64()),
        ("patient_id", pa.string()),
        ("note_date", pa.date32()),
        ("index_date", pa.date32()),
    ]
)


PASSAGE_ARROW = pa.schema(
    [
        ("note_id", pa.string()),
        ("answer_key", pa.string()),
        ("question", pa.string()),
        ("passage", pa.int32()),
        ("span_start", pa.int64()),
        ("span_end", pa.int64()),
        ("term", pa.string()),
        ("section", pa.string()),
    ]
)


READ_ONLY_CONFIG = {**OFFLINE, "enable_external_access": False, "lock_configuration": True}


# Columns renamed since an older schema: (table, old name) -> new name. A store is migrated when it is
# opened for writing; a shard of an older schema is read with the new names when it is merged.
RENAMED_COLUMNS: dict[tuple[str, str], str] = {("answers", "window"): "chunk"}

# Tables a shard contributes, each with the key that makes a row the same row.
MERGED_TABLES: tuple[tuple[str, str], ...] = (
    ("runs", "run_id"),
    ("questions", "answer_key"),
    ("run_questions", "run_id, question"),
    ("notes", "note_id"),
    ("answers", "note_id, answer_key"),
    ("passages", "note_id, answer_key, passage"),
)


# What crit.engine.eligibility writes into a store: its two decided tables (one row per note, one per
# patient) and the views that read them. Each evaluation drops and writes them again.
ELIGIBILITY_TABLES: tuple[str, ...] = ("note_decisions", "patient_decisions")
ELIGIBILITY_VIEWS: tuple[str, ...] = ("answer_values", "criteria", "eligibility", "attrition",
                                      "patient_answers", "patient_criteria", "patient_eligibility", "patient_attrition")

# The record of the last evaluation: which rules, over which answers, when, and what they decided.
EVALUATION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("rules_fingerprint", "VARCHAR"), ("trial", "VARCHAR"), ("source", "VARCHAR"), ("evaluated_at", "TIMESTAMPTZ"),
    ("answer_keys", "VARCHAR"), ("notes", "BIGINT"), ("eligible", "BIGINT"), ("ineligible", "BIGINT"),
    ("unknown", "BIGINT"), ("patients", "BIGINT"), ("patients_eligible", "BIGINT"),
    ("patients_ineligible", "BIGINT"), ("patients_unknown", "BIGINT"),
)
EVALUATION_SQL = "CREATE OR REPLACE TABLE evaluation AS SELECT " + ", ".join(
    f"?::{kind} AS {name}" for name, kind in EVALUATION_COLUMNS)
