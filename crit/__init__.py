"""crit: clinical trial screening over notes.

The code lives in three subpackages: ``crit.grammar`` (the language: text -> AST -> plan),
``crit.engine`` (notes -> reading -> answering -> store -> eligibility -> report, one folder a
stage) and ``crit.trainer`` (distil the student model that backs the engine). This module is
the front door: the `crit` command calls these functions.

For a notebook, three functions are enough::

    import crit
    plan = crit.load("criteria/aristotle.crit")
    screening = crit.run(plan, notes_df, db="results.duckdb", backend="rules")  # a path, DataFrame, Arrow table or list of dicts
    screening.eligibility                                                     # a pyarrow Table; .df("eligibility") for pandas
    crit.connect("results.duckdb").sql("select * from criteria").df()
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crit.engine.dryrun import DryRunReport
    from crit.engine.notes.columns import NoteColumns
    from crit.engine.results import Screening, StoreReader
    from crit.engine.run import Progress
    from crit.grammar.plan import Plan

__version__ = "0.1.0"
__all__ = ["connect", "dry_run", "load", "run"]


def load(path: str | Path) -> Plan:
    """Read, check and compile a .crit file into a Plan (raises CritError with every error)."""
    from crit.engine.eligibility import load_plan

    return load_plan(path)


def run(plan: Plan | str | Path, notes: Any, *, db: str | Path, backend: str = "transformers",
        columns: NoteColumns | None = None, limit: int | None = None, batch_size: int = 4,
        workers: int | None = None, memory: str | None = None, gate: bool = True,
        policy: str = "rules-then-model", shard: str | None = None, trust: str | Path | None = None,
        infer: bool = False, progress: bool = True, on_progress: Callable[[Progress], None] | None = None, **options: Any) -> Screening:
    """Screen `notes` against `plan` into the store `db`, as `crit run` does (the command calls this).

    `notes` is a path (any source `crit run` reads) or the notes themselves: a list of dicts, a pandas
    DataFrame or a pyarrow Table, with the same columns a file would have. `backend` is a `--backend`
    choice (crit.engine.answering.registry.backends()); `options` are that backend's own (model=,
    adapter=, device=, base_url=, ...), or note columns (id_column=, ...) when `columns` is not given.
    `batch_size` is the commit size where a model may be asked; `workers` the processes that answer a run
    the rules answer whole (default: every core); `memory` what the store's DuckDB may hold in memory (a size,
    "4GB"; default crit.engine.run.STORE_MEMORY). `shard` is "i/n". `trust` is a trust profile file (`crit calibrate`), "none" for the conservative
    policy, or None for the profile crit ships for the model, if any. `infer` lets a trusted model answer
    every boolean question from the whole note where no passage names it (as `infer` in the file does).
    `progress` draws a bar (terminal or notebook); `on_progress` gets each batch's
    Progress. Returns a Screening: `.summary`, and the store's tables as Arrow (`.eligibility`, ...)."""
    from crit.engine.answering.registry import factory_for
    from crit.engine.notes.shards import parse_shard
    from crit.engine.results import Screening
    from crit.engine.run import run as run_plan

    plan = load(plan) if isinstance(plan, (str, Path)) else plan
    columns = _columns(columns, options)
    factory = factory_for(backend, **options)
    profile = _trust(factory, trust)

    def screen(report: Callable[[Progress], None] | None) -> Screening:
        summary = run_plan(plan, notes, db, factory, limit=limit, batch_notes=batch_size, workers=workers,
                           memory=memory, columns=columns, on_progress=report, shard=parse_shard(shard) if shard else None, gate=gate,
                           policy=policy, trust=profile, infer=infer)  # type: ignore[arg-type]
        return Screening(summary)

    if not progress:
        return screen(on_progress)
    from crit.engine.progress import progress_bar

    with progress_bar() as draw:
        if on_progress is None:
            return screen(draw)

        def both(p: Progress) -> None:
            draw(p)
            on_progress(p)

        return screen(both)


def dry_run(plan: Plan | str | Path, notes: Any, *, db: str | Path | None = None,
            backend: str = "transformers", columns: NoteColumns | None = None, gate: bool = True,
            policy: str = "rules-then-model", shard: str | None = None, trust: str | Path | None = None,
            infer: bool = False, **options: Any) -> DryRunReport:
    """Read and check every note and count the note-question pairs `run` would still ask; load no model,
    write nothing (`crit run --dry-run`)."""
    from crit.engine.answering.registry import factory_for
    from crit.engine.dryrun import dry_run as check_corpus
    from crit.engine.notes.shards import parse_shard
    from crit.engine.run import answer_keys

    plan = load(plan) if isinstance(plan, (str, Path)) else plan
    columns = _columns(columns, options)
    factory = factory_for(backend, **options)
    keys = answer_keys(plan, factory, gate=gate, policy=policy, trust=_trust(factory, trust),  # type: ignore[arg-type]
                       infer=infer)
    # run.to_ask skips the built-in sex question where the notes give the sex (a plan that needs it)
    sex_key = keys.get("sex") if plan.needs_sex else None
    return check_corpus(notes, keys, db, shard=parse_shard(shard) if shard else None, columns=columns,
                        sex_key=sex_key)


def _trust(factory: Any, choice: str | Path | None) -> Any:
    """The trust profile a run of this backend uses (crit.engine.answering.trust.profile_for); none for the rules.
    A backend that cannot start here is said first (its identity may need what it lacks)."""
    from crit.engine.answering.registry import require
    from crit.engine.answering.trust import profile_for

    if factory.name == "rules":
        return None
    require(factory)
    return profile_for(factory.identity(), choice)


def _columns(columns: NoteColumns | None, options: dict[str, Any]) -> NoteColumns:
    """`columns`, or the NoteColumns fields given as keywords (taken out of `options`)."""
    from crit.engine.notes.columns import NoteColumns

    named = {k: options.pop(k) for k in list(options) if k in NoteColumns.model_fields}
    if columns is not None and named:
        from crit.grammar.errors import CritError

        raise CritError(f"give the note columns once: columns= or {', '.join(named)}=, not both")
    return columns if columns is not None else NoteColumns(**named)


def connect(db: str | Path) -> StoreReader:
    """The store, read-only: `.sql(query)` gives a result read whole (`.arrow()`, `.df()`, `.fetchall()`),
    `.table(name)` a table or view as Arrow. No connection stays open between calls, so a `crit.run` on the
    same file can follow at any time."""
    from crit.engine.results import StoreReader

    return StoreReader(db)
