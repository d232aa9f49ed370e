"""Quoting for SQL that crit builds from text, and the settings every DuckDB connection of crit takes.

Every name and string that reaches a statement from a .crit file or a notes file goes
through `ident` or `literal`, so no label, phrase or column name can end a literal and run as SQL.
Every connection is OFFLINE: DuckDB never installs or loads an extension, so no file (a SQLite file
given as a store, say) can make it reach the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

OFFLINE: dict[str, bool] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def ident(name: str) -> str:
    """A double-quoted SQL identifier (`"q_creat"`), inner quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A single-quoted SQL string literal, inner quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def is_sqlite_file(path: str | Path) -> bool:
    """Whether a file is a SQLite database (DuckDB would reach for its sqlite extension to open it)."""
    try:
        with Path(path).open("rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


# What a write to a store raises when the disk or the file fails it (a full disk: DuckDB's IOException, or
# its TransactionException at COMMIT; a removed drive: OSError): said to the user in one line.
WRITE_ERRORS: tuple[type[BaseException], ...] = (duckdb.IOException, duckdb.TransactionException, OSError)


def rollback(con: Any) -> None:
    """Roll back the open transaction, if DuckDB still has one: after a failed write (a full disk) it may
    have ended it already, and a second error must never hide the first."""
    try:
        con.execute("ROLLBACK")
    except Exception:  # duckdb.TransactionException: "no transaction is active"
        pass
