"""Quoting for SQL that crit builds from text: identifiers and string literals.

Every name and string that reaches a statement from a .crit file or a notes file goes
through one of these, so no label, phrase or column name can end a literal and run as SQL.
"""

from __future__ import annotations


def ident(name: str) -> str:
    """A double-quoted SQL identifier (`"q_creat"`), inner quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A single-quoted SQL string literal, inner quotes doubled."""
    return "'" + value.replace("'", "''") + "'"
