"""crit: clinical trial screening over notes.

The code lives in three subpackages, one stage each:
``crit.grammar`` (text -> AST), ``crit.engine`` (plan, evidence, backends, rules, store, CLI)
and ``crit.trainer`` (distil the student model that backs the engine).

For a notebook, three functions are enough::

    import crit
    plan = crit.load("criteria/aristotle.crit")
    crit.run(plan, "examples/mtsamples-sample.jsonl", db="results.duckdb", backend="rules")
    crit.connect("results.duckdb").sql("select * from eligibility").df()
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

    from crit.engine.plan import Plan
    from crit.engine.run import RunSummary

__version__ = "0.1.0"
__all__ = ["connect", "load", "run"]


def load(path: str | Path) -> Plan:
    """Read, check and compile a .crit file into a Plan (raises CritError with every error)."""
    from crit.engine.plan import load_plan

    return load_plan(path)


def run(plan: Plan | str | Path, notes: str | Path, *, db: str | Path, backend: str = "transformers",
        **options: Any) -> RunSummary:
    """Screen `notes` against `plan` into the store `db`, as `crit run` does.

    `backend` is a `--backend` choice ("transformers", "rules", "openai", "vllm", "ray"); `options`
    are the backend's own (model=, adapter=, device=, base_url=, ...) and run's (limit=, gate=,
    policy=, id_column=, text_column=, sex_column=, patient_column=, date_column=, index_date_column=,
    batch_notes=, shard=)."""
    from crit.engine.backends.registry import BACKENDS
    from crit.engine.backends.scale import factory_for
    from crit.engine.run import run as run_plan

    if isinstance(plan, (str, Path)):
        plan = load(plan)
    if backend not in BACKENDS:
        from crit.grammar.errors import CritError

        raise CritError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    run_options = {"limit", "gate", "policy", "id_column", "text_column", "sex_column", "patient_column",
                   "date_column", "index_date_column", "batch_notes", "shard",
                   "on_progress"}
    factory = factory_for(BACKENDS, backend, **{k: v for k, v in options.items() if k not in run_options})
    return run_plan(plan, notes, db, factory, **{k: v for k, v in options.items() if k in run_options})


def connect(db: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection to a store (no file, network or extension access beyond it)."""
    from crit.engine.store import Store

    return Store.open(db, read_only=True).con
