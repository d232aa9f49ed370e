"""Dry run: read and check a whole corpus, and count the work a run would do, without loading a model.

`crit run --dry-run` streams every note through crit.engine.notes (the same reader
and checks as a real run, in large batches, never the whole corpus in memory),
keeps the notes of the chosen shard, and asks the store which (note, question)
pairs already have an answer under the backend's identity, for the same note
text. What is left is what a run would send to the model; bad rows are listed by
row number. Nothing is written and no note text is printed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

from crit.engine.notes.columns import NoteColumns
from crit.engine.notes.reader import BadRow, NoteReader
from crit.engine.notes.shards import Shard
from crit.grammar.errors import CritError

# Rows per batch: large, since no model waits on it; memory stays at a few batches of text.
BATCH = 20_000


class DryRunReport(BaseModel):
    notes_source: str
    shard: str | None
    rows: int  # rows read, good and bad
    notes: int  # good notes (in the shard)
    questions: int
    pairs_total: int  # notes x questions
    pairs_cached: int  # already answered for this note text under this backend
    pairs_left: int
    notes_left: int  # notes with at least one pair left
    patients: int = 0  # distinct patient ids among the notes (0: the notes name none)
    dated: int = 0  # notes with a date (windows read only these)
    bad_rows: list[BadRow]
    seconds: float

    def lines(self) -> list[str]:
        """The report as plain lines for the terminal."""
        shard = f" (shard {self.shard})" if self.shard else ""
        out = [
            f"{self.notes_source}: {self.rows:,} rows read, {self.notes:,} notes{shard}, {len(self.bad_rows):,} bad rows",
            f"{self.questions} questions: {self.pairs_total:,} note-question pairs, {self.pairs_cached:,} answered "
            f"already, {self.pairs_left:,} left over {self.notes_left:,} notes",
        ]
        if self.patients or self.dated:
            out.append(f"{self.patients:,} patients; {self.dated:,} of {self.notes:,} notes dated")
        out += [f"  bad {b.describe()}" for b in self.bad_rows[:50]]
        if len(self.bad_rows) > 50:
            out.append(f"  ... and {len(self.bad_rows) - 50:,} more bad rows")
        out.append(f"checked in {self.seconds:.1f} s; no model was loaded")
        return out


def dry_run(
    notes_source: str | Path | object,
    answer_keys: Mapping[str, str],
    db: str | Path | None = None,
    shard: Shard | None = None,
    columns: NoteColumns | None = None,
    batch_size: int = BATCH,
) -> DryRunReport:
    """Check every row of `notes_source` and count the pairs not yet answered in `db` (None or absent: all)."""
    from crit.engine.store import Store, text_hash

    started = time.perf_counter()
    keys = sorted(set(answer_keys.values()))
    store = Store.open(db, read_only=True) if db is not None and Path(db).exists() else None
    if store is not None and store.made_by() != "crit":
        made_by = store.made_by()
        store.close()
        store = None  # an empty file holds no answers yet
        if made_by != "nobody":
            raise CritError(f"'{db}' is a DuckDB file crit did not make (no crit schema): a run would refuse to "
                            "write it; use another --db file")
    good = notes = cached = notes_left = dated = 0
    source = str(notes_source)
    patients: set[str] = set()
    try:
        with NoteReader(notes_source, columns) as reader:
            source = reader.source
            for batch in reader.batches(size=batch_size):
                good += len(batch)
                if shard is not None:
                    batch = [n for n in batch if shard.holds(n.note_id)]
                if not batch:
                    continue
                notes += len(batch)
                patients.update(n.patient_id for n in batch if n.patient_id is not None)
                dated += sum(1 for n in batch if n.note_date is not None)
                if store is None:
                    notes_left += len(batch)
                    continue
                stored = store.stored_answers([n.note_id for n in batch], keys)
                # Answers count only for the same note text: a changed note is asked again. Only notes
                # already in the store are hashed (most of a big corpus is not).
                texts = {n.note_id: n.text for n in batch}
                done = 0
                for note_id, stored_hash, count in stored:
                    if text_hash(texts[note_id]) == stored_hash:
                        cached += int(count)
                        done += int(count) == len(keys)
                notes_left += len(batch) - done
            bad = list(reader.bad_rows)
            rows = good + len(bad)
    finally:
        if store is not None:
            store.close()
    total = notes * len(keys)
    return DryRunReport(
        notes_source=source,
        shard=str(shard) if shard else None,
        rows=rows,
        notes=notes,
        questions=len(keys),
        pairs_total=total,
        pairs_cached=cached,
        pairs_left=total - cached,
        notes_left=notes_left,
        patients=len(patients),
        dated=dated,
        bad_rows=bad,
        seconds=round(time.perf_counter() - started, 2),
    )

