"""The reader's row checks in SQL: which records of a source are good notes, without a Python object per row.

NoteReader.batches() checks each record in Python (_problem, then _attributes); crit run --dry-run
counts a whole corpus, so it asks the same questions of every record in one DuckDB query over
NoteReader.sql_source(). The rules are the reader's, in the reader's order:

- the record's own problem (not JSON, not an object, an id or text of the wrong type), then
- no note id (missing, or only whitespace), then a duplicate id (an earlier *good* row has it:
  decided after this query, from the rows it marks `id_ok` and `rest_ok`), then
- text longer than max_chars, empty text (missing or only whitespace), then
- an attribute that is unusable: a date not written YYYY-MM-DD (parse_date), an empty patient id,
  a JSON value of the wrong type.

"Whitespace" is Python's (str.strip), not SQL's trim: the characters are listed from str.isspace.
Only whether a row is bad is decided here; the reason a shown bad row gets is worded by the
reader itself (NoteReader.reason), so the two cannot drift apart in wording.
"""

from __future__ import annotations

from typing import Any

from crit.engine.notes.columns import FEMALE, MALE
from crit.engine.notes.reader import NoteReader
from crit.engine.sql import ident, literal

# Every character Python's str.strip() removes (str.isspace; tests/test_dry_run_sql.py checks the list): SQL's
# trim() removes only spaces.
WHITESPACE = "\x09\x0a\x0b\x0c\x0d\x1c\x1d\x1e\x1f\x20\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_BLANK_RE = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE) + "]*"
# parse_date's _ISO_DATE in RE2 (ASCII digits, as re.ASCII makes \d there).
_ISO_RE = (r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
           r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]{1,9})?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?")
# json_type() of a JSON value NoteReader._attributes takes as an id or attribute: text or a whole number.
_TEXT_OR_WHOLE = "('VARCHAR', 'BIGINT', 'UBIGINT', 'NULL')"


def blank(sql: str) -> str:
    """SQL true where a VARCHAR is NULL or only whitespace (Python's `not value or not value.strip()`)."""
    return f"({sql} IS NULL OR regexp_full_match({sql}, {literal(_BLANK_RE)}))"


def strip(sql: str) -> str:
    """SQL for Python's value.strip()."""
    return f"trim({sql}, {literal(WHITESPACE)})"


def _date_ok(value: str) -> str:
    """SQL true where parse_date(value) returns a date or None (does not raise)."""
    s = strip(value)
    time_ok = (f"(length({s}) = 10 OR (try_cast(substr({s}, 12, 2) AS INTEGER) < 24 "
               f"AND try_cast(substr({s}, 15, 2) AS INTEGER) < 60 "
               f"AND (substr({s}, 17, 1) <> ':' OR try_cast(substr({s}, 18, 2) AS INTEGER) < 60)))")
    return (f"({blank(value)} OR CASE WHEN regexp_full_match({s}, {literal(_ISO_RE)}) "
            f"THEN try_cast(substr({s}, 1, 10) AS DATE) IS NOT NULL AND substr({s}, 1, 4) <> '0000' AND {time_ok} "
            "ELSE false END)")


def checked_rows(reader: NoteReader) -> tuple[str, dict[str, Any]] | None:
    """(SELECT, named parameters) with one row per source record: `row` (its 1-based number), note_id, text (uncut,
    for hashing), id_ok (no problem, an id: a duplicate check is still due), rest_ok (text and attributes
    usable), has_sex (the corpus gives the sex, as run.to_ask reads it), patient, dated, and what the reader
    needs to word a bad row: text_length (in characters, only where that may be over max_chars, else NULL),
    text_blank, problem, a_* and j_*. None where the source is read
    only by Python (NoteReader.sql_source)."""
    source = reader.sql_source()
    if source is None:
        return None
    sql, params, numbered = source
    attrs = reader.attribute_columns
    typed = reader.kind == "jsonl"  # JSONL values keep their JSON type (j_*), which _attributes checks
    checks = []
    for name in attrs:
        a, j = ident("a_" + name), ident("j_" + name)
        if name in ("note_date", "index_date"):
            ok = _date_ok(a)
            if typed:  # a JSON value that is not a string: "is a number, not a date"
                ok = f"(({j} IS NULL OR {j} IN ('VARCHAR', 'NULL')) AND {ok})"
        else:
            ok = "true" if name != "patient_id" else f"NOT {blank(a)}"
            if typed:
                ok = f"(({j} IS NULL OR {j} IN {_TEXT_OR_WHOLE}) AND {ok})"
        checks.append(ok)
    sexes = ", ".join(literal(s) for s in (*MALE, *FEMALE))
    has_sex = f"coalesce(lower({strip(ident('a_sex'))}) IN ({sexes}), false)" if "sex" in attrs else "false"
    patient = f"nullif({strip(ident('a_patient_id'))}, '')" if "patient_id" in attrs else "NULL"
    dated = f"NOT {blank(ident('a_note_date'))}" if "note_date" in attrs else "false"
    row = "row_hint" if numbered else "row_number() OVER ()"
    raw = "".join(f", {ident('a_' + n)}" for n in attrs) + "".join(f", {ident('j_' + n)}" for n in attrs if typed)
    # The text is looked at once, in the inner SELECT (a note is kilobytes): its length in characters only where
    # its length in bytes (known without reading it) is over the limit, and whether it is blank.
    limit = int(reader.max_chars)
    measured = (f"SELECT *, CASE WHEN strlen(text) <= {limit} THEN NULL ELSE length(text) END AS long_length, "
                f"{blank('text')} AS text_blank FROM ({sql})")
    return (
        f"SELECT {row} AS row, note_id, text, long_length AS text_length, text_blank, problem, "
        f"problem IS NULL AND NOT {blank('note_id')} AS id_ok, "
        f"coalesce(long_length, 0) <= {limit} AND NOT text_blank"
        + "".join(f" AND {c}" for c in checks) + " AS rest_ok, "
        f"{has_sex} AS has_sex, {patient} AS patient, {dated} AS dated{raw} FROM ({measured})",
        params,
    )
