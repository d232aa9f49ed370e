"""Merge: join the stores of sharded runs (`crit run --shard i/n`) into one, then decide eligibility again.

`crit merge OUT shard*.duckdb` copies runs, questions, notes and answers of every
shard into OUT with ON CONFLICT DO NOTHING on their keys (the store's MERGED_TABLES),
so merging a shard twice, or shards that overlap, adds nothing twice; then the rules
are evaluated again over the merged answers, since eligibility counts are corpus-wide.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from crit.engine.eligibility import load_plan, stored_plan
from crit.engine.eligibility.evaluate import evaluate
from crit.engine.sql import WRITE_ERRORS
from crit.engine.store import Store
from crit.engine.store.schema import MERGED_TABLES
from crit.grammar.errors import CritError


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
    if not shards:
        raise CritError("crit merge: name at least one shard store")
    out_path = Path(out).resolve()
    for s in shards:
        p = Path(s)
        if not p.is_file():
            raise CritError(f"shard store '{s}' not found")
        if p.resolve() == out_path:
            raise CritError(f"'{s}' is the output store; merge into a new file")
    # A new store is built beside its name and moved there at the end, so a merge that fails (a full disk,
    # a bad shard) leaves no half-made store behind. An existing store is merged into in place: each
    # shard is one transaction.
    target = Path(out)
    building = target if target.exists() else target.with_name(f".{target.name}.merging-{os.getpid()}")
    try:
        summary = _merge_into(building, shards, crit_file)
        if building != target:
            building.replace(target)
    except BaseException as e:
        if building != target:
            for leftover in (building, building.with_name(building.name + ".wal")):
                leftover.unlink(missing_ok=True)
        if isinstance(e, WRITE_ERRORS):
            raise CritError(f"cannot write the store '{out}': {str(e).splitlines()[0]}") from None
        raise
    return summary


def _merge_into(out: Path, shards: Sequence[str | Path], crit_file: str | None) -> MergeSummary:
    added = {table: 0 for table, _ in MERGED_TABLES}
    conflicting = 0
    shard_hashes: dict[str, str | None] = {}  # shard -> the crit file hash of its newest run
    with Store.open(out) as store:
        for s in shards:
            merged = store.merge_from(s)
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
    latest = store.latest_run()
    if latest is None:
        return False, "no runs in the shards: nothing to evaluate"
    run_id = latest.run_id
    path = crit_file or latest.crit_file
    if crit_file is not None:
        if not Path(crit_file).is_file():
            return False, f"criteria file {crit_file!r} not found: pass --criteria FILE to evaluate the rules"
        plan = load_plan(crit_file)
    else:
        found, why = stored_plan(latest.model_dump())  # the plan the newest run compiled, kept in its store
        if found is None:
            return False, f"{why}: pass --criteria FILE to evaluate the rules"
        plan = found
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
