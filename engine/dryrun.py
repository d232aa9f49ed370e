"""Dry run: read and check a whole corpus, and count the work a run would do, without loading a model.

`crit run --dry-run` checks every row of the notes by the reader's rules and asks the
store which (note, question) pairs already have an answer under the backend's identity,
for the same note text (the store keeps a SHA-256 of each note's text: a changed note is
asked again). What is left is what a run would send to the model, less the built-in sex
question where the corpus gives the sex (as run.to_ask). Nothing is written and no note
text is printed.

Where DuckDB reads the source (Parquet, a DuckDB table, notes in memory, a JSON array,
JSONL), everything is counted in one DuckDB connection, the store attached read-only
beside the notes: the reader's checks in SQL (crit.engine.notes.sql_checks), no Python
object per row. Only the bad rows shown (the first SHOWN) are worded, by the reader
itself. Where only Python reads a source exactly (CSV, a folder of .txt, n2c2, FHIR,
JSONL starting with a byte-order mark), the notes are streamed through the reader as a
run streams them.

Known limits of JSONL counted in SQL (DuckDB parses the JSON, Python's json module does
for a run): an object with the same key twice (DuckDB keeps the first, Python the last),
integer ids beyond 64 bits, "\\ud800"-style lone surrogate escapes, nesting deeper than
Python's recursion limit, and a line holding only non-ASCII whitespace can be counted
differently. The shown bad rows are checked against the reader; a disagreement there
makes the dry run count the corpus again the slow, exact way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from crit.engine.notes.columns import NoteColumns, sex_of
from crit.engine.notes.reader import BadRow, NoteReader
from crit.engine.notes.shards import Shard
from crit.engine.notes.sql_checks import checked_rows
from crit.engine.sql import ident
from crit.grammar.errors import CritError

# Rows per batch where the notes are read one by one: large, since no model waits on it.
BATCH = 20_000
# Bad rows listed (and worded); the rest are counted.
SHOWN = 50


class DryRunReport(BaseModel):
    notes_source: str
    shard: str | None
    rows: int  # rows read, good and bad
    notes: int  # good notes (in the shard)
    questions: int
    pairs_total: int  # notes x questions
    pairs_cached: int  # already answered for this note text under this backend
    pairs_skipped: int = 0  # the sex question, not asked where the corpus gives the sex
    pairs_left: int  # what a run would ask: total - cached - skipped
    notes_left: int  # notes with at least one pair left
    patients: int = 0  # distinct patient ids among the notes (0: the notes name none)
    dated: int = 0  # notes with a date (windows read only these)
    bad_row_count: int  # every bad row
    bad_rows: list[BadRow]  # the first SHOWN of them
    seconds: float

    def lines(self) -> list[str]:
        """The report as plain lines for the terminal."""
        shard = f" (shard {self.shard})" if self.shard else ""
        skipped = f", {self.pairs_skipped:,} not asked (the notes give the sex)" if self.pairs_skipped else ""
        out = [
            f"{self.notes_source}: {self.rows:,} rows read, {self.notes:,} notes{shard}, {self.bad_row_count:,} bad rows",
            f"{self.questions} questions: {self.pairs_total:,} note-question pairs, {self.pairs_cached:,} answered "
            f"already{skipped}, {self.pairs_left:,} left over {self.notes_left:,} notes",
        ]
        if self.patients or self.dated:
            out.append(f"{self.patients:,} patients; {self.dated:,} of {self.notes:,} notes dated")
        out += [f"  bad {b.describe()}" for b in self.bad_rows[:SHOWN]]
        if self.bad_row_count > SHOWN:
            out.append(f"  ... and {self.bad_row_count - SHOWN:,} more bad rows")
        out.append(f"checked in {self.seconds:.1f} s; no model was loaded")
        return out


class _Counts(BaseModel):
    source: str
    rows: int
    notes: int
    cached: int
    skipped: int
    notes_left: int
    patients: int
    dated: int
    bad_row_count: int
    bad_rows: list[BadRow]


def dry_run(
    notes_source: str | Path | object,
    answer_keys: Mapping[str, str],
    db: str | Path | None = None,
    shard: Shard | None = None,
    columns: NoteColumns | None = None,
    batch_size: int = BATCH,
    sex_key: str | None = None,
) -> DryRunReport:
    """Check every row of `notes_source` and count the pairs not yet answered in `db` (None or absent: all).
    `sex_key`: the answer key of the built-in sex question, not asked of a note that gives its sex (None: the
    plan needs no sex, or has no such question)."""
    started = time.perf_counter()
    keys = sorted(set(answer_keys.values()))
    store = store_path(db)
    sex = sex_key if sex_key in keys else None
    with NoteReader(notes_source, columns, attach_store=store) as reader:
        counts = count_in_sql(reader, keys, store is not None, shard, sex)
    if counts is None:  # a source only Python reads exactly
        counts = count_by_reading(notes_source, columns, keys, store, shard, sex, batch_size)
    total = counts.notes * len(keys)
    return DryRunReport(
        notes_source=counts.source,
        shard=str(shard) if shard else None,
        rows=counts.rows,
        notes=counts.notes,
        questions=len(keys),
        pairs_total=total,
        pairs_cached=counts.cached,
        pairs_skipped=counts.skipped,
        pairs_left=total - counts.cached - counts.skipped,
        notes_left=counts.notes_left,
        patients=counts.patients,
        dated=counts.dated,
        bad_row_count=counts.bad_row_count,
        bad_rows=counts.bad_rows,
        seconds=round(time.perf_counter() - started, 2),
    )


def store_path(db: str | Path | None) -> Path | None:
    """The store to count against: None when there is none yet (absent, or an empty DuckDB file); CritError
    for a DuckDB file crit did not make (a run would refuse to write it)."""
    from crit.engine.store import Store

    if db is None or not Path(db).exists():
        return None
    with Store.open(db, read_only=True) as store:
        made_by = store.made_by()
    if made_by == "crit":
        return Path(db)
    if made_by != "nobody":
        raise CritError(f"'{db}' is a DuckDB file crit did not make (no crit schema): a run would refuse to "
                        "write it; use another --db file")
    return None  # an empty file holds no answers yet


def _shard_sql(shard: Shard | None) -> str:
    """SQL true for the note ids of the shard (shards.shard_of: SHA-256 of the id, first 8 bytes, big-endian)."""
    if shard is None:
        return "true"
    return f"(('0x' || substr(sha256(note_id), 1, 16))::UBIGINT % {int(shard.count)} + 1 = {int(shard.index)})"


def count_in_sql(reader: NoteReader, keys: list[str], has_store: bool, shard: Shard | None,
                  sex_key: str | None) -> _Counts | None:
    """The counts in SQL over the reader's connection; None where the source is not read by DuckDB, or where
    the shown bad rows disagree with the reader (then the caller reads the notes one by one).

    A pass over the ids tells whether any id repeats; where none does (and the notes name no patients), one
    pass over the text counts everything. Otherwise the rows (ids, no text) are kept in a temporary table,
    to mark which row of an id is the duplicate (the first usable one is not) and to count the patients."""
    checked_source = reader.sql_source()
    checked = checked_rows(reader)
    if checked is None or checked_source is None:
        return None
    sql, params = checked
    if reader.kind == "parquet":
        # DuckDB reads ahead whole row groups of text otherwise: 3x the memory, no faster (one pass, in order).
        reader.query("SET disable_parquet_prefetching = true")
    notes = "crit_store.notes" if has_store else "(SELECT NULL::VARCHAR AS note_id, NULL::VARCHAR AS text_hash LIMIT 0)"
    answers = ("crit_store.answers" if has_store
               else "(SELECT NULL::VARCHAR AS note_id, NULL::VARCHAR AS answer_key LIMIT 0)")
    raw = ["a_" + n for n in reader.attribute_columns]
    # Per record, the work a run would not do: answers stored under the run's keys for the same text (the text
    # is hashed only for the notes the store holds: store.text_hash, the first 16 hex digits of SHA-256), and
    # the sex question where the notes give the sex. The text goes no further than this.
    skip = "true" if sex_key is not None else "false"
    hashed = (
        "SELECT c.*, CASE WHEN s.text_hash IS NOT NULL THEN s.text_hash = substr(sha256(c.text), 1, 16) END AS same, "
        f"a.n, a.sex_done FROM ({sql}) c LEFT JOIN {notes} s ON s.note_id = c.note_id LEFT JOIN (SELECT note_id, "
        f"count(*) AS n, bool_or(answer_key = $sex) AS sex_done FROM {answers} "
        "WHERE list_contains($keys::VARCHAR[], answer_key) GROUP BY note_id) a ON a.note_id = c.note_id"
    )
    per_row = (
        "SELECT * EXCLUDE (text, same, n, sex_done), id_ok AND rest_ok AS usable, "
        "CASE WHEN same THEN coalesce(n, 0) ELSE 0 END AS cached, "
        f"{skip} AND has_sex AND NOT (coalesce(same, false) AND coalesce(sex_done, false)) AS skipped FROM ({hashed})"
    )
    named = params | {"sex": sex_key, "keys": keys, "k": len(keys)}
    # A DISTINCT count over the pass that reads the text makes DuckDB hold far more of it, and run slower:
    # patients are counted over the rows kept without their text.
    names_patients = "patient_id" in reader.attribute_columns
    shown_row = ("{'row': row, 'note_id': note_id, 'text_length': text_length, 'text_blank': text_blank, "
                 "'problem': problem, 'duplicate': duplicate" + "".join(f", {ident(c)}: {ident(c)}" for c in raw) + "}")
    counts = (
        f"count(*) FILTER (good AND {_shard_sql(shard)}), "
        + (f"count(DISTINCT patient) FILTER (good AND {_shard_sql(shard)}), " if names_patients else "0, ") +
        f"count(*) FILTER (good AND {_shard_sql(shard)} AND dated), "
        f"coalesce(sum(cached) FILTER (good AND {_shard_sql(shard)}), 0), "
        f"count(*) FILTER (good AND {_shard_sql(shard)} AND skipped), "
        f"count(*) FILTER (good AND {_shard_sql(shard)} AND cached + skipped::INTEGER < $k), "
        f"count(*), count(*) FILTER (NOT good), min_by({shown_row}, row, {SHOWN}) FILTER (NOT good)"
    )
    # First pass, over the ids alone (DuckDB reads no text for it): does any id repeat? 128-bit hashes of the
    # ids: as many distinct hashes as ids, no id repeats; fewer, some does (or two hashes collide: the second
    # way is exact either way). Kept apart from the pass over the text, so the two never hold memory at once.
    source, source_params, _ = checked_source
    ((repeats,),) = _query(
        reader, f"SELECT count(note_id) - count(DISTINCT md5_number(note_id)) FROM ({source})", source_params)
    if repeats or names_patients:
        found = _count_with_duplicates(reader, per_row, counts, named)
    else:  # every usable row is good: one pass over the text
        ((*found,),) = _query(reader, f"SELECT {counts} FROM (SELECT *, usable AS good, false AS duplicate "
                                      f"FROM ({per_row}))", named)
    notes_n, patients, dated, cached, skipped, notes_left, rows, bad, first_bad = found
    shown = _word_bad_rows(reader, list(reader.attribute_columns), first_bad or [])
    if shown is None:
        return None
    return _Counts(source=reader.source, rows=rows, notes=notes_n, cached=int(cached), skipped=skipped,
                   notes_left=notes_left, patients=patients, dated=dated, bad_row_count=bad, bad_rows=shown)


def _count_with_duplicates(reader: NoteReader, per_row: str, counts: str, named: dict[str, Any]) -> list[Any]:
    """The counts where some id may be held by two usable rows: the first is good, a later one a duplicate (a
    bad row before it does not make it one). The rows, without text, are kept in a temporary table."""
    _query(reader, f"CREATE OR REPLACE TEMP TABLE crit_dry AS {per_row}", named)
    try:
        marked = (
            "SELECT d.*, d.usable AND coalesce(d.row = f.first, true) AS good, "
            "coalesce(d.id_ok AND f.first < d.row, false) AS duplicate FROM crit_dry d LEFT JOIN "
            "(SELECT note_id, min(row) AS first FROM crit_dry WHERE usable GROUP BY note_id HAVING count(*) > 1) f "
            "USING (note_id)"
        )
        ((*found,),) = _query(reader, f"SELECT {counts} FROM ({marked})", named)
    finally:
        reader.query("DROP TABLE IF EXISTS crit_dry")
    return found


def _query(reader: NoteReader, sql: str, named: dict[str, Any]) -> list[tuple[Any, ...]]:
    """reader.query with named parameters, keeping only those the SQL names (DuckDB refuses the others)."""
    import re

    used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", sql))
    return reader.query(sql, {k: v for k, v in named.items() if k in used})


def _word_bad_rows(reader: NoteReader, names: list[str], found: list[dict[str, Any]]) -> list[BadRow] | None:
    """The first SHOWN bad rows, each worded by the reader (NoteReader.reason); None when the reader finds one
    of them good (SQL and Python disagree: the counts cannot be trusted)."""
    shown: list[BadRow] = []
    if reader.kind == "jsonl":  # worded from the lines themselves: Python's types, line numbers
        lines = reader.jsonl_rows_at({int(r["row"]) for r in found})
        for r in found:
            if r["row"] not in lines:
                return None
            record, note_id, text, length, values, problem, where = lines[r["row"]]
            reason = reader.reason(note_id, text, length, problem, values, r["duplicate"])
            if reason is None:
                return None
            shown.append(BadRow(row=record, note_id=note_id or None, reason=reason, where=where))
        return shown
    for r in found:
        # The reason needs of the text only whether it is blank: no note text is read back.
        text = None if r["text_blank"] else "(text)"
        values = {n: r["a_" + n] for n in names}
        reason = reader.reason(r["note_id"], text, r["text_length"], r["problem"], values, r["duplicate"])
        if reason is None:
            return None
        shown.append(BadRow(row=r["row"], note_id=r["note_id"] or None, reason=reason, where=f"row {r['row']}"))
    return shown


def count_by_reading(notes_source: Any, columns: NoteColumns | None, keys: list[str], db: Path | None,
                      shard: Shard | None, sex_key: str | None, batch_size: int) -> _Counts:
    """The counts with every note read through the reader, in batches, as a run reads them."""
    from crit.engine.store import Store, text_hash

    good = notes = cached = skipped = notes_left = dated = 0
    patients: set[str] = set()
    store = Store.open(db, read_only=True) if db is not None else None
    try:
        with NoteReader(notes_source, columns) as reader:
            for batch in reader.batches(size=batch_size):
                good += len(batch)
                if shard is not None:
                    batch = [n for n in batch if shard.holds(n.note_id)]
                if not batch:
                    continue
                notes += len(batch)
                patients.update(n.patient_id for n in batch if n.patient_id is not None)
                dated += sum(1 for n in batch if n.note_date is not None)
                # Answers count only for the same note text: a changed note is asked again. Only notes
                # already in the store are hashed (most of a big corpus is not).
                answered: dict[str, int] = {}
                sex_done: set[str] = set()
                if store is not None:
                    texts = {n.note_id: n.text for n in batch}
                    ids = list(texts)
                    answered = {i: c for i, h, c in store.stored_answers(ids, keys) if text_hash(texts[i]) == h}
                    if sex_key is not None:
                        sex_done = {i for i, _, c in store.stored_answers(list(answered), [sex_key]) if c}
                for n in batch:
                    skip = sex_key is not None and sex_of(n.sex) is not None and n.note_id not in sex_done
                    cached += answered.get(n.note_id, 0)
                    skipped += skip
                    notes_left += answered.get(n.note_id, 0) + skip < len(keys)
            bad = list(reader.bad_rows)
            source = reader.source
    finally:
        if store is not None:
            store.close()
    return _Counts(source=source, rows=good + len(bad), notes=notes, cached=cached, skipped=skipped,
                   notes_left=notes_left, patients=len(patients), dated=dated, bad_row_count=len(bad),
                   bad_rows=bad[:SHOWN])
