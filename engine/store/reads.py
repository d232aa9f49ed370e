"""The store's named reads: what the report, the dry run and the trainer ask of a store.

Store (crit.engine.store) inherits them, so a caller writes `store.note_texts()`; they live
here so that the store's writes and bookkeeping fit one screen. Each is one query whose
result a caller renders or counts; none writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from crit.grammar.errors import CritError


def _select_list(cols: set[str], wanted: tuple[str, ...]) -> str:
    """A select list of the wanted columns, NULL for those the store lacks (older or newer stores)."""
    return ", ".join(c if c in cols else f"NULL AS {c}" for c in wanted)


class StoreReads:
    """Named queries over an open store's connection `con` (crit.engine.store.Store)."""

    con: duckdb.DuckDBPyConnection

    def stored_answers(self, note_ids: Sequence[str], answer_keys: Sequence[str]) -> list[tuple[str, str, int]]:
        """(note_id, text_hash, answers under these keys) for each of these notes the store holds."""
        return [(str(n), str(h), int(c)) for n, h, c in self.con.execute(
            "SELECT n.note_id, n.text_hash, count(a.answer_key) FROM notes n "
            "LEFT JOIN answers a ON a.note_id = n.note_id AND list_contains(?::VARCHAR[], a.answer_key) "
            "WHERE list_contains(?::VARCHAR[], n.note_id) GROUP BY n.note_id, n.text_hash",
            [list(answer_keys), list(note_ids)],
        ).fetchall()]

    def answers_by_backend(self) -> list[tuple[str, str, str, float | None, bool, str | None]]:
        """(backend identity, note_id, question, value, na, error) of every stored answer."""
        return self.con.execute(
            "SELECT q.backend_identity, a.note_id, a.question, a.value, a.na, a.error "
            "FROM answers a JOIN questions q USING (answer_key)"
        ).fetchall()

    # -- reading, for the report ------------------------------------------------------------
    # Tolerant of other schemas: a report may be asked of a store an older crit wrote, which a
    # read-only open cannot migrate, so these read the columns it has and NULL for the rest.

    def columns(self) -> dict[str, set[str]]:
        """Table or view -> its columns, for the tables in the store's schema."""
        out: dict[str, set[str]] = {}
        for table, column in self.con.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        ).fetchall():
            out.setdefault(table, set()).add(column)
        return out

    def _dicts(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description or []]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def run_record(self, run_id: str | None) -> dict[str, Any] | None:
        """The run `run_id` (None: the newest) as a dict of its columns; CritError when there is no such run."""
        columns = self.columns()
        if "runs" not in columns:
            if run_id is not None:
                raise CritError(f"the store has no runs table, so there is no run {run_id!r}")
            return None
        order = "started_at DESC NULLS LAST" if "started_at" in columns["runs"] else "run_id DESC"
        if run_id is None:
            rows = self._dicts(f"SELECT * FROM runs ORDER BY {order} LIMIT 1")
        else:
            rows = self._dicts("SELECT * FROM runs WHERE CAST(run_id AS VARCHAR) = ?", [run_id])
            if not rows:
                known = [r[0] for r in self.con.execute(
                    f"SELECT CAST(run_id AS VARCHAR) FROM runs ORDER BY {order} LIMIT 5").fetchall()]
                raise CritError(f"the store has no run {run_id!r}; latest runs: {', '.join(known) or 'none'}")
        return rows[0] if rows else None

    def evaluation_record(self) -> dict[str, Any] | None:
        """The last evaluation's row (rules fingerprint, counts), None before any."""
        if "evaluation" not in self.columns():
            return None
        rows = self._dicts("SELECT * FROM evaluation LIMIT 1")
        return rows[0] if rows else None

    def questions_of(self, answer_keys: Sequence[str]) -> list[dict[str, Any]]:
        """name, kind, unit, text of the questions stored under these keys (by name)."""
        return self._dicts("SELECT question AS name, kind, unit, text FROM questions WHERE "
                           "list_contains(?::VARCHAR[], answer_key) ORDER BY question", [list(answer_keys)])

    def answered_questions(self) -> list[str]:
        return [r[0] for r in self.con.execute("SELECT DISTINCT question FROM answers ORDER BY 1").fetchall()]

    def note_texts(self) -> list[dict[str, Any]]:
        """note_id, sex, text, patient_id, note_date and title (NULL where the store has no such column) of every
        note, by id."""
        cols = _select_list(self.columns()["notes"], ("sex", "text", "patient_id", "note_date", "title"))
        return self._dicts(f"SELECT CAST(note_id AS VARCHAR) AS note_id, {cols} FROM notes ORDER BY note_id")

    def chosen_answers(self, answer_keys: Sequence[str]) -> list[dict[str, Any]]:
        """One answer per note and question, under these keys (none given: any): among competing rows a
        successful one first, then the newest (as the rules choose)."""
        acols = self.columns()["answers"]
        wanted = ("value", "unit", "na", "source", "span_start", "span_end", "grounded", "match", "error", "method",
                  "candidates", "reading", "sure")
        newest = ", created_at DESC NULLS LAST" if "created_at" in acols else ""
        where, params = "", []
        if answer_keys and "answer_key" in acols:
            where, params = "WHERE list_contains(?::VARCHAR[], answer_key)", [list(answer_keys)]
        return self._dicts(
            f"SELECT CAST(note_id AS VARCHAR) AS note_id, question, {_select_list(acols, wanted)} FROM answers {where} "
            f"QUALIFY row_number() OVER (PARTITION BY note_id, question ORDER BY (error IS NULL) DESC{newest}) = 1",
            params,
        )

    def rules_rows(self, table: str) -> list[dict[str, Any]]:
        """The rules' results for the report: `answer_values`, `eligibility`, `criteria`, `attrition`,
        `patient_eligibility` or `patient_attrition` ([] before the rules have run)."""
        sql = {
            "answer_values": "SELECT CAST(note_id AS VARCHAR) AS note_id, question, converted, reason FROM answer_values",
            "eligibility": "SELECT CAST(note_id AS VARCHAR) AS note_id, status, deciding FROM eligibility",
            "criteria": "SELECT CAST(note_id AS VARCHAR) AS note_id, position, label, type, status, reason "
                        "FROM criteria ORDER BY note_id, position",
            "attrition": "SELECT * FROM attrition ORDER BY position",
            "patient_attrition": "SELECT * FROM patient_attrition ORDER BY position",
            "patient_eligibility": "SELECT patient_id, status, deciding FROM patient_eligibility ORDER BY patient_id",
        }[table]
        return self._dicts(sql) if table in self.columns() else []

    def patient_rows(self, patient_ids: Sequence[str]) -> tuple[list[dict[str, Any]], ...]:
        """For these patients: their notes by date (with text), combined answers and criteria."""
        ids = [list(patient_ids)]
        notes = self._dicts("SELECT patient_id, note_id, note_date, text FROM notes WHERE list_contains(?, patient_id) "
                            "ORDER BY patient_id, note_date NULLS LAST, source_row", ids)
        answers = self._dicts("SELECT * FROM patient_answers WHERE list_contains(?, patient_id)", ids)
        criteria = self._dicts("SELECT patient_id, position, label, type, status, reason FROM patient_criteria "
                               "WHERE list_contains(?, patient_id) ORDER BY patient_id, position", ids)
        return notes, answers, criteria
