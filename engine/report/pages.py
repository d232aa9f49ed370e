"""The report's notes and figures, read from the store in SQL, page by page.

`NotePages(store, answer_keys, plan, page_size)` builds three temporary tables on the report's
read-only connection (DuckDB keeps temporary tables in memory or its own spill files, never in
the store): each note's position in natural id order (mts-2 before mts-10, computed in SQL),
the answers the run chose, and one summary row per note (status, deciding criteria, criteria,
answer counts; no text). Everything the report shows about all notes at once (counts, the
questions' missing evidence, the value histograms) is a SQL aggregate over those tables; note
text and per-answer evidence are read one page at a time (`page(k)`: a range of positions), so
Python holds one page of notes, never one object per note of the whole store.
"""

from __future__ import annotations

import re
from typing import Any

import duckdb

from crit.engine.notes.columns import FEMALE, MALE
from crit.engine.report.evidence import candidates_of, value_span
from crit.engine.store import Store
from crit.grammar.errors import CritError
from crit.grammar.plan import Plan

__all__ = ["NATURAL_ORDER", "PAGE_SIZE", "NotePages"]

PAGE_SIZE = 100  # notes per page of the table, and per page file of a report too large for one file

# natural_key (crit.engine.report.evidence) in SQL: the id split into text and digit runs, lowercased;
# each digit run, its leading zeros dropped, is prefixed by its length, so that comparing the strings
# compares the numbers by value whatever their size. Ties (a01 and a1) fall back to the id itself.
NATURAL_ORDER = (
    "flatten(list_transform(regexp_split_to_array(lower(note_id), '[0-9]+'), lambda t, i: [t, coalesce("
    "lpad(length(ltrim(regexp_extract_all(note_id, '[0-9]+')[i], '0'))::VARCHAR, 6, '0') "
    "|| ltrim(regexp_extract_all(note_id, '[0-9]+')[i], '0'), '')])), note_id"
)

_ANSWER_COLUMNS = ("value", "unit", "na", "source", "span_start", "span_end", "grounded", "match", "error", "method",
                   "candidates", "reading", "sure")
_NON_BMP = re.compile("[\U00010000-\U0010ffff]")


def _utf16(text: str, offset: int) -> int:
    """A Python character offset as a JavaScript (UTF-16) string index."""
    return offset + len(_NON_BMP.findall(text[:offset]))


def _num(v: Any) -> float | None:
    return None if v is None else round(float(v), 6)


def _cols(have: set[str], wanted: tuple[str, ...], alias: str = "") -> str:
    """A select list of the wanted columns, NULL for those an older or newer store lacks."""
    return ", ".join(f"{alias}{c}" if c in have else f"NULL AS {c}" for c in wanted)


class NotePages:
    """The run's notes in natural id order, as summary rows, SQL aggregates and pages of full notes."""

    def __init__(self, store: Store, answer_keys: list[str], plan: Plan | None, kinds: dict[str, str | None],
                 page_size: int = PAGE_SIZE) -> None:
        if page_size < 1:
            raise CritError(f"a report page holds at least one note (page size {page_size})")
        self.con: duckdb.DuckDBPyConnection = store.con
        self.plan, self.kinds, self.page_size = plan, kinds, page_size
        self.tables = store.columns()
        self._build(answer_keys)
        (self.total,) = self.con.execute("SELECT count(*) FROM crit_report_rows").fetchone() or (0,)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    def _has(self, table: str) -> bool:
        return table in self.tables

    def _build(self, answer_keys: list[str]) -> None:
        con, t = self.con, self.tables
        con.execute(f"CREATE OR REPLACE TEMP TABLE crit_report_order AS SELECT note_id, "
                    f"(row_number() OVER (ORDER BY {NATURAL_ORDER}) - 1)::BIGINT AS pos "
                    "FROM (SELECT CAST(note_id AS VARCHAR) AS note_id FROM notes)")

        # One answer per note and question (Store.chosen_answers' choice: a successful one, then the newest).
        acols = t["answers"]
        newest = ", created_at DESC NULLS LAST" if "created_at" in acols else ""
        where, params = "", []
        if answer_keys and "answer_key" in acols:
            where, params = "WHERE list_contains(?::VARCHAR[], answer_key)", [answer_keys]
        values = ("LEFT JOIN (SELECT CAST(note_id AS VARCHAR) AS note_id, question, converted, reason FROM answer_values) v "
                  "USING (note_id, question)") if self._has("answer_values") else ""
        conv = "v.converted, v.reason AS why" if values else "NULL::DOUBLE AS converted, NULL::VARCHAR AS why"
        con.execute(
            "CREATE OR REPLACE TEMP TABLE crit_report_answers AS "
            f"WITH a AS (SELECT CAST(note_id AS VARCHAR) AS note_id, question, {_cols(acols, _ANSWER_COLUMNS)} "
            f"  FROM answers {where} QUALIFY row_number() OVER (PARTITION BY note_id, question "
            f"  ORDER BY (error IS NULL) DESC{newest}) = 1) "
            f"SELECT o.pos, a.*, {conv} FROM a LEFT JOIN crit_report_order o USING (note_id) {values} "
            "ORDER BY o.pos NULLS LAST, a.question",  # ordered: a page's range reads few row groups
            params,
        )

        ncols = t["notes"]
        joins, status = [], "NULL::VARCHAR AS status, NULL::VARCHAR[] AS deciding"
        if self._has("eligibility"):
            joins.append("LEFT JOIN (SELECT CAST(note_id AS VARCHAR) AS note_id, status, deciding FROM eligibility) e "
                         "USING (note_id)")
            status = "e.status, e.deciding"
        crit = "NULL AS crit"
        if self._has("criteria"):
            joins.append("LEFT JOIN (SELECT CAST(note_id AS VARCHAR) AS note_id, "
                         "list([position::VARCHAR, status, reason] ORDER BY position) AS crit FROM criteria "
                         "GROUP BY ALL) c USING (note_id)")
            crit = "c.crit"
        # Sex as the rules read it: the notes' column, else the built-in question's value (1 = female).
        sex_answer = "NULL"
        if self._has("answer_values"):
            joins.append("LEFT JOIN (SELECT CAST(note_id AS VARCHAR) AS note_id, any_value(converted) AS sex_value "
                         "FROM answer_values WHERE question = 'sex' GROUP BY ALL) s USING (note_id)")
            sex_answer = "CASE WHEN s.sex_value IS NULL THEN NULL WHEN s.sex_value <> 0 THEN 'female' ELSE 'male' END"
        sex_col = "lower(trim(CAST(n.sex AS VARCHAR), ' \t\n\r'))" if "sex" in ncols else "NULL"
        con.execute(self._rows_sql(ncols, joins, status, crit, sex_answer, sex_col), [list(MALE), list(FEMALE)])

    @staticmethod
    def _rows_sql(ncols: set[str], joins: list[str], status: str, crit: str, sex_answer: str, sex_col: str) -> str:
        return (
            "CREATE OR REPLACE TEMP TABLE crit_report_rows AS "
            f"SELECT o.pos, note_id, {_cols(ncols, ('title', 'note_date', 'patient_id'), 'n.')}, "
            f"CASE WHEN list_contains(?, {sex_col}) THEN 'male' WHEN list_contains(?, {sex_col}) THEN 'female' "
            f"ELSE {sex_answer} END AS sex, {status}, {crit}, "
            "coalesce(k.answers, 0) AS answers, coalesce(k.na, 0) AS na "
            "FROM crit_report_order o "
            f"JOIN (SELECT * EXCLUDE (note_id), CAST(note_id AS VARCHAR) AS note_id FROM notes) n USING (note_id) "
            "LEFT JOIN (SELECT pos, count(*) AS answers, count(*) FILTER (WHERE na) AS na FROM crit_report_answers "
            "  WHERE pos IS NOT NULL GROUP BY pos) k ON k.pos = o.pos "
            f"{' '.join(joins)} ORDER BY o.pos"
        )

    # ---- figures over every note, in SQL ------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Notes per eligibility status (the rules' eligibility table)."""
        counts = {"eligible": 0, "ineligible": 0, "unknown": 0}
        if self._has("eligibility"):
            for status, n in self.con.execute("SELECT status, count(*) FROM eligibility GROUP BY status").fetchall():
                counts[status] = int(n)
        return counts

    def quality(self) -> list[dict[str, Any]]:
        """Per question asked: answers, NA, ungrounded and errors, most missing evidence first."""
        rows = self.con.execute(
            "SELECT * FROM (SELECT question, count(*) AS answers, count(*) FILTER (WHERE error IS NULL AND na) AS nas, "
            "count(*) FILTER (WHERE error IS NULL AND NOT na AND NOT coalesce(grounded, false)) AS ungrounded, "
            "count(*) FILTER (WHERE error IS NOT NULL) AS errors FROM crit_report_answers GROUP BY question) "
            "ORDER BY nas + ungrounded + errors DESC, question").fetchall()
        return [{"question": q, "answers": int(a), "na": int(n), "ungrounded": int(u), "errors": int(e)}
                for q, a, n, u, e in rows]

    def criteria(self) -> dict[int, dict[str, Any]]:
        """Position -> label and type of each criterion the rules evaluated."""
        if not self._has("criteria"):
            return {}
        rows = self.con.execute("SELECT position, min(label), min(type) FROM criteria GROUP BY position").fetchall()
        return {int(p): {"position": int(p), "label": label, "type": typ} for p, label, typ in rows}

    def histogram(self, question: str, by_sex: bool) -> tuple[list[float], dict[str, list[int]], int] | None:
        """Bin edges, counts per group (per sex or "any") and the number of values not finite, of a numeric
        question's converted values; None when it has none. The bins are numpy's (as matplotlib's hist draws
        them): up to 30 equal bins from the smallest finite value to the largest, at least 5."""
        if not self._has("answer_values"):
            return None
        src = ("SELECT v.converted::DOUBLE AS x, coalesce(r.sex, 'unknown sex') AS g FROM answer_values v "
               "LEFT JOIN crit_report_rows r ON r.note_id = CAST(v.note_id AS VARCHAR) "
               "WHERE v.question = ? AND v.converted IS NOT NULL")
        stats = self.con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE NOT isfinite(x)), count(DISTINCT x) FILTER (WHERE isfinite(x)), "
            f"min(x) FILTER (WHERE isfinite(x)), max(x) FILTER (WHERE isfinite(x)) FROM ({src})", [question]).fetchone()
        if stats is None or not stats[0]:
            return None
        _, left_out, distinct, lo, hi = stats
        groups = ["male", "female", "unknown sex"] if by_sex else ["any"]
        if not distinct:
            return [0.0, 1.0], {g: [] for g in groups}, int(left_out)
        bins = min(30, max(5, int(distinct)))
        lo, hi = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)  # numpy's range for one distinct value
        edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
        group = "g" if by_sex else "'any'"
        counts = {g: [0] * bins for g in groups}
        for g, b, n in self.con.execute(
            f"SELECT {group}, least(?::BIGINT - 1, floor((x - ?) / (? - ?) * ?)::BIGINT), count(*) FROM ({src}) "
            "WHERE isfinite(x) GROUP BY ALL", [bins, lo, hi, lo, bins, question]).fetchall():
            counts.setdefault(g, [0] * bins)[int(b)] += int(n)
        return edges, counts, int(left_out)

    # ---- notes, a page at a time --------------------------------------------------------------

    @staticmethod
    def index_row(note: dict[str, Any]) -> list[Any]:
        """A note of `page` as its summary row: [id, title, date, patient, sex, status, deciding, criteria,
        answers, NA]; what the table and its filters need, without text."""
        return [note[k] for k in ("id", "title", "date", "patient", "sex", "status", "deciding", "crit")] + [
            len(note["ans"]), sum(a["na"] for a in note["ans"])]

    def _summary_rows(self, k: int) -> list[dict[str, Any]]:
        cur = self.con.execute("SELECT * FROM crit_report_rows WHERE pos >= ? AND pos < ? ORDER BY pos",
                               [k * self.page_size, (k + 1) * self.page_size])
        names = [d[0] for d in cur.description or []]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    @staticmethod
    def _row(r: dict[str, Any]) -> dict[str, Any]:
        date = r["note_date"]
        date = date.isoformat() if hasattr(date, "isoformat") else date
        crit = [[int(p), s, why] for p, s, why in r["crit"] or []]
        return {"id": r["note_id"], "title": r["title"], "date": date, "patient": r["patient_id"], "sex": r["sex"],
                "status": r["status"], "deciding": list(r["deciding"] or []), "crit": crit}

    def page(self, k: int) -> list[dict[str, Any]]:
        """The notes of page k (from 0) with their text and every answer's evidence, as the page draws them."""
        lo, hi = k * self.page_size, (k + 1) * self.page_size
        texts = dict(self.con.execute(
            "SELECT o.pos, n.text FROM crit_report_order o JOIN notes n ON CAST(n.note_id AS VARCHAR) = o.note_id "
            "WHERE o.pos >= ? AND o.pos < ?", [lo, hi]).fetchall())
        cur = self.con.execute("SELECT * FROM crit_report_answers WHERE pos >= ? AND pos < ? ORDER BY pos, question",
                               [lo, hi])
        names = [d[0] for d in cur.description or []]
        answers: dict[int, list[dict[str, Any]]] = {}
        for row in cur.fetchall():
            a = dict(zip(names, row))
            answers.setdefault(a["pos"], []).append(a)
        out = []
        for r in self._summary_rows(k):
            note = self._row(r)
            text = texts.get(r["pos"]) or ""
            note["ans"] = [self._answer(a, text) for a in answers.get(r["pos"], [])]
            note["text"] = text
            out.append(note)
        return out

    def _answer(self, a: dict[str, Any], text: str) -> dict[str, Any]:
        s0, s1 = a["span_start"], a["span_end"]
        # Highlight only a verbatim quote backing a value: an NA answer's quote (often a stray
        # "no" found inside some word) is no evidence, and the page says "not in the note" instead.
        span_ok = s0 is not None and s1 is not None and 0 <= s0 < s1 <= len(text) and not a["na"] and a["error"] is None
        kind = self.kinds.get(a["question"])
        numeric = kind == "numeric" or bool(a.get("candidates"))
        cands = candidates_of(a, text, self.plan) if numeric else []
        # A number is marked by its own span ("1.4 mg/dL"), not by the sentence a model quoted.
        shown = value_span(text, (s0, s1), a["value"], cands) if span_ok and numeric else (s0, s1)
        return {
            "q": a["question"],
            "k": kind,
            "v": _num(a["value"]),
            "u": a["unit"],
            "c": _num(a["converted"]),
            "why": a["why"],
            "na": bool(a["na"]),
            "g": bool(a["grounded"]) and span_ok,
            "s": [_utf16(text, shown[0]), _utf16(text, shown[1])] if span_ok else None,
            # The answer's own span in Python characters: what exported labels cite (gold's offsets).
            "p": [s0, s1] if span_ok else None,
            "src": a["source"],
            "err": a["error"],
            "m": a["method"],  # gate / rules / model (stores before evidence-first: None)
            "r": a["reading"],
            # Every value found for a numeric question: [start, end] (UTF-16), value, unit, chosen.
            "cands": [[_utf16(text, c.span_start), _utf16(text, c.span_end), _num(c.value), c.unit,
                       span_ok and c.span_start >= s0 and c.span_end <= s1 and _num(c.value) == _num(a["value"])]
                      for c in cands if 0 <= c.span_start < c.span_end <= len(text)],
        }

