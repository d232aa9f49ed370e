"""What a notebook gets back: query results read whole into Arrow, from a store opened for that one call.

A DuckDB file admits one writer or many readers per process, and a reader left open (or an Arrow
stream left unread) blocks the next `crit.run` on the same file. So nothing here keeps a connection:
each query opens the store read-only, reads its result into an Arrow table, and closes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from crit.engine.sql import ident
from crit.engine.store import Store
from crit.grammar.errors import CritError

if TYPE_CHECKING:
    import pandas

    from crit.engine.run import RunSummary

# The tables and views a screening is read through (the README's "Asking questions of the results").
TABLES = ("eligibility", "criteria", "attrition", "answers", "answer_values", "notes", "passages", "runs",
          "patient_eligibility", "patient_criteria", "patient_attrition", "patient_answers")


def to_pandas(table: pa.Table) -> pandas.DataFrame:
    """An Arrow table as a pandas DataFrame; CritError, with the install line, where pandas is absent."""
    try:
        import pandas  # noqa: F401  (imported only to say clearly when it is missing)
    except ImportError:
        raise CritError("pandas is not installed: `pip install pandas`, or use .arrow() for an Arrow table") from None
    return table.to_pandas()


class QueryResult:
    """The rows of one query, already read: `.arrow()`, `.df()`, `.fetchall()`, or printed."""

    def __init__(self, table: pa.Table):
        self._table = table

    def arrow(self) -> pa.Table:
        return self._table

    def df(self) -> pandas.DataFrame:
        return to_pandas(self._table)

    def fetchall(self) -> list[tuple[Any, ...]]:
        columns = self._table.to_pydict()
        return list(zip(*columns.values())) if columns else []

    @property
    def columns(self) -> list[str]:
        return list(self._table.column_names)

    def __len__(self) -> int:
        return self._table.num_rows

    def __repr__(self) -> str:
        shown = self._table.slice(0, 10).to_pylist()
        more = f"\n... {self._table.num_rows - 10:,} more rows" if self._table.num_rows > 10 else ""
        rows = "\n".join(repr(r) for r in shown)
        return f"QueryResult({self._table.num_rows:,} rows; columns: {', '.join(self.columns)})\n{rows}{more}"


class StoreReader:
    """A store read one query at a time (`crit.connect`): read-only, and never holding the file open."""

    def __init__(self, db: str | Path):
        self.db = Path(db)
        Store.open(self.db, read_only=True).close()  # a missing or foreign file is said now, not at the first query

    def sql(self, query: str, params: dict[str, Any] | None = None) -> QueryResult:
        """One read-only statement, as `crit sql` runs it ($name parameters from `params`)."""
        with Store.open(self.db, read_only=True) as store:
            return QueryResult(store.query_table(query, params))

    def table(self, name: str) -> pa.Table:
        """A whole table or view of the store (TABLES), as Arrow."""
        if name not in TABLES:
            raise CritError(f"no table '{name}' to read: one of {', '.join(TABLES)}")
        return self.sql(f"select * from {ident(name)}").arrow()

    def __repr__(self) -> str:
        return f"StoreReader({str(self.db)!r})"


class Screening:
    """What `crit.run` returns: the run's summary, and the store's tables as Arrow (or pandas with `.df`).

    screening.eligibility             # a pyarrow Table: one row per note, over every note in the store
    screening.df("criteria")          # the same as a pandas DataFrame
    screening.sql("select ...")       # any read-only query
    """

    def __init__(self, summary: RunSummary):
        self.summary = summary
        self.store = StoreReader(summary.db)

    def table(self, name: str) -> pa.Table:
        return self.store.table(name)

    def df(self, name: str) -> pandas.DataFrame:
        return to_pandas(self.table(name))

    def sql(self, query: str, params: dict[str, Any] | None = None) -> QueryResult:
        return self.store.sql(query, params)

    @property
    def eligibility(self) -> pa.Table:
        return self.table("eligibility")

    @property
    def criteria(self) -> pa.Table:
        return self.table("criteria")

    @property
    def attrition(self) -> pa.Table:
        return self.table("attrition")

    @property
    def answers(self) -> pa.Table:
        return self.table("answers")

    @property
    def patient_eligibility(self) -> pa.Table:
        return self.table("patient_eligibility")

    def __repr__(self) -> str:
        s = self.summary
        this = ", ".join(f"{k} {v}" for k, v in s.this_run.items())
        return (f"Screening(run {s.run_id}: {s.notes_done} notes in {s.seconds:.1f} s; this run's notes: {this}; "
                f"store {s.db!r})")
