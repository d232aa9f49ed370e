"""Notes held in memory (a notebook's list of dicts, pandas DataFrame or Arrow table), as one Arrow table.

The reader reads such a table through DuckDB exactly as it reads a Parquet file, so the same columns
are looked for, the same types are checked and the same rows are bad rows. Nothing is copied to disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from crit.grammar.errors import CritError

# The 1-based row number the reader reports a bad row by (a name no corpus uses).
ROW_COLUMN = "__crit_row"


def is_in_memory(notes: object) -> bool:
    """True for notes passed as data rather than named by a path."""
    return not isinstance(notes, (str, Path))


def note_table(notes: object) -> pa.Table:
    """`notes` as an Arrow table with a row-number column: a pyarrow Table, RecordBatch or
    RecordBatchReader, a pandas (or any Arrow-exporting) DataFrame, or a list of dicts."""
    table = _as_table(notes)
    if ROW_COLUMN in table.column_names:
        raise CritError(f"the notes have a column named '{ROW_COLUMN}', which crit keeps for row numbers")
    return table.append_column(ROW_COLUMN, pa.array(range(1, table.num_rows + 1), pa.int64()))


def describe(table: pa.Table) -> str:
    """How messages name an in-memory source."""
    return f"the notes passed in memory ({table.num_rows:,} rows)"


def _as_table(notes: object) -> pa.Table:
    if isinstance(notes, pa.Table):
        return notes
    if isinstance(notes, pa.RecordBatch):
        return pa.Table.from_batches([notes])
    if isinstance(notes, pa.RecordBatchReader):
        return notes.read_all()
    if type(notes).__module__.startswith("pandas"):
        return _from_pandas(notes)
    if hasattr(notes, "__arrow_c_stream__"):  # polars and other Arrow-native frames
        return pa.table(notes)
    if isinstance(notes, (list, tuple)):
        return _from_dicts(notes)
    raise CritError(f"cannot read notes from a {type(notes).__name__}: pass a path, a list of dicts, "
                    "a pandas DataFrame or a pyarrow Table")


def _from_pandas(frame: Any) -> pa.Table:
    if not hasattr(frame, "columns"):  # a Series
        raise CritError("cannot read notes from a pandas Series: pass a DataFrame with id and text columns")
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise CritError(f"cannot read the notes DataFrame: {_first_line(e)} (give each column one type; "
                        "note ids as text, for example df['note_id'].astype(str))") from None


def _from_dicts(rows: list[Any] | tuple[Any, ...]) -> pa.Table:
    if not rows:
        raise CritError("no notes: the list is empty")
    columns: dict[str, list[Any]] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise CritError(f"note {i + 1} of the list is a {type(row).__name__}, not a dict with id and text")
        for key in row:
            columns.setdefault(str(key), [])
    for name, values in columns.items():  # every row gives every column (None where it lacks one)
        values.extend(row.get(name) for row in rows)
    arrays = {}
    for name, values in columns.items():
        if any(isinstance(v, str) for v in values):  # dates beside text: written out, as a file would hold them
            values = [v.isoformat() if isinstance(v, (date, datetime)) else v for v in values]
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise CritError(f"cannot read the notes list: key '{name}' holds values of more than one type "
                            f"({_first_line(e)}); give each key one type, note ids as text") from None
    return pa.table(arrays)


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
