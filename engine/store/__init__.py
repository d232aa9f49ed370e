"""Store: one DuckDB file holding runs, notes, questions and answers, and the eligibility decided over them.

Takes a run's notes, answers and passages in batches; gives them back by key, so a run
resumes and a threshold edit re-asks nothing. Its tables are declared in schema.py, its
named reads are in reads.py, and the trainer's tables in trainer.py.

Answers are keyed by (note_id, answer_key), where answer_key hashes the
question's fingerprint with the backend's model/adapter identity
(crit.engine.answering.backend.answer_key): another model never reuses an answer,
and a threshold edit (which changes no question) re-asks nothing.

Crash safety: each batch of answers is written, with its notes, in ONE
transaction as Arrow tables (`INSERT ... SELECT ... ON CONFLICT DO NOTHING`).
After kill -9 or Ctrl-C everything up to the last commit is there and nothing
is half-written; running the same command again asks only what `missing`
reports. A run left 'running' by a dead process is marked 'interrupted' the
next time the file is opened for writing (DuckDB's file lock means no other
process can be writing it then).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from crit.engine.answers import Answer
from crit.engine.notes.reader import Note
from crit.engine.sql import OFFLINE, is_sqlite_file, literal, rollback
from crit.engine.store.reads import StoreReads
from crit.engine.store.schema import (
    ANSWER_ARROW,
    MERGED_TABLES,
    NOTE_ARROW,
    PASSAGE_ARROW,
    READ_ONLY_CONFIG,
    RENAMED_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    RunStatus,
)
from crit.grammar.errors import CritError
from crit.grammar.questions import Question


class PassageRow(BaseModel):
    """One row of the passages table (crit.engine.reading.passages.Passage, keyed to its note and answer)."""

    note_id: str
    answer_key: str
    question: str
    passage: int
    span_start: int
    span_end: int
    term: str
    section: str | None = None


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class AnswerTables(NamedTuple):
    """A batch of answers and their passages as the store's Arrow tables (ANSWER_ARROW, PASSAGE_ARROW)."""

    answers: pa.Table
    passages: pa.Table


# A passage row in PASSAGE_ARROW's column order: note_id, answer_key, question, passage (its place among the
# question's passages), span_start, span_end, term, section.
PassageTuple = tuple[str, str, str, int, int, int, str, str | None]


class RowBuilder:
    """Makes a run's answers and passages into the Arrow tables the store inserts, wherever they were
    answered: a worker process builds its own, so the process that writes only concatenates them."""

    def __init__(self, run_id: str, answer_keys: Mapping[str, str], question_fingerprints: Mapping[str, str]):
        self.run_id = run_id
        self.answer_keys = dict(answer_keys)
        self.question_fingerprints = dict(question_fingerprints)

    def tables(self, answers: Sequence[Answer], passages: Sequence[PassageTuple]) -> AnswerTables:
        """The batch's tables; an answer whose key is not its question's in this run is refused (ValueError)."""
        for a in answers:
            if self.answer_keys.get(a.question) != a.fingerprint:
                raise ValueError(f"answer for question {a.question!r} carries key {a.fingerprint}, "
                                 f"expected {self.answer_keys.get(a.question)}")
        now = datetime.now(timezone.utc)
        qfp = self.question_fingerprints
        # Built column by column: a batch of a rules run holds tens of thousands of answers, and a dict per
        # row cost more than the insert.
        answer_table = pa.table(
            {
                "note_id": [a.note_id for a in answers],
                "answer_key": [a.fingerprint for a in answers],
                "question": [a.question for a in answers],
                "question_fingerprint": [qfp.get(a.fingerprint, "") for a in answers],
                "run_id": [self.run_id] * len(answers),
                "value": [a.value for a in answers],
                "unit": [a.unit for a in answers],
                "na": [a.na for a in answers],
                "source": [a.source for a in answers],
                "span_start": [a.span_start for a in answers],
                "span_end": [a.span_end for a in answers],
                "grounded": [a.grounded for a in answers],
                "match": [a.match for a in answers],
                "raw": [a.raw for a in answers],
                "latency_s": [a.latency_s for a in answers],
                "prompt_tokens": [a.prompt_tokens for a in answers],
                "output_tokens": [a.output_tokens for a in answers],
                "error": [a.error for a in answers],
                "chunk": [a.chunk for a in answers],
                "created_at": [now] * len(answers),
                "method": [a.method for a in answers],
                "candidates": [json.dumps([c.model_dump() for c in a.candidates]) if a.candidates is not None else None
                               for a in answers],
                "reading": [a.reading for a in answers],
                "sure": [a.confident for a in answers],
            },
            schema=ANSWER_ARROW,
        )
        columns = list(zip(*passages)) if passages else [[] for _ in PASSAGE_ARROW.names]
        passage_table = pa.table(dict(zip(PASSAGE_ARROW.names, columns)), schema=PASSAGE_ARROW)
        return AnswerTables(answer_table, passage_table)


class HeldAnswers:
    """A store's notes and answers as a run found them at its start (Store.held_answers)."""

    def __init__(self, hashes: dict[str, str], answered: dict[str, frozenset[str]], keys: frozenset[str]):
        self._hashes = hashes
        self._answered = answered
        self._keys = keys

    def changed(self, notes: Sequence[Note]) -> set[str]:
        """Ids of `notes` stored before with a different text (their answers are about another text)."""
        return {n.note_id for n in notes
                if (stored := self._hashes.get(n.note_id)) is not None and stored != text_hash(n.text)}

    def missing(self, note_ids: Iterable[str]) -> dict[str, set[str]]:
        """For each note, the run's answer keys it has no answer for (notes with none missing are left out)."""
        out = {}
        for note_id in note_ids:
            left = self._keys - self._answered.get(note_id, frozenset())
            if left:
                out[note_id] = set(left)
        return out


class RunInfo(BaseModel):
    """What a run is: recorded in `runs` when it starts."""

    model_config = ConfigDict(extra="forbid")

    crit_file: str | None
    crit_hash: str
    rules_fingerprint: str
    trial_id: str | None
    notes_source: str
    model: str | None
    adapter: str | None
    backend: str
    backend_identity: str
    parameters: dict[str, Any] = {}
    notes_total: int | None = None
    crit_source: str | None = None  # the .crit text itself



@contextlib.contextmanager
def _sql_errors() -> Iterator[None]:
    """DuckDB's errors from a user's query, as one CritError line (Arrow's reader carries them mid-stream)."""
    try:
        yield
    except duckdb.PermissionException as e:
        raise CritError(f"crit sql reads only the store: {str(e).splitlines()[0]}") from None
    except (duckdb.Error, pa.ArrowException) as e:
        raise CritError(f"SQL error: {e}") from None

class StoredRun(BaseModel):
    run_id: str
    crit_file: str | None
    crit_source: str | None  # the .crit text the run compiled


class ShardMerge(BaseModel):
    """What merging one shard store added: rows per table, notes whose text differs, its newest crit hash."""

    added: dict[str, int]
    conflicting_notes: int
    newest_crit_hash: str | None


class BatchResult(BaseModel):
    notes_changed: int  # notes whose text changed since stored: their old answers were dropped
    answers_new: int  # rows actually inserted (a row already there is left as it was)


_ANALYZE = re.compile(r"\s*explain\s+analy[sz]e\b", re.I)


def _schema_version(con: duckdb.DuckDBPyConnection, path: str) -> int | None:
    """The crit schema version a store records; None when it has no meta table. CritError when it has one
    that crit did not write (no schema_version key, or one that is not a whole number)."""
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND database_name = current_database()"
    ).fetchall()}
    if "meta" not in tables:
        return None
    try:
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    except duckdb.Error:
        rows = []  # a `meta` table of another shape
    if len(rows) != 1 or not str(rows[0][0]).isdigit():
        raise CritError(f"'{path}' has a `meta` table that crit did not write (no whole-number schema_version); "
                        "crit writes only its own stores: use another --db file")
    return int(rows[0][0])


def _refuse_a_foreign_file(path: Path) -> None:
    """CritError, before anything is written, unless `path` is a crit store (or an empty DuckDB file)."""
    if is_sqlite_file(path):
        raise CritError(f"'{path}' is a SQLite file, not a crit store: use another --db file")
    try:
        con = duckdb.connect(str(path), read_only=True, config=READ_ONLY_CONFIG)
    except duckdb.IOException as e:
        if "lock" in str(e).lower():
            raise CritError(f"store '{path}' is in use by another process (is a `crit run` still going?)") from None
        raise CritError(f"'{path}' is not a DuckDB file crit can open ({str(e).splitlines()[0]}): "
                        "use another --db file") from None
    except duckdb.Error as e:
        raise CritError(f"'{path}' is not a DuckDB file crit can open ({str(e).splitlines()[0]}): "
                        "use another --db file") from None
    try:
        version = _schema_version(con, str(path))
        tables = con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
    finally:
        con.close()
    if version is None and tables and tables[0]:
        raise CritError(f"'{path}' is a DuckDB file crit did not make (it has tables but no crit schema version); "
                        "crit writes only its own stores: use another --db file")
    if version is not None and version > SCHEMA_VERSION:
        raise CritError(f"store '{path}' was written by a newer crit (schema {version}; this crit knows {SCHEMA_VERSION})")


class Store(StoreReads):
    """One open DuckDB store. Open with Store.open(path); one Store per command (DuckDB locks the file)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str, read_only: bool):
        self.con = con
        self.path = path
        self.read_only = read_only

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, read_only: bool = False) -> Store:
        """Open (and, for writing, create or upgrade) the store at `path`; CritError when it cannot."""
        p = Path(path)
        if read_only and not p.exists():
            raise CritError(f"store '{path}' not found")
        if not read_only and not p.parent.exists():
            raise CritError(f"folder '{p.parent}' for the store '{path}' does not exist")
        if not str(path).strip() or p.is_dir():
            raise CritError(f"store '{path}' is not a file")
        if not read_only and p.is_file() and p.stat().st_size > 0:
            _refuse_a_foreign_file(p)  # before any write: a file crit did not make is never touched
        # A read-only store reads nothing but itself: no files, no network, no extensions, and no
        # statement can switch that back on (`crit sql` runs what the user types).
        config = READ_ONLY_CONFIG if read_only else OFFLINE
        try:
            con = duckdb.connect(str(p), read_only=read_only, config=config)
        except duckdb.IOException as e:
            msg = str(e).splitlines()[0]
            if "lock" in msg.lower():
                raise CritError(f"store '{path}' is in use by another process (is a `crit run` still going?)") from None
            raise CritError(f"cannot open store '{path}': {msg}") from None
        except duckdb.Error as e:
            raise CritError(f"cannot open store '{path}': {str(e).splitlines()[0]}") from None
        store = cls(con, str(p), read_only)
        if not read_only:
            store._create()
        return store

    def _create(self) -> None:
        """Create or upgrade the schema; a file crit did not make, or a newer store, was refused before it
        was opened for writing (_refuse_a_foreign_file)."""
        self.con.execute("BEGIN TRANSACTION")
        for sql in SCHEMA:
            self.con.execute(sql)
        for (table, old), new in RENAMED_COLUMNS.items():
            if old in self._table_columns(table):
                self.con.execute(f'ALTER TABLE {table} RENAME COLUMN "{old}" TO {new}')
        self.con.execute(
            "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [str(SCHEMA_VERSION)],
        )
        # Runs whose process died: nobody else can hold the write lock now, so they are not running.
        self.con.execute(
            "UPDATE runs SET status = 'interrupted', message = coalesce(message, 'process ended without finishing') "
            "WHERE status = 'running'"
        )
        self.con.execute("COMMIT")

    def _table_columns(self, table: str, database: str | None = None) -> list[str]:
        return [r[0] for r in self.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND database_name = coalesce(?, current_database()) "
            "AND schema_name = 'main' ORDER BY column_index", [table, database]).fetchall()]

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------

    def begin_run(self, info: RunInfo, questions: Sequence[Question], answer_keys: Mapping[str, str]) -> str:
        """Record a new run and the answer_key of each of its questions; return its run_id."""
        now = datetime.now(timezone.utc)
        run_id = now.strftime("%Y%m%dT%H%M%S") + "-" + hashlib.sha256(f"{now.isoformat()}{info}".encode()).hexdigest()[:6]
        self.con.execute("BEGIN TRANSACTION")
        self.con.execute(
            "INSERT INTO runs (run_id, started_at, status, crit_file, crit_hash, rules_fingerprint, trial_id, "
            "notes_source, model, adapter, backend, backend_identity, parameters, notes_total, crit_source) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                now,
                info.crit_file,
                info.crit_hash,
                info.rules_fingerprint,
                info.trial_id,
                info.notes_source,
                info.model,
                info.adapter,
                info.backend,
                info.backend_identity,
                json.dumps(info.parameters, sort_keys=True),
                info.notes_total,
                info.crit_source,
            ],
        )
        for q in questions:
            key = answer_keys[q.name]
            self.con.execute(
                "INSERT INTO questions VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [key, q.name, q.kind, q.text, q.unit, q.fingerprint, info.backend_identity, json.dumps(q.answer_schema)],
            )
            self.con.execute("INSERT INTO run_questions VALUES (?, ?, ?)", [run_id, q.name, key])
        self.con.execute("COMMIT")
        return run_id

    def finish_run(self, run_id: str, status: RunStatus, message: str | None = None, **counts: int) -> None:
        """Set a run's final status, end time, and any counts given (notes_done=..., bad_rows=..., ...)."""
        allowed = {"notes_total", "notes_done", "bad_rows", "answers_new", "answers_cached", "errors"}
        unknown = set(counts) - allowed
        if unknown:
            raise ValueError(f"unknown run counts: {sorted(unknown)}")
        sets = "".join(f", {k} = ?" for k in counts)
        self.con.execute(
            f"UPDATE runs SET status = ?, finished_at = ?, message = ?{sets} WHERE run_id = ?",
            [status, datetime.now(timezone.utc), message, *counts.values(), run_id],
        )

    # -- notes and answers --------------------------------------------------------------

    def missing(self, note_ids: Iterable[str], answer_keys: Iterable[str]) -> dict[str, set[str]]:
        """For each note, the answer keys it has no answer for (notes with none missing are left out)."""
        ids = list(dict.fromkeys(note_ids))
        keys = list(dict.fromkeys(answer_keys))
        if not ids or not keys:
            return {}
        wanted = pa.table({"note_id": pa.array(ids, pa.string())})
        key_table = pa.table({"answer_key": pa.array(keys, pa.string())})
        self.con.register("_crit_wanted_notes", wanted)
        self.con.register("_crit_wanted_keys", key_table)
        try:
            rows = self.con.execute(
                "SELECT n.note_id, k.answer_key FROM _crit_wanted_notes n CROSS JOIN _crit_wanted_keys k "
                "ANTI JOIN answers a ON a.note_id = n.note_id AND a.answer_key = k.answer_key"
            ).fetchall()
        finally:
            self.con.unregister("_crit_wanted_notes")
            self.con.unregister("_crit_wanted_keys")
        out: dict[str, set[str]] = {}
        for note_id, key in rows:
            out.setdefault(note_id, set()).add(key)
        return out

    def limit_memory(self, limit: str) -> None:
        """Cap what DuckDB keeps in memory for this connection (a size, "1GB"; by default it is most of the
        machine's memory); beyond it, it writes out or evicts."""
        self.con.execute(f"SET memory_limit = {literal(limit)}")

    def held_answers(self, answer_keys: Iterable[str]) -> HeldAnswers:
        """What the store holds for a run with these answer keys, read once at its start: each stored note's
        text hash, and which of the keys each note has an answer for. A run then asks it, note by note, what
        to answer, without a query a batch (each would read the whole answers table: a run over a large
        store would grow with the square of its size)."""
        keys = list(dict.fromkeys(answer_keys))
        every = frozenset(keys)
        hashes: dict[str, str] = {}
        answered: dict[str, frozenset[str]] = {}
        # One row a stored note; the keys themselves only for a note that lacks some (a million notes' lists
        # of 26 keys were gigabytes of Python strings).
        result = self.con.execute(
            "SELECT n.note_id, n.text_hash, coalesce(a.held, 0), a.keys FROM notes n LEFT JOIN ("
            "  SELECT note_id, count(*) AS held, CASE WHEN count(*) < $n THEN list(answer_key) END AS keys"
            "  FROM answers WHERE answer_key IN (SELECT unnest($keys::VARCHAR[])) GROUP BY note_id"
            ") a USING (note_id)", {"n": len(keys), "keys": keys})
        while rows := result.fetchmany(100_000):
            for note_id, text_hash_, held, some in rows:
                hashes[note_id] = text_hash_
                if held:
                    answered[note_id] = every if held == len(keys) else frozenset(some)
        return HeldAnswers(hashes, answered, frozenset(keys))

    def changed_notes(self, notes: Sequence[Note]) -> set[str]:
        """Ids of `notes` stored before with a different text (their answers are about another text)."""
        if not notes:
            return set()
        table = pa.table(
            {"note_id": [n.note_id for n in notes], "text_hash": [text_hash(n.text) for n in notes]}
        )
        self.con.register("_crit_check_notes", table)
        try:
            rows = self.con.execute(
                "SELECT c.note_id FROM _crit_check_notes c JOIN notes n USING (note_id) WHERE n.text_hash <> c.text_hash"
            ).fetchall()
        finally:
            self.con.unregister("_crit_check_notes")
        return {r[0] for r in rows}

    def write_batch(self, run_id: str, notes: Sequence[Note], answers: Sequence[Answer], answer_keys: Mapping[str, str],
                    *, answers_cached: int = 0, passages: Sequence[PassageRow] = (),
                    changed: set[str] | None = None) -> BatchResult:
        """Store a batch of notes and their new answers in ONE transaction (all or nothing): write_tables, with
        the answers and passages made into Arrow tables here. `answer_keys` (question name -> key) is checked
        against each answer's own key."""
        rows = self.row_builder(run_id, answer_keys).tables(
            answers, [(p.note_id, p.answer_key, p.question, p.passage, p.span_start, p.span_end, p.term, p.section)
                      for p in passages])
        return self.write_tables(run_id, notes, rows, answers_cached=answers_cached, changed=changed)

    def row_builder(self, run_id: str, answer_keys: Mapping[str, str]) -> RowBuilder:
        """What makes this run's answers into the Arrow tables write_tables takes."""
        return RowBuilder(run_id, answer_keys, self._question_fingerprints(answer_keys))

    def write_tables(self, run_id: str, notes: Sequence[Note], rows: AnswerTables, *, answers_cached: int = 0,
                     changed: set[str] | None = None) -> BatchResult:
        """Store a batch of notes and their new answers and passages (RowBuilder's tables) in ONE transaction.

        Notes are upserted; a note whose text changed loses its old answers first. Answers
        go in with ON CONFLICT DO NOTHING, so writing a batch twice changes nothing.
        `changed`: the ids of the notes whose text changed, where the caller knows them already
        (HeldAnswers.changed).
        """
        note_table = pa.table(
            {
                "note_id": [n.note_id for n in notes],
                "sex": [n.sex for n in notes],
                "text": [n.text for n in notes],
                "text_hash": [text_hash(n.text) for n in notes],
                "length": [len(n.text) for n in notes],
                "source_row": [n.row for n in notes],
                "patient_id": [n.patient_id for n in notes],
                "note_date": [n.note_date for n in notes],
                "index_date": [n.index_date for n in notes],
            },
            schema=NOTE_ARROW,
        )
        answer_table, passage_table = rows
        if changed is None:
            changed = self.changed_notes(notes)
        cols = ", ".join(f'"{c}"' for c in ANSWER_ARROW.names)
        note_cols = ", ".join(f'"{c}"' for c in NOTE_ARROW.names)
        self.con.register("_crit_batch_notes", note_table)
        self.con.register("_crit_batch_answers", answer_table)
        self.con.register("_crit_batch_passages", passage_table)
        try:
            self.con.execute("BEGIN TRANSACTION")
            try:
                if changed:
                    for table in ("answers", "passages"):
                        self.con.execute(
                            f"DELETE FROM {table} WHERE note_id IN (SELECT unnest(?::VARCHAR[]))", [sorted(changed)]
                        )
                self.con.execute(
                    f"INSERT INTO notes ({note_cols}) SELECT {note_cols} FROM _crit_batch_notes "
                    "ON CONFLICT (note_id) DO UPDATE SET "
                    "sex = excluded.sex, text = excluded.text, text_hash = excluded.text_hash, "
                    "length = excluded.length, source_row = excluded.source_row, patient_id = excluded.patient_id, "
                    "note_date = excluded.note_date, index_date = excluded.index_date"
                )
                before = self._count_answers()
                self.con.execute(
                    f"INSERT INTO answers ({cols}) SELECT {cols} FROM _crit_batch_answers ON CONFLICT DO NOTHING"
                )
                inserted = self._count_answers() - before
                self.con.execute("INSERT INTO passages SELECT * FROM _crit_batch_passages ON CONFLICT DO NOTHING")
                errors = answer_table.num_rows - answer_table.column("error").null_count
                self.con.execute(
                    "UPDATE runs SET notes_done = notes_done + ?, answers_new = answers_new + ?, "
                    "answers_cached = answers_cached + ?, errors = errors + ? WHERE run_id = ?",
                    [len(notes), inserted, answers_cached, errors, run_id],
                )
                self.con.execute("COMMIT")
            except BaseException:
                rollback(self.con)
                raise
        finally:
            self.con.unregister("_crit_batch_notes")
            self.con.unregister("_crit_batch_answers")
            self.con.unregister("_crit_batch_passages")
        return BatchResult(notes_changed=len(changed), answers_new=inserted)

    def remember_run_notes(self, note_ids: Sequence[str]) -> None:
        """Keep, for this connection only, the ids of the notes this run read (a temporary table, never stored):
        the run's summary counts them apart from the rest of the store."""
        self.con.execute("CREATE TEMP TABLE IF NOT EXISTS _crit_run_notes (note_id VARCHAR)")
        self.con.register("_crit_run_batch", pa.table({"note_id": pa.array(list(note_ids), pa.string())}))
        try:
            self.con.execute("INSERT INTO _crit_run_notes SELECT note_id FROM _crit_run_batch")
        finally:
            self.con.unregister("_crit_run_batch")

    def run_eligibility(self) -> dict[str, int]:
        """Eligible / ineligible / unknown over the notes this run read (remember_run_notes), by the rules just
        evaluated."""
        rows = self.con.execute(
            "SELECT status, count(DISTINCT note_id) FROM eligibility WHERE note_id IN (SELECT note_id FROM _crit_run_notes) "
            "GROUP BY status").fetchall()
        counts = {"eligible": 0, "ineligible": 0, "unknown": 0}
        counts.update({str(status): int(n) for status, n in rows})
        return counts

    def answer_counts(self, answer_keys: Iterable[str]) -> tuple[int, int]:
        """(error rows, ungrounded quotes) among the answers under these keys, over the stored notes."""
        row = self.con.execute(
            "SELECT count(*) FILTER (WHERE error IS NOT NULL), "
            "count(*) FILTER (WHERE error IS NULL AND coalesce(trim(source), '') <> '' AND NOT grounded) "
            "FROM answers WHERE answer_key IN (SELECT unnest(?::VARCHAR[])) AND note_id IN (SELECT note_id FROM notes)",
            [list(answer_keys)],
        ).fetchall()[0]
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def _count_answers(self) -> int:
        return self._count("answers")

    def _question_fingerprints(self, answer_keys: Mapping[str, str]) -> dict[str, str]:
        keys = list(answer_keys.values())
        if not keys:
            return {}
        rows = self.con.execute(
            "SELECT answer_key, question_fingerprint FROM questions WHERE answer_key IN (SELECT unnest(?::VARCHAR[]))",
            [keys],
        ).fetchall()
        return dict(rows)

    # -- merging shards -------------------------------------------------------------------

    def merge_from(self, shard: str | Path) -> ShardMerge:
        """Copy the rows of every merged table (schema.MERGED_TABLES) from the store at `shard` into this one,
        in one transaction; a row whose key is already here is kept as it is (so merging twice adds
        nothing). A shard of an older schema lacks some columns (NULL here) or tables (skipped)."""
        alias = "crit_shard"
        if is_sqlite_file(shard):
            raise CritError(f"'{shard}' is a SQLite file, not a crit store")
        try:
            self.con.execute(f"ATTACH ? AS {alias} (READ_ONLY)", [str(shard)])
        except duckdb.Error as e:
            raise CritError(f"cannot open shard store '{shard}': {str(e).splitlines()[0]}") from None
        try:
            present = {r[0] for r in self.con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [alias]).fetchall()}
            if "meta" not in present:
                raise CritError(f"'{shard}' is not a crit store (no meta table)")
            row = self.con.execute(f"SELECT value FROM {alias}.meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                raise CritError(f"'{shard}' is not a crit store (no schema version)")
            if not str(row[0]).isdigit():
                raise CritError(f"'{shard}' is not a crit store (its schema version {str(row[0])[:20]!r} is not a "
                                "whole number)")
            version = int(row[0])
            if version > SCHEMA_VERSION:
                raise CritError(f"shard store '{shard}' was written by a newer crit (schema {version})")
            # Notes already merged with another text: their answers are about different texts (both kept).
            conflicting = self.con.execute(
                f"SELECT count(*) FROM notes n JOIN {alias}.notes s USING (note_id) WHERE n.text_hash <> s.text_hash"
            ).fetchone()
            newest = self.con.execute(f"SELECT crit_hash FROM {alias}.runs ORDER BY started_at DESC LIMIT 1").fetchone()
            added: dict[str, int] = {}
            self.con.execute("BEGIN TRANSACTION")
            try:
                for table, key in MERGED_TABLES:
                    if table not in present:
                        continue  # a shard of an older schema (no passages table)
                    before = self._count(table)
                    columns = ", ".join(f'"{c}" AS "{RENAMED_COLUMNS.get((table, c), c)}"'
                                        for c in self._table_columns(table, alias))
                    self.con.execute(
                        f"INSERT INTO {table} BY NAME SELECT {columns} FROM {alias}.{table} ON CONFLICT ({key}) DO NOTHING"
                    )
                    added[table] = self._count(table) - before
                self.con.execute("COMMIT")
            except BaseException:
                rollback(self.con)
                raise
        finally:
            self.con.execute(f"DETACH {alias}")
        return ShardMerge(added=added, conflicting_notes=int(conflicting[0]) if conflicting else 0,
                          newest_crit_hash=newest[0] if newest else None)

    def _count(self, table: str) -> int:
        row = self.con.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    # -- reading ------------------------------------------------------------------------

    def latest_run(self) -> StoredRun | None:
        """The newest run: its id and the .crit file (path and text) it compiled."""
        row = self.con.execute(
            "SELECT run_id, crit_file, crit_source FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
        return StoredRun(run_id=row[0], crit_file=row[1], crit_source=row[2]) if row else None

    def run_answer_keys(self, run_id: str) -> dict[str, str]:
        """Question name -> the answer_key a run stored its answers under."""
        return dict(self.con.execute("SELECT question, answer_key FROM run_questions WHERE run_id = ?", [run_id]).fetchall())

    def query(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one read-only statement (SELECT, WITH ... SELECT, DESCRIBE, SHOW, EXPLAIN); (column
        names, rows). Anything else, or several statements, is refused before it runs (and a store
        opened read-only reads no file but itself); DuckDB's own message becomes a CritError.
        `params` binds the query's named parameters ($name)."""
        self._check_read_only(sql)
        with _sql_errors():
            cur = self.con.execute(sql, params or None)
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchall() if cur.description else []
        return columns, rows

    def query_batches(self, sql: str, params: dict[str, Any] | None = None,
                      rows_per_batch: int = 10_000) -> tuple[list[str], Iterator[pa.RecordBatch]]:
        """As query, but the rows come as Arrow record batches, read as they are consumed: a result of any
        size passes through in bounded memory. Consume them before the next query on this store."""
        self._check_read_only(sql)
        with _sql_errors():
            relation = self.con.sql(sql, params=params or None)
            if relation is None:
                return [], iter(())
            reader = relation.to_arrow_reader(rows_per_batch)

        def batches() -> Iterator[pa.RecordBatch]:
            with _sql_errors():
                yield from reader

        return list(reader.schema.names), batches()

    def made_by(self) -> str:
        """"crit" for a store crit wrote, "nobody" for a DuckDB file with no tables, else "another program"."""
        if _schema_version(self.con, self.path) is not None:
            return "crit"
        (tables,) = self.con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() or (0,)
        return "another program" if tables else "nobody"

    def query_table(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        """As query, the whole result as one Arrow table, read now: nothing stays open on the store."""
        self._check_read_only(sql)
        with _sql_errors():
            relation = self.con.sql(sql, params=params or None)
            return relation.to_arrow_table() if relation is not None else pa.table({})

    def _check_read_only(self, sql: str) -> None:
        try:
            statements = self.con.extract_statements(sql)
        except duckdb.Error as e:
            raise CritError(f"SQL error: {str(e).splitlines()[0]}") from None
        if len(statements) != 1:
            raise CritError(f"crit sql runs exactly one statement; this has {len(statements)} "
                            "(hint: run them one at a time)")
        kind = statements[0].type
        if kind not in (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN):
            raise CritError(f"crit sql is read-only: {kind.name} statements are refused "
                            "(hint: SELECT ..., WITH ... SELECT, DESCRIBE or SHOW)")
        if kind == duckdb.StatementType.EXPLAIN and _ANALYZE.match(statements[0].query):
            # EXPLAIN ANALYZE runs its statement (LOAD, CHECKPOINT, VACUUM, CREATE TEMP TABLE ...).
            raise CritError("crit sql is read-only: EXPLAIN ANALYZE runs the statement it explains and is refused "
                            "(hint: EXPLAIN without ANALYZE shows the plan)")
