"""The engine: a compiled plan (crit.grammar.plan) and a corpus of notes in, eligibility in DuckDB out.

One folder a stage; data flows down this list and no module imports a stage below its own
(tests/test_layout.py checks it):

    notes/        read a corpus (JSONL, CSV, Parquet, folders, n2c2, FHIR, DuckDB) into Notes; shards
    reading/      each question's passages in a note, their context, and the reader's answer
    answering/    the policy (gate, reader, model), the backends and the model runtime
    store/        the DuckDB file: every table, its writes and its named reads
    eligibility/  the plan's rules compiled to SQL and evaluated over the store's answers
    report/       a run as one HTML page

answers.py (the answer record every stage passes on) and sql.py (quoting) are shared by all.
run.py, merge.py and dryrun.py join the stages for `crit run`, `crit merge` and
`crit run --dry-run`; cli.py is the engine's commands, which call the front door (crit.run).
"""
