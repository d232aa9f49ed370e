"""The note reader: read a corpus of clinical notes, in batches, and set aside the rows that cannot run.

Sources: JSONL (.jsonl/.ndjson), a JSON array (.json), CSV (.csv/.tsv), Parquet,
a folder of .txt files (note_id = file stem), n2c2 2018 patient files (.xml, one
per patient, or a folder of them: crit.engine.notes.n2c2), FHIR R4 JSON (a .json
Bundle or DocumentReference, or .ndjson of resources: crit.engine.notes.fhir; told
from other JSON by its `resourceType`), or a table in a DuckDB file
written `file.duckdb:table`. Besides its id and text, a note may carry its sex, its
patient's id, its date and the patient's index date (ATTRIBUTES). Everything is
streamed (DuckDB record-batch cursors; CSV and JSONL line by line), so a corpus larger than memory never sits in Python at once.
CSV and JSONL are read by Python with a declared format rather than guessed by a
sniffer, so one odd row cannot change how the others are read.

A bad row (no id, an id seen before, empty text, text that is not UTF-8 or not
valid JSON, an id or text of the wrong type, a malformed CSV record, text longer
than `max_chars`) is recorded as a BadRow with its
1-based row number (the record's position in the file; for a folder, the file
name) and skipped; the other rows run. A missing or unreadable source is a
CritError. Nothing here prints or logs note text.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from pydantic import BaseModel, ConfigDict

from crit.engine.notes import in_memory
from crit.engine.notes.columns import ATTRIBUTES, ID_COLUMNS, TEXT_COLUMNS, NoteColumns
from crit.engine.sql import OFFLINE, ident, is_sqlite_file, literal
from crit.grammar.errors import CritError

if TYPE_CHECKING:
    from crit.engine.notes.fhir import Source as FhirSource

# The attributes read as dates (parse_date).
_DATE_ATTRIBUTES = ("note_date", "index_date")

# Longer texts are almost always a broken export (a whole file in one cell), not a note.
MAX_CHARS = 1_000_000

_GLOB = re.compile(r"[*?\[\]{}]")
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


class Note(BaseModel):
    """One note ready to be asked questions: its id, text, sex as the corpus gives it, and source row."""

    model_config = ConfigDict(frozen=True)

    note_id: str
    text: str
    sex: str | None = None
    patient_id: str | None = None  # the patient the note is about; None: the note stands alone
    note_date: date | None = None  # when it was written; windows read it, the model never does
    index_date: date | None = None  # the patient's index date, where the corpus gives one
    row: int  # 1-based record number in the source (for a folder: position in name order)


class BadRow(BaseModel):
    """A row skipped, and why (the reason never quotes the note's text)."""

    model_config = ConfigDict(frozen=True)

    row: int
    note_id: str | None
    reason: str
    where: str  # "row 12", or a file name for a folder of .txt

    def describe(self) -> str:
        who = f" (note_id {self.note_id!r})" if self.note_id else ""
        return f"{self.where}{who}: {self.reason}"


def _pick(columns: list[str], wanted: str | None, defaults: tuple[str, ...], what: str, option: str) -> str | None:
    """The source column for `what`: the one the user named, else the first default present."""
    by_lower = {c.lower(): c for c in columns}
    if wanted is not None:
        if wanted in columns:
            return wanted
        if wanted.lower() in by_lower:
            return by_lower[wanted.lower()]
        raise CritError(f"no column '{wanted}' ({option}) in the notes; columns are: {', '.join(columns)}")
    for name in defaults:
        if name in by_lower:
            return by_lower[name]
    return None


# The one form of a note date: an ISO date, optionally an ISO time after it (T or a space), and a zone.
_ISO_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?",
    re.ASCII,  # ASCII digits only: "１２３４-01-01" is no date
)


def parse_date(value: object) -> date | None:
    """A note date as a corpus writes it: YYYY-MM-DD, optionally with an ISO time after it; None when empty.

    Strict and total: anything else raises ValueError with the reason, which the reader turns into a
    bad row. "03/04/2019" is refused (day and month cannot be told apart), and so are forms Python's
    own parser would take but a person would not expect ("20240101", "2024-W01-1", "2024-01-01 garbage")."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise ValueError(f"is a {_json_kind(value)}, not a date")
    text = value.strip()
    m = _ISO_DATE.fullmatch(text)
    if m is None:
        raise ValueError(f"{text[:40]!r} is not a date written YYYY-MM-DD")
    try:
        day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if m.group(4) is not None and not (int(m.group(4)) < 24 and int(m.group(5)) < 60 and int(m.group(6) or 0) < 60):
            raise ValueError
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a calendar date and time") from None
    return day


def _json_kind(value: object) -> str:
    return {bool: "boolean", int: "number", float: "number", list: "list", dict: "object"}.get(type(value), "value")


# Bytes that were not UTF-8, as Python's surrogateescape decoding keeps them (one regex scan: a
# character-by-character loop cost about 1 ms a note).
_SURROGATE = re.compile("[\udc80-\udcff]")


def _has_surrogate(value: str) -> bool:
    return _SURROGATE.search(value) is not None


def _json_path(name: str) -> str:
    return "$." + '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# (row, note id, text, text length, attributes, problem, where) for one source record.
_Row = tuple[int, str | None, str | None, int | None, dict[str, Any], str | None, str]


class NoteReader:
    """Streams the good notes of one source; `bad_rows` fills in as they are met.

    notes = NoteReader("notes.jsonl")
    for batch in notes.batches(64): ...
    notes.bad_rows  # rows skipped so far, with row numbers and reasons
    """

    def __init__(
        self,
        source: str | Path | object,
        columns: NoteColumns | None = None,
        *,
        max_chars: int = MAX_CHARS,
        attach_store: str | Path | None = None,
    ):
        named = columns or NoteColumns()
        self.max_chars = max_chars
        self.bad_rows: list[BadRow] = []
        self._con = duckdb.connect(config=OFFLINE)  # in memory; only reads the source
        # A note stream stays open for a whole run, and DuckDB would draw its own progress bar over crit's.
        self._con.execute("SET enable_progress_bar = false")
        if attach_store is not None:
            # Before the source: a DuckDB notes table locks the configuration, and ATTACH is then refused.
            # The dry run reads the store from here, so notes and answers meet in one query.
            try:
                self._con.execute("ATTACH ? AS crit_store (READ_ONLY)", [str(attach_store)])
            except duckdb.Error as e:
                raise CritError(f"cannot open store '{attach_store}': {str(e).splitlines()[0]}") from None
        self._folder_files: list[Path] = []
        if in_memory.is_in_memory(source):  # a notebook's notes: read like a Parquet file, from memory
            table = in_memory.note_table(source)
            self.source = in_memory.describe(table)
            self._con.register("notes_in_memory", table)
            self._kind, self._from = "memory", "notes_in_memory"
        else:
            self.source = str(source)
            self._kind, self._from = self._resolve(self.source)
        # attribute -> the source column holding it (absent: the notes do not carry it)
        self.attribute_columns: dict[str, str] = {}
        if self._kind == "n2c2":  # one patient per file, dated records (crit.engine.notes.n2c2)
            self.id_column = self.text_column = None
            self.attribute_columns = {"patient_id": "file name", "note_date": "Record date"}
            return
        if self._kind == "fhir":  # FHIR R4 resources (crit.engine.notes.fhir): the fields are FHIR's own
            self.id_column = self.text_column = None
            self._fhir: FhirSource = self._open_fhir()
            self.attribute_columns = {"note_date": "date", "sex": "Patient.gender"}
            if self._fhir.names_patients:  # then a document naming no patient is a bad row, as in a table
                self.attribute_columns["patient_id"] = "subject"
            return
        if self._kind == "folder":
            self.id_column = self.text_column = None
            return
        columns = self._columns()
        self.id_column = _pick(columns, named.id_column, ID_COLUMNS, "note id", "--id-column")
        self.text_column = _pick(columns, named.text_column, TEXT_COLUMNS, "note text", "--text-column")
        wanted = {"sex": named.sex_column, "patient_id": named.patient_column, "note_date": named.date_column,
                  "index_date": named.index_date_column}
        for attribute, (defaults, option) in ATTRIBUTES.items():
            column = _pick(columns, wanted[attribute], defaults, attribute, option)
            if column is not None and column in (self.id_column, self.text_column):
                if wanted[attribute] is not None:  # named by the user: say why it cannot be, never ignore it
                    held = "note id" if column == self.id_column else "note text"
                    raise CritError(f"{option} {wanted[attribute]}: that column holds the {held}; "
                                    f"name the column that holds the {attribute.replace('_', ' ')}")
                continue  # a default name that is the id or text column: not an attribute
            if column is not None:
                self.attribute_columns[attribute] = column
        if self.id_column is None:
            raise CritError(
                f"no note id column in {self.source}: looked for {', '.join(ID_COLUMNS)}; "
                f"name one with --id-column (columns are: {', '.join(columns)})"
            )
        if self.text_column is None:
            raise CritError(
                f"no note text column in {self.source}: looked for {', '.join(TEXT_COLUMNS)}; "
                f"name one with --text-column (columns are: {', '.join(columns)})"
            )
        if self._kind in ("parquet", "duckdb", "memory"):
            self._check_types()

    @property
    def kind(self) -> str:
        """How the source is read: parquet, duckdb, memory, json, jsonl, csv, folder, n2c2 or fhir."""
        return self._kind

    def _check_types(self) -> None:
        """A typed source (Parquet, a DuckDB table) must hold text in its text column and text or whole
        numbers in its id column: a number or a list read as note text would be screened as if it were one."""
        types = {r[0]: str(r[1]).upper() for r in self._run(f"DESCRIBE SELECT * FROM {self._from}").fetchall()}
        text_type, id_type = types.get(self.text_column or ""), types.get(self.id_column or "")
        if text_type is not None and text_type != "VARCHAR":
            raise CritError(f"column '{self.text_column}' of {self.source} holds {text_type}, not text; "
                            "name the column of note text with --text-column")
        whole = ("VARCHAR", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                 "UINTEGER", "UBIGINT", "UHUGEINT")
        if id_type is not None and id_type not in whole:
            raise CritError(f"column '{self.id_column}' of {self.source} holds {id_type}, not text or whole numbers; "
                            "name the column of note ids with --id-column")

    # -- opening ------------------------------------------------------------------------

    def _resolve(self, source: str) -> tuple[str, str]:
        """(kind, DuckDB table expression) for a source; CritError when it does not exist or is unknown."""
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".txt" and p.is_file())
            if not files:
                files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".xml" and p.is_file())
                if files:
                    self._folder_files = files
                    return "n2c2", ""
                raise CritError(f"notes folder '{source}' holds no .txt files (nor n2c2 .xml files)")
            self._folder_files = files
            return "folder", ""
        if path.is_file() and path.suffix.lower() == ".xml":
            self._folder_files = [path]
            return "n2c2", ""
        if not path.exists() and ":" in source:
            db, _, table = source.rpartition(":")
            if Path(db).is_file():
                if not _TABLE_NAME.match(table):
                    raise CritError(f"'{table}' is not a table name (letters, digits, _; optionally schema.table)")
                if is_sqlite_file(db):
                    raise CritError(f"'{db}' is a SQLite file: crit reads notes from DuckDB files only "
                                    "(export the table to Parquet or CSV)")
                try:
                    self._con.execute("ATTACH ? AS notes_src (READ_ONLY)", [db])
                    # The table is all crit reads of that file: a view in it cannot read another file or
                    # the network, and no statement can turn that back on.
                    self._con.execute("SET enable_external_access = false")
                    self._con.execute("SET lock_configuration = true")
                except duckdb.Error as e:
                    raise CritError(f"cannot open '{db}' as a DuckDB file: {str(e).splitlines()[0]}") from None
                return "duckdb", "notes_src." + ".".join(ident(p) for p in table.split("."))
        if not path.exists():
            raise CritError(f"notes file '{source}' not found")
        if _GLOB.search(str(path)) and path.suffix.lower() in (".json", ".parquet"):
            # DuckDB reads these and would take the name as a pattern (x[ab].json reads xa.json and xb.json):
            # crit reads the file named, or none.
            raise CritError(f"'{source}': crit reads note files by their exact name, and DuckDB would read this "
                            "one as a pattern (*, ?, [ or {); rename the file, or convert it to .jsonl or .csv")
        suffix = path.suffix.lower()
        if path.name.lower().endswith((".jsonl.gz", ".ndjson.gz")) or suffix in (".jsonl", ".ndjson"):
            # read line by line in Python (_jsonl_records): exact, BOM and types checked. A FHIR bulk export
            # is NDJSON too, told apart by its first record being a resource.
            first = next((obj for _, obj, _ in self._jsonl_records() if obj is not None), None)
            return ("fhir" if first is not None and "resourceType" in first else "jsonl"), ""
        if suffix == ".json":
            if self._is_fhir_json(path):
                return "fhir", ""
            # Objects up to 1 GiB: DuckDB's 16 MB default made one long note fail the whole file. A note
            # text longer than MAX_CHARS is still a bad row of its own.
            return "json", "read_json_objects(?, format='auto', maximum_object_size=1073741824)"
        if suffix in (".csv", ".tsv") or path.name.lower().endswith((".csv.gz", ".tsv.gz")):
            # Read by Python's csv module with a declared dialect, not by a sniffer (see _csv_records).
            return "csv", ""
        if suffix == ".parquet":
            return "parquet", "read_parquet(?, file_row_number=true)"
        if suffix in (".duckdb", ".db"):
            raise CritError(f"name the table holding the notes: '{source}:TABLE'")
        raise CritError(
            f"cannot read notes from '{source}': use .jsonl, .json, .csv, .tsv, .parquet, "
            "a folder of .txt files, or FILE.duckdb:TABLE"
        )

    def _is_fhir_json(self, path: Path) -> bool:
        """Whether a .json file is one FHIR resource: a top-level object (not an array of notes) with a
        resourceType. DuckDB reads only the first object, so a large array of notes is not parsed twice."""
        try:
            with path.open("rb") as f:
                head = f.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
            if not head.startswith(b"{"):
                return False
            found = self._con.execute(
                "SELECT json_exists(json, '$.resourceType') FROM read_json_objects(?, format='auto', "
                "maximum_object_size=1073741824) LIMIT 1", [str(path)]).fetchall()
        except (OSError, duckdb.Error):
            return False  # not readable as JSON: the JSON reader says why, as before
        return bool(found and found[0][0])

    def _open_fhir(self) -> FhirSource:
        from crit.engine.notes import fhir

        try:
            if Path(self.source).suffix.lower() == ".json":
                return fhir.read_json(Path(self.source))
            return fhir.read_ndjson(self._jsonl_records)
        except fhir.FhirError as e:
            raise CritError(f"cannot read FHIR notes from '{self.source}': {e}") from None
        except OSError as e:
            raise CritError(f"cannot read notes from '{self.source}': {e.strerror or e}") from None

    def _params(self) -> list[Any]:
        return [] if self._kind in ("duckdb", "folder", "csv", "jsonl", "fhir", "memory") else [self.source]

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run SQL on the reader's connection (the source, and a store attached as crit_store); all rows."""
        try:
            return self._con.execute(sql, params or []).fetchall()
        except duckdb.Error as e:
            raise CritError(f"cannot read notes from '{self.source}': {str(e).splitlines()[0]}") from None

    def _run(self, sql: str) -> duckdb.DuckDBPyConnection:
        try:
            return self._con.execute(sql, self._params())
        except duckdb.Error as e:
            raise CritError(f"cannot read notes from '{self.source}': {str(e).splitlines()[0]}") from None

    def _columns(self) -> list[str]:
        if self._kind == "csv":
            for _, fields, problem in self._csv_records():
                if problem is not None or fields is None:
                    raise CritError(f"cannot read the header of '{self.source}': {problem}")
                if not fields or not any(f.strip() for f in fields):
                    raise CritError(f"'{self.source}' has an empty header line")
                return fields
            raise CritError(f"'{self.source}' is empty: no header line")
        if self._kind == "jsonl":
            seen: dict[str, None] = {}
            for n, (_, obj, _problem) in enumerate(self._jsonl_records()):
                for k in obj or {}:
                    seen.setdefault(k, None)
                if n >= 100:
                    break
            if not seen:
                raise CritError(f"no readable JSON objects in '{self.source}'")
            return list(seen)
        if self._kind == "json":
            # Keys of the first readable objects (the JSON is parsed per row later, bad rows included).
            rows = self._run(f"SELECT json_keys(json) FROM {self._from} WHERE json IS NOT NULL LIMIT 100").fetchall()
            seen = {}
            for (keys,) in rows:
                for k in keys or []:
                    seen.setdefault(k, None)
            if not seen:
                raise CritError(f"no readable JSON objects in '{self.source}'")
            return list(seen)
        rel = self._run(f"DESCRIBE SELECT * FROM {self._from}").fetchall()
        return [r[0] for r in rel if r[0] not in ("file_row_number", in_memory.ROW_COLUMN)]

    def _select_parts(self) -> tuple[str, str, str, str, list[str]]:
        """(row hint, note id, raw text, problem, attribute values) as SQL over the source, each VARCHAR but the
        row hint; the text is not yet cut at `max_chars`."""
        assert self.id_column and self.text_column
        if self._kind == "json":
            id_path, text_path = literal(_json_path(self.id_column)), literal(_json_path(self.text_column))
            id_sql = f"json ->> {id_path}"
            raw_text = f"json ->> {text_path}"
            attributes = [f"json ->> {literal(_json_path(c))}" for c in self.attribute_columns.values()]
            problem = (
                "CASE WHEN json IS NULL THEN 'not valid JSON or not UTF-8' "
                f"WHEN json_type(json, {text_path}) NOT IN ('VARCHAR', 'NULL') "
                f"THEN 'note text is ' || lower(json_type(json, {text_path})) || ', not text' "
                f"WHEN json_type(json, {id_path}) NOT IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'NULL') "
                f"THEN 'note id is ' || lower(json_type(json, {id_path})) || ', not text or a whole number' END"
            )
        else:
            id_sql = f"CAST({ident(self.id_column)} AS VARCHAR)"
            raw_text = f"CAST({ident(self.text_column)} AS VARCHAR)"
            attributes = [f"CAST({ident(c)} AS VARCHAR)" for c in self.attribute_columns.values()]
            problem = "NULL"
        row = {"parquet": "file_row_number + 1", "memory": ident(in_memory.ROW_COLUMN)}.get(self._kind, "NULL")
        return row, id_sql, raw_text, problem, attributes

    def _select(self) -> str:
        """SELECT giving (row_hint, id, text, text_length, problem, a_<attribute>...) per source row, text NULL
        when too long."""
        row, id_sql, raw_text, problem, attributes = self._select_parts()
        return (
            f"SELECT {row} AS row_hint, {id_sql} AS note_id, "
            f"CASE WHEN length({raw_text}) <= {int(self.max_chars)} THEN {raw_text} END AS text, "
            f"length({raw_text}) AS text_length, {problem} AS problem"
            + "".join(f", {sql} AS {ident('a_' + name)}" for sql, name in zip(attributes, self.attribute_columns))
            + f" FROM {self._from}"
        )

    def sql_source(self) -> tuple[str, dict[str, Any], bool] | None:
        """(SELECT, named parameters, numbered) giving each source record as SQL, in source order, for counting without a
        Python object per row (the dry run: crit.engine.notes.sql_checks); None where only Python reads the source
        exactly (CSV, folders, n2c2, FHIR, and JSONL that starts with a byte-order mark).

        Columns: row_hint (the row number where `numbered`, else NULL: number the records in order), note_id, text (uncut), problem
        (NULL, or why the record is no note), a_<attribute> (VARCHAR) and, for JSONL only, j_<attribute>: the
        JSON type of each attribute (the type checks of _attributes)."""
        if self._kind in ("parquet", "duckdb", "memory", "json"):
            row, id_sql, raw_text, problem, attributes = self._select_parts()
            # The source's one `?` named, so that a caller can add named parameters of its own (_from is
            # crit's SQL: a table function, or a table name checked by _TABLE_NAME).
            return (
                f"SELECT {row} AS row_hint, {id_sql} AS note_id, {raw_text} AS text, {problem} AS problem"
                + "".join(f", {sql} AS {ident('a_' + n)}" for sql, n in zip(attributes, self.attribute_columns))
                + f" FROM {self._from.replace('?', '$source')}",
                {"source": self.source} if self._params() else {},
                row != "NULL",
            )
        if self._kind != "jsonl" or self._starts_with_bom():
            return None  # DuckDB reads a first line with a BOM as not JSON; Python drops the mark
        assert self.id_column and self.text_column
        id_path, text_path = literal(_json_path(self.id_column)), literal(_json_path(self.text_column))
        paths = [literal(_json_path(c)) for c in self.attribute_columns.values()]
        # _jsonl_rows' checks: a record is an object, its id text or a whole number (never true/false), its
        # text a string. DuckDB gives NULL for a line that is not JSON or not UTF-8; it skips blank lines.
        problem = (
            "CASE WHEN json IS NULL THEN 'not valid JSON or not UTF-8' "
            "WHEN json_type(json) <> 'OBJECT' THEN 'not an object' "
            f"WHEN json_type(json, {id_path}) NOT IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'NULL') THEN 'note id type' "
            f"WHEN json_type(json, {text_path}) NOT IN ('VARCHAR', 'NULL') THEN 'note text type' END"
        )
        return (
            f"SELECT NULL AS row_hint, json ->> {id_path} AS note_id, json ->> {text_path} AS text, {problem} AS problem"
            + "".join(f", json ->> {p} AS {ident('a_' + n)}" for p, n in zip(paths, self.attribute_columns))
            + "".join(f", json_type(json, {p}) AS {ident('j_' + n)}" for p, n in zip(paths, self.attribute_columns))
            + " FROM read_json_objects($source, format='newline_delimited', ignore_errors=true, "
            "maximum_object_size=1073741824)",
            {"source": self.source},
            False,
        )

    def _starts_with_bom(self) -> bool:
        with self._open_text(newline="\n") as f:
            return f.read(1) == "\ufeff"

    def reason(self, note_id: str | None, text: str | None, length: int | None, problem: str | None,
               raw: dict[str, Any], duplicate: bool) -> str | None:
        """Why one record is a bad row (None: it is a good note), as batches() says it; `duplicate`: an
        earlier good row has this id. For the dry run, which finds the bad rows in SQL and words only those
        it shows."""
        reason = self._problem(note_id, text, length, problem, {note_id} if duplicate and note_id else set())
        return reason if reason is not None else self._attributes(raw)[1]

    def jsonl_rows_at(self, records: set[int]) -> dict[int, _Row]:
        """The rows of these record numbers of a JSONL source, read as batches() reads them; only those lines are
        parsed, and reading stops after the last."""
        found: dict[int, _Row] = {}
        last = max(records, default=0)
        for record, (line_no, line) in enumerate(self._jsonl_lines(), 1):
            if record > last:
                break
            if record in records:
                found[record] = self._jsonl_row(record, line_no, *self._jsonl_parse(line))
        return found

    @contextlib.contextmanager
    def _open_text(self, newline: str) -> Iterator[Any]:
        """The source opened as UTF-8 text (gzip when it ends in .gz); bytes that are not UTF-8 stay as
        surrogates, so each record can say so for itself; an OS error is a CritError."""
        import gzip

        path = Path(self.source)
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8", errors="surrogateescape", newline=newline) as f:  # type: ignore[operator]
                yield f
        except OSError as e:
            raise CritError(f"cannot read notes from '{self.source}': {e.strerror or e}") from None

    def _csv_records(self) -> Iterator[tuple[int, list[str] | None, str | None]]:
        """(first line, fields or None, problem) per CSV record, the header first.

        The dialect is declared, never sniffed: comma (tab for .tsv), double quotes, a quote in a
        quoted field doubled, strict. So `5'10" tall` in an unquoted field is text; a quoted field
        with a stray quote (`"a"b"`) is one bad record and reading goes on at the next line; an
        unterminated quote is one bad record that names where it began (the rest of the file sits
        inside it). A UTF-8 byte-order mark is dropped; bytes that are not UTF-8 spoil only their
        own record."""
        import csv

        delimiter = "\t" if ".tsv" in Path(self.source).name.lower() else ","
        csv.field_size_limit(max(self.max_chars * 4, 1 << 20))
        with self._open_text(newline="") as f:
            reader = csv.reader(f, delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
            first_line, header = 1, True
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    what = ("an unterminated quote: every line after it is inside the field"
                            if "unexpected end of data" in str(e) else f"malformed CSV ({e})")
                    yield first_line, None, what
                    first_line = reader.line_num + 1
                    continue
                if header and fields:
                    fields[0] = fields[0].removeprefix("\ufeff")
                header = False
                if any(_has_surrogate(v) for v in fields):
                    yield first_line, None, "not UTF-8"
                else:
                    yield first_line, fields, None
                first_line = reader.line_num + 1

    def _jsonl_lines(self) -> Iterator[tuple[int, str]]:
        """(line number, line) per non-blank line of a JSONL file, a UTF-8 byte-order mark dropped."""
        with self._open_text(newline="\n") as f:
            for line_no, line in enumerate(f, 1):
                if line_no == 1:
                    line = line.removeprefix("\ufeff")
                if line.strip():
                    yield line_no, line

    @staticmethod
    def _jsonl_parse(line: str) -> tuple[dict[str, Any] | None, str | None]:
        """(object, None) for one JSONL line, or (None, problem): not UTF-8, not JSON, not an object."""
        import json

        if _has_surrogate(line):
            return None, "not UTF-8"
        try:
            obj = json.loads(line)
        except ValueError:
            return None, "not valid JSON"
        except RecursionError:  # "[[[[..." a hundred thousand deep: one bad line, not a dead run
            return None, "JSON nested too deeply"
        if not isinstance(obj, dict):
            return None, f"a JSON {type(obj).__name__}, not an object"
        return obj, None

    def _jsonl_records(self) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
        """(line, object or None, problem) per non-blank line of a JSONL file: a UTF-8 byte-order mark is
        dropped, a line that is not UTF-8, not JSON or not an object is one bad row."""
        for line_no, line in self._jsonl_lines():
            yield line_no, *self._jsonl_parse(line)

    def _jsonl_rows(self) -> Iterator[_Row]:
        for record, (line, obj, problem) in enumerate(self._jsonl_records(), 1):
            yield self._jsonl_row(record, line, obj, problem)

    def _jsonl_row(self, record: int, line: int, obj: dict[str, Any] | None, problem: str | None) -> _Row:
        assert self.id_column and self.text_column
        where = f"row {record}" if record == line else f"row {record} (line {line})"
        if obj is None:
            return record, None, None, None, {}, problem, where
        note_id, text = obj.get(self.id_column), obj.get(self.text_column)
        attributes = {name: obj.get(column) for name, column in self.attribute_columns.items()}
        if isinstance(note_id, bool) or not isinstance(note_id, (str, int, type(None))):
            return record, None, None, None, {}, f"note id is a {_json_kind(note_id)}, not text or a whole number", where
        if not isinstance(text, (str, type(None))):
            return record, str(note_id), None, None, {}, f"note text is a {_json_kind(text)}, not text", where
        length = len(text) if text is not None else None
        return (record, None if note_id is None else str(note_id),
                text if length is not None and length <= self.max_chars else None, length,
                attributes, None, where)

    def _csv_rows(self) -> Iterator[_Row]:
        columns: list[str] | None = None
        record = 0
        for line, fields, problem in self._csv_records():
            if columns is None:
                columns = fields or []
                index = {name: i for i, name in enumerate(columns)}
                continue
            record += 1
            where = f"row {record} (line {line})"
            if fields is None:
                yield record, None, None, None, {}, problem, where
                continue
            if fields == [] or fields == [""]:
                record -= 1  # a blank line is no record
                continue
            if len(fields) != len(columns):
                yield record, None, None, None, {}, f"has {len(fields)} fields, the header has {len(columns)}", where
                continue
            assert self.id_column and self.text_column
            text = fields[index[self.text_column]]
            attributes = {name: fields[index[column]] for name, column in self.attribute_columns.items()}
            length = len(text)
            yield (record, fields[index[self.id_column]], text if length <= self.max_chars else None, length,
                   attributes, None, where)

    # -- reading ------------------------------------------------------------------------

    def count(self) -> int:
        """Rows in the source, good and bad (for a progress bar's total)."""
        if self._kind == "folder":
            return len(self._folder_files)
        if self._kind == "n2c2":
            return sum(1 for _ in self._n2c2_rows())
        if self._kind == "fhir":
            return self._fhir.count
        if self._kind == "csv":
            return sum(1 for _ in self._csv_records()) - 1  # the header is no row
        if self._kind == "jsonl":
            return sum(1 for _ in self._jsonl_records())
        (n,) = self._run(f"SELECT count(*) FROM {self._from}").fetchall()[0]
        return int(n)

    def batches(
        self, size: int = 64, limit: int | None = None, keep: Callable[[str], bool] | None = None
    ) -> Iterator[list[Note]]:
        """Good notes in source order, `size` at a time, at most `limit` of them; bad rows go to `bad_rows`.
        `keep(note_id)` picks the notes wanted (a shard's): `limit` counts only those."""
        if size < 1:
            raise ValueError("batch size must be positive")
        self.bad_rows = []
        seen: set[str] = set()
        batch: list[Note] = []
        good = 0
        for row, note_id, text, length, raw, problem, where in self._rows():
            if limit is not None and good >= limit:
                break
            reason = self._problem(note_id, text, length, problem, seen)
            attributes: dict[str, Any] = {}
            if reason is None:
                attributes, reason = self._attributes(raw)
            if reason is not None:
                self.bad_rows.append(BadRow(row=row, note_id=note_id or None, reason=reason, where=where))
                continue
            seen.add(note_id)
            if keep is not None and not keep(note_id):
                continue
            good += 1
            batch.append(Note(note_id=note_id, text=text, row=row, **attributes))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _attributes(self, raw: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """A record's sex, patient id and dates, checked; ({}, reason) when one is unusable."""
        found: dict[str, Any] = {}
        for name, value in raw.items():
            column = self.attribute_columns[name]
            if name in _DATE_ATTRIBUTES:
                try:
                    found[name] = parse_date(value)
                except ValueError as e:
                    return {}, f"{name.replace('_', ' ')} (column '{column}') {e}"
                continue
            if isinstance(value, bool) or not isinstance(value, (str, int, type(None))):
                return {}, f"{name.replace('_', ' ')} (column '{column}') is a {_json_kind(value)}, not text"
            text = None if value is None else str(value).strip()
            if name == "patient_id" and not text:
                return {}, f"no patient id (column '{column}' is empty)"
            found[name] = text or None
        return found, None

    def _problem(
        self, note_id: str | None, text: str | None, length: int | None, problem: str | None, seen: set[str]
    ) -> str | None:
        if problem:
            return problem
        if note_id is None or not str(note_id).strip():
            return "no note id"
        if note_id in seen:
            return "duplicate note id (an earlier row has it; this one is skipped)"
        if length is not None and length > self.max_chars:
            return f"text too long ({length:,} characters; the limit is {self.max_chars:,})"
        if text is None or not text.strip():
            return "empty text"
        return None

    def _rows(self) -> Iterator[_Row]:
        if self._kind == "folder":
            yield from self._folder_rows()
            return
        if self._kind == "n2c2":
            yield from self._n2c2_rows()
            return
        if self._kind == "fhir":
            yield from self._fhir_rows()
            return
        if self._kind == "csv":
            yield from self._csv_rows()
            return
        if self._kind == "jsonl":
            yield from self._jsonl_rows()
            return
        record = 0
        try:
            reader = self._con.sql(self._select(), params=self._params() or None).to_arrow_reader(1024)
        except duckdb.Error as e:
            raise CritError(f"cannot read notes from '{self.source}': {str(e).splitlines()[0]}") from None
        names = list(self.attribute_columns)
        for rb in reader:
            cols = rb.to_pydict()
            attributes = [cols["a_" + name] for name in names]
            for i, (hint, note_id, text, length, problem) in enumerate(zip(
                cols["row_hint"], cols["note_id"], cols["text"], cols["text_length"], cols["problem"]
            )):
                record += 1
                row = int(hint) if hint is not None else record
                yield row, note_id, text, length, {n: a[i] for n, a in zip(names, attributes)}, problem, f"row {row}"

    def _folder_rows(self) -> Iterator[_Row]:
        # Read by Python, file by file: a name is a name ("note[1].txt" is that file, not a pattern), and a
        # file that is not UTF-8 becomes one bad row.
        for i, f in enumerate(self._folder_files, start=1):
            try:
                content = f.read_bytes()
            except OSError as e:
                yield i, f.stem, None, None, {}, f"cannot be read ({e.strerror or e})", f.name
                continue
            try:
                text: str | None = content.decode("utf-8")
                problem = None
            except UnicodeDecodeError as e:
                text, problem = None, f"not UTF-8 (byte {e.start})"
            length = len(text) if text is not None else None
            if length is not None and length > self.max_chars:
                text = None
            yield i, f.stem, text, length, {}, problem, f.name

    def _n2c2_rows(self) -> Iterator[_Row]:
        from crit.engine.notes import n2c2

        row = 0
        for f in self._folder_files:
            try:
                found = n2c2.records(f)
            except (n2c2.N2c2Error, OSError) as e:
                row += 1
                yield row, None, None, None, {}, f"not an n2c2 patient file: {e}", f.name
                continue
            for record in found:
                row += 1
                length = len(record.text)
                text = record.text if length <= self.max_chars else None
                attributes = {"patient_id": f.stem, "note_date": record.date}
                yield row, f"{f.stem}-{record.number}", text, length, attributes, None, f"{f.name} record {record.number}"

    def _fhir_rows(self) -> Iterator[_Row]:
        for doc in self._fhir.documents():
            length = len(doc.text) if doc.text is not None else None
            text = doc.text if length is not None and length <= self.max_chars else None
            attributes = {"note_date": doc.date, "sex": doc.sex}
            if "patient_id" in self.attribute_columns:
                attributes["patient_id"] = doc.patient_id
            yield doc.row, doc.note_id, text, length, attributes, doc.problem, doc.where

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> NoteReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_notes(source: str | Path | object, columns: NoteColumns | None = None, *,
               max_chars: int = MAX_CHARS) -> tuple[list[Note], list[BadRow]]:
    """Every good note of a small source at once, and the bad rows (for tests and small corpora)."""
    with NoteReader(source, columns, max_chars=max_chars) as reader:
        notes = [n for batch in reader.batches() for n in batch]
        return notes, reader.bad_rows
