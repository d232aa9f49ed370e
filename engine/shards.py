"""Shards: split a corpus across machines by a stable hash of note_id, and merge the shard stores back.

`crit run ... --shard 2/4` keeps the notes whose id hashes to shard 2 of 4, so n
machines given the same corpus and the same `--shard i/n` scheme each run a
disjoint slice, whatever the row order of their copy of the file, and every
note lands in exactly one shard. The hash is SHA-256 of the id's UTF-8 bytes:
the same on every machine, Python version and DuckDB version (Python's hash()
and DuckDB's hash() are neither).

`crit merge OUT shard*.duckdb` copies runs, questions, notes and answers of every
shard into OUT with ON CONFLICT DO NOTHING on their keys, so merging a shard
twice, or shards that overlap, adds nothing twice; then the rules are evaluated
again over the merged answers, since eligibility counts are corpus-wide.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from crit.grammar.errors import CritError

if TYPE_CHECKING:
    from crit.engine.store import Store

# Tables a shard contributes, each with the key that makes a row the same row.
MERGED_TABLES: tuple[tuple[str, str], ...] = (
    ("runs", "run_id"),
    ("questions", "answer_key"),
    ("run_questions", "run_id, question"),
    ("notes", "note_id"),
    ("answers", "note_id, answer_key"),
    ("passages", "note_id, answer_key, passage"),
)

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class Shard(BaseModel):
    """Shard `index` of `count`, 1-based (`--shard 1/4` ... `--shard 4/4`)."""

    model_config = ConfigDict(frozen=True)

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, note_id: str) -> bool:
        return shard_of(note_id, self.count) == self.index


def parse_shard(text: str) -> Shard:
    """'2/4' -> Shard(index=2, count=4); CritError for anything else."""
    m = _SHARD.match(text)
    if not m:
        raise CritError(f"--shard {text!r}: write it as i/n, e.g. --shard 1/4 (shards are numbered 1 to n)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 1 <= index <= count:
        raise CritError(f"--shard {text!r}: i must be between 1 and n (n >= 1)")
    return Shard(index=index, count=count)


def shard_of(note_id: str, count: int) -> int:
    """The shard (1..count) a note belongs to: first 8 bytes of SHA-256(note_id), modulo count."""
    digest = hashlib.sha256(note_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


class MergeSummary(BaseModel):
    """What a merge added: rows per table, and notes whose text differs between shards (kept: the first)."""

    shards: int
    added: dict[str, int]
    conflicting_notes: int
    evaluated: bool  # whether the rules were evaluated over the merged answers
    message: str | None = None


def merge_stores(out: str | Path, shards: Sequence[str | Path], crit_file: str | None = None) -> MergeSummary:
    """Merge shard stores into `out` (created if absent), then evaluate the rules over the result.

    The rules come from `crit_file` or else from the newest run's crit file when it still
    exists with the same content (hash); without either, answers are merged and the rules
    are left for `crit run` or a later merge with --criteria.
    """
    from crit.engine.store import Store

    if not shards:
        raise CritError("crit merge: name at least one shard store")
    out_path = Path(out).resolve()
    for s in shards:
        p = Path(s)
        if not p.is_file():
            raise CritError(f"shard store '{s}' not found")
        if p.resolve() == out_path:
            raise CritError(f"'{s}' is the output store; merge into a new file")
    added = {table: 0 for table, _ in MERGED_TABLES}
    conflicting = 0
    shard_hashes: dict[str, str | None] = {}  # shard -> the crit file hash of its newest run
    with Store.open(out) as store:
        for s in shards:
            merged = store.merge_from(s, MERGED_TABLES)
            for table, n in merged.added.items():
                added[table] += n
            conflicting += merged.conflicting_notes
            shard_hashes[str(s)] = merged.newest_crit_hash
        evaluated, message = _evaluate(store, crit_file, shard_hashes)
    return MergeSummary(shards=len(shards), added=added, conflicting_notes=conflicting, evaluated=evaluated, message=message)


def _evaluate(store: Store, crit_file: str | None, shard_hashes: dict[str, str | None]) -> tuple[bool, str | None]:
    """Evaluate the rules (of `crit_file`, else of the newest run's file) with the newest run's answer keys,
    once the file is the one every shard ran (same content hash): another file's rules, or a
    file edited since, would decide eligibility from questions the shards were never asked."""
    from crit.engine.plan import load_plan, plan_from_text
    from crit.engine.rules import evaluate

    latest = store.latest_run()
    if latest is None:
        return False, "no runs in the shards: nothing to evaluate"
    run_id, run_file, run_source = latest.run_id, latest.crit_file, latest.crit_source
    path = crit_file or run_file
    if crit_file is None and run_source:
        plan = plan_from_text(run_source, run_file)  # the plan the newest run compiled, kept in its store
    elif path is None or not Path(path).is_file():
        return False, f"criteria file {path!r} not found: pass --criteria FILE to evaluate the rules"
    else:
        plan = load_plan(path)
    for shard, crit_hash in shard_hashes.items():
        if crit_hash != plan.source_hash:
            raise CritError(
                f"crit merge: '{path}' is not the criteria file shard '{shard}' ran (its hash "
                f"{plan.source_hash} differs from the shard's {crit_hash}); answers were merged, rules not evaluated "
                "(hint: pass --criteria with the file the shards ran)"
            )
    keys = store.run_answer_keys(run_id)
    evaluate(store.con, plan, {q.name: keys[q.name] for q in plan.questions if q.name in keys})
    return True, None
