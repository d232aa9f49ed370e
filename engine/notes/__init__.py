"""Notes: a corpus of clinical notes in, as Notes (id, text, sex, patient, dates), and the rows that cannot run set aside.

Takes a path (JSONL, JSON, CSV/TSV, Parquet, a folder of .txt files, n2c2 XML, FHIR R4 JSON, FILE.duckdb:TABLE)
and the columns a user named; gives batches of Notes and BadRows with their reasons.

- columns: NoteColumns, the usual column names, sex spellings (light: no DuckDB);
- reader: NoteReader and read_notes, the sources and their checks;
- n2c2: the n2c2 2018 patient files;
- fhir: FHIR R4 Bundles, DocumentReferences and NDJSON exports;
- shards: which notes a `--shard i/n` holds.
"""
