"""The engine's commands of the `crit` command line: thin commands over crit.grammar and crit.engine
(crit.cli adds the trainer's and is the entry point).

Each command parses its options, calls one library function and renders the
result with rich. A CritError becomes its rendered diagnostics on stderr and
exit code 1; usage errors exit 2 (click's own); nothing prints a traceback for
bad input.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Iterator
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from crit.engine.answering import DEFAULT_POLICY, POLICIES
from crit.engine.options import column_options, device_option, is_option_error, pop_columns
from crit.grammar.errors import CritError


def printable(text: str) -> str:
    """`text` safe for a terminal: control and format characters (ESC sequences that set a window title or
    clear the screen, bidi overrides) are shown escaped (`\\x1b`), newlines and tabs kept. Notes, ids and
    labels are data; nothing in them may drive the terminal."""
    return "".join(ch if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf") else
                   ch.encode("unicode_escape").decode("ascii") for ch in text)


def render_printable(error: CritError, color: bool) -> str:
    """An error's diagnostics with every piece of the user's text made printable (crit's own colours kept)."""
    fields = ("message", "file", "label", "hint")
    diagnostics = [d.model_copy(update={k: printable(v) for k in fields if (v := getattr(d, k)) is not None})
                   for d in error.diagnostics]
    return CritError(diagnostics, printable(error.source) if error.source else None).render(color=color)


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class CritGroup(click.Group):
    """Turns a CritError raised by any command into a message for people and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CritError as e:
            err.print(render_printable(e, color=err.is_terminal), markup=False, highlight=False)
            ctx.exit(1)
        except ValidationError as e:
            first = e.errors()[0]
            if is_option_error(e):
                # A command's options go into one model (CommandOptions): a value out of range is a usage
                # error of that option, said in one line.
                option = "--" + str(first["loc"][0]).replace("_", "-") if first.get("loc") else "an option"
                err.print(f"error: {option}: {first['msg']}", markup=False, highlight=False)
                ctx.exit(2)
            # Anything else is data crit read or made that it cannot hold: one plain line, no option named.
            where = ".".join(str(x) for x in first.get("loc", ()))
            err.print(printable(f"error: {e.title}{' ' + where if where else ''}: {first['msg']}"), markup=False)
            ctx.exit(1)
        except KeyboardInterrupt:
            err.print("interrupted; work committed so far is kept, run the same command to resume", markup=False)
            ctx.exit(130)


@click.group(cls=CritGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="crit")
def cli() -> None:
    """crit: screen clinical notes against trial eligibility criteria.

    Write criteria in a .crit file, check it, run it over notes with a language
    model, and ask SQL questions of the results.

    \b
    Example:
        crit check criteria/aristotle.crit
        crit run criteria/aristotle.crit examples/mtsamples-sample.jsonl --db results.duckdb
        crit sql results.duckdb "select status, count(*) from eligibility group by 1"
    """


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1 when there are any).")
def check(file: str, strict: bool) -> None:
    """Check a .crit file: print every error and warning, exit 1 on errors.

    \b
    Example:
        crit check criteria/aristotle.crit
    """
    from crit.engine.eligibility import check_source
    from crit.grammar.parse import read_source

    text = read_source(file)
    checked = check_source(text, file)
    color = err.is_terminal
    for d in checked.diagnostics:
        err.print(render_printable(CritError([d], text), color=color) + "\n", markup=False, highlight=False)
    errors = len(checked.errors)
    warnings = len(checked.diagnostics) - errors
    if errors or (strict and warnings):
        err.print(f"{file}: {errors} error(s), {warnings} warning(s)", markup=False)
        sys.exit(1)
    plan = checked.plan
    assert plan is not None
    out.print(
        f"{file}: ok — {len(plan.questions)} questions, {len(plan.criteria)} criteria"
        + (f", {warnings} warning(s)" if warnings else ""),
        markup=False,
    )


@cli.command(name="compile")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (questions, schemas, rules).")
def compile_cmd(file: str, as_json: bool) -> None:
    """Compile a .crit file and show the questions a model will be asked.

    No model is loaded: this shows exactly what `crit run` would ask, and the
    terms each question's passages are found by, with where each term came
    from (the phrase, aka, or a vocabulary: drug classes, brands, ICD-10-CM,
    MeSH). `not aka "x"` in the file removes a term.

    \b
    Example:
        crit compile criteria/aristotle.crit --json | jq '.questions[].text'
    """
    from crit.engine.eligibility import load_plan

    plan = load_plan(file)
    if as_json:
        data = plan.model_dump(mode="json", exclude={"lets", "criteria"})
        data["lets"] = [l.meaning() for l in plan.lets]
        data["criteria"] = [c.meaning() for c in plan.criteria]
        data["terms"] = {q.name: [{"term": t, "source": source} for t, source in _term_sources(q)]
                         for q in plan.questions}
        sql = _rules_sql(plan)
        if sql is not None:
            data["sql"] = sql
        click.echo(json.dumps(data, indent=2))
        return
    title = f"{plan.trial_id or ''} {plan.trial_title or ''}".strip()
    table = Table(title=f"{title}: {len(plan.questions)} questions", show_lines=False)
    for col in ("name", "kind", "question", "unit", "fingerprint"):
        table.add_column(col, overflow="fold")
    for q in plan.questions:
        table.add_row(*(Text(printable(x)) for x in (q.name, q.kind, q.text, q.unit or "", q.fingerprint)))
    out.print(table)
    out.print(_terms_table(plan.questions))
    crit_table = Table(title=f"{len(plan.criteria)} criteria")
    for col in ("", "label", "if missing"):
        crit_table.add_column(col)
    for c in plan.criteria:
        crit_table.add_row(*(Text(printable(x)) for x in (c.type, c.label, c.if_missing)))
    out.print(crit_table)
    if plan.windows:
        # Windows are rules over the notes' dates: no question above mentions them.
        listed = ", ".join(f"{w.question} within {w.label}" for w in plan.windows)
        out.print(f"windows (read from note dates, never asked): {listed}; each ends at the patient's index "
                  f"date (the {plan.index}'s date, unless the notes give an index_date)", markup=False)


@cli.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="HTML file to write (overwritten if it exists); past one page of notes, also the folder "
                   "NAME_files beside it.")
@click.option("--run", "run_id", default=None, help="Run to report (a run_id from the runs table); default: the latest.")
def report(db: str, output: str, run_id: str | None) -> None:
    """Write an HTML evidence report of a run: open it in any browser, offline.

    It shows eligibility counts, attrition per criterion, the questions with most
    missing evidence, value distributions against the thresholds, and every note
    with its criteria, answers and highlighted quotes. Up to 100 notes it is one
    self-contained file; beyond, the file holds the figures and the first 100
    notes, and the other pages go to a folder beside it (report.html ->
    report_files/), which crit replaces on the next report and refuses to touch
    if it did not write it. Keep the two together. They hold the notes' text:
    share them only where the notes may go.

    \b
    Example:
        crit report results.duckdb -o report.html
        crit report results.duckdb -o old.html --run 20261123T101500-abc123
    """
    from crit.engine.report.html import pages_folder, write_report

    path = write_report(db, output, run_id=run_id)
    size = path.stat().st_size
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    folder = pages_folder(path)
    if folder.is_dir():  # the report's other pages
        files = list(folder.iterdir())
        shown += f"; its other pages in {folder}, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB in {len(files)} files"
    out.print(f"wrote {path} ({shown})", markup=False)


def _backend_help() -> str:
    from crit.engine.answering.registry import backend_names, describe

    return "How questions are answered: " + "; ".join(describe(name) for name in backend_names()) + "."


def _backend_choices() -> list[str]:
    from crit.engine.answering.registry import backend_names

    return list(backend_names())


@cli.command(name="run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("notes", type=click.Path())
@click.option("--db", required=True, type=click.Path(dir_okay=False), help="DuckDB file to write (created if absent; an existing one is resumed).")
@click.option("--backend", type=click.Choice(_backend_choices()), default="transformers", show_default=True,
              help=_backend_help())
@click.option("--base-url", default=None, help="openai/ray: the server's URL, e.g. http://127.0.0.1:8000/v1. "
              "Notes go over the network to it only because you chose this backend.")
@click.option("--api-key-env", default=None, help="openai/ray: name of the environment variable holding the API key.")
@click.option("--concurrency", type=int, default=None, help="openai/ray: requests in flight at once (default 4).")
@click.option("--response-format", type=click.Choice(["json_schema", "json_object"]), default=None,
              help="openai/ray: how the schema is sent: json_schema (vLLM, SGLang, llama.cpp C++ server; default) "
                   "or json_object (llama-cpp-python's server).")
@click.option("--shard", default=None, help="Run only shard i of n (e.g. 2/4), split by a stable hash of note_id; "
              "give each shard its own --db and combine them with `crit merge`.")
@click.option("--dry-run", is_flag=True, help="Read and check every note and count the note-question pairs left "
              "to ask; load no model, write nothing.")
@click.option("--model", default=None, help="The model: a local Hugging Face folder (transformers, vllm), a .gguf file "
              "(llamacpp) or the name a server serves (openai, ray). Default: the embedded SmolLM2-135M-Instruct.")
@click.option("--adapter", default=None, help="LoRA adapter folder (from `crit train`), merged into the model; "
              "'student' for the student shipped with crit (engine/answering/student).")
@device_option
@click.option("--limit", type=int, default=None, help="Only the first N notes (a quick try).")
@column_options()
@click.option("--batch-size", type=int, default=4, show_default=True,
              help="Notes per committed batch where a model may be asked: after a crash at most this many notes "
                   "are asked again. A run the rules answer whole commits every 2,000 notes or 5 seconds.")
@click.option("--workers", type=int, default=None,
              help="Processes that read and answer the notes of a run the rules answer whole (default: every core); "
                   "a run that may ask a model answers in one.")
@click.option("--memory", default=None, metavar="SIZE",
              help="What the store's DuckDB may hold in memory during the run (a size such as 4GB; default 512MB); "
                   "beyond it, it writes to disk. Raise it for a file of thousands of questions.")
@click.option("--no-gate", is_flag=True, help="Answer every question over every note, even where no passage "
              "mentions it (by default such a question is 'not mentioned' with no model call).")
@click.option("--policy", type=click.Choice(list(POLICIES)), default=DEFAULT_POLICY, show_default=True,
              help="Who answers a question that has passages: the rules reader, asking the model only where it is "
                   "not sure (rules-then-model); the reader alone (rules); or the model always (model).")
@click.option("--trust", default=None, metavar="FILE",
              help="A trust profile (from `crit calibrate`): under rules-then-model the model decides exactly where "
                   "it was measured better than the rules. Default: the profile crit ships for the model, if any; "
                   "'none': ask it where the rules are unsure and keep its answer only where the rules agree.")
@click.option("--infer", is_flag=True, help="Every boolean question as if the file said `infer`: where no passage names "
              "it, a model its trust profile measured better there reads the whole note (method model-inferred).")
def run_cmd(file: str, notes: str, db: str, backend: str, limit: int | None, batch_size: int, workers: int | None,
            memory: str | None, shard: str | None, dry_run: bool, no_gate: bool, policy: str, trust: str | None, infer: bool,
            **options: Any) -> None:
    """Ask every question of FILE over the NOTES, store answers and eligibility in --db.

    NOTES is a .jsonl, .json, .csv, .tsv or .parquet file, a folder of .txt files
    (note id = file name), n2c2 .xml files, FHIR R4 JSON (a Bundle, a DocumentReference,
    or .ndjson of resources), or FILE.duckdb:TABLE. Answers already in the store for
    the same question and model are reused: re-running after editing a threshold
    asks the model nothing, and re-running after a crash or Ctrl-C resumes. Note
    text is never printed.

    \b
    Example:
        crit run criteria/aristotle.crit examples/mtsamples-sample.jsonl --db results.duckdb --limit 5
        crit sql results.duckdb "select status, count(*) from eligibility group by 1"
    """
    import crit
    from crit.engine.progress import progress_bar

    columns = pop_columns(options)
    plan = crit.load(file)
    if dry_run:
        report = crit.dry_run(plan, notes, db=db, backend=backend, columns=columns, gate=not no_gate, policy=policy,
                              shard=shard, trust=trust, infer=infer, **options)
        for line in report.lines():
            out.print(line, markup=False)
        return
    with progress_bar(err) as on_progress:
        screening = crit.run(plan, notes, db=db, backend=backend, columns=columns, limit=limit, batch_size=batch_size,
                             workers=workers, memory=memory, gate=not no_gate, policy=policy, shard=shard, trust=trust,
                             infer=infer, on_progress=on_progress,
                             progress=False, **options)
    _print_summary(file, db, plan, screening.summary)


def _print_summary(file: str, db: str, plan: Any, summary: Any) -> None:
    for bad in summary.bad_rows[:20]:
        err.print(printable(f"skipped {bad.describe()}"), markup=False)
    if len(summary.bad_rows) > 20:
        err.print(f"... and {len(summary.bad_rows) - 20} more skipped rows", markup=False)
    ev = summary.evaluation
    if plan.windows and ev.dated_notes == 0:
        err.print("warning: the criteria read time windows, but no note has a date, so every windowed criterion "
                  "is unknown (name the notes' date column with --date-column)", markup=False)
    table = Table(title=f"{plan.trial_id or file}: {summary.notes_done} notes in {summary.seconds:.1f} s "
                        f"(eligibility decided in {summary.evaluation.seconds:.1f} s)", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    screened = ()
    if ev.by_patient is not None:  # the corpus names patients: eligibility is theirs, over all their notes
        p = ev.by_patient
        screened = (("patients", p.patients), ("patients eligible", p.eligible),
                    ("patients ineligible", p.ineligible), ("patients unknown", p.unknown))
    run, alone = summary.this_run, " alone" if screened else ""
    for label, value in (
        *screened,
        (f"this run's notes: eligible{alone}", run["eligible"]),
        (f"this run's notes: ineligible{alone}", run["ineligible"]),
        (f"this run's notes: unknown{alone}", run["unknown"]),
        (f"the store's {ev.notes} notes: eligible{alone}", ev.eligible),
        (f"the store's {ev.notes} notes: ineligible{alone}", ev.ineligible),
        (f"the store's {ev.notes} notes: unknown{alone}", ev.unknown),
        ("answers new", summary.answers_new), ("answers cached", summary.answers_cached),
        ("errors", summary.errors), ("ungrounded quotes", summary.ungrounded), ("rows skipped", len(summary.bad_rows)),
        *((f"answered by {m}", n) for m, n in sorted(summary.by_method.items())),
        ("asked of the model", summary.model_questions),
    ):
        table.add_row(label, str(value))
    out.print(table)
    out.print(f"model: {summary.model_use}", markup=False)
    table_name = "patient_eligibility" if screened else "eligibility"
    out.print(f"stored in {db} (run {summary.run_id}); try: crit sql {db} \"select * from {table_name}\"", markup=False)


@cli.command()
@click.argument("out_db", type=click.Path(dir_okay=False))
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--criteria", "crit_file", default=None, type=click.Path(dir_okay=False),
              help="The .crit file whose rules decide eligibility. Default: the newest run's file.")
def merge(out_db: str, shards: tuple[str, ...], crit_file: str | None) -> None:
    """Merge the stores of sharded runs (`crit run --shard i/n`) into OUT_DB, then evaluate the rules.

    Runs, notes and answers are copied once each (a row already in OUT_DB is kept),
    so merging a shard twice changes nothing.

    \b
    Example:
        crit merge results.duckdb shard-1.duckdb shard-2.duckdb shard-3.duckdb
    """
    from crit.engine.merge import merge_stores

    summary = merge_stores(out_db, list(shards), crit_file)
    added = ", ".join(f"{n:,} {table}" for table, n in summary.added.items())
    out.print(f"merged {summary.shards} store(s) into {out_db}: added {added}", markup=False)
    if summary.conflicting_notes:
        err.print(f"warning: {summary.conflicting_notes} note id(s) have different texts in different shards; "
                  "the first shard's text is kept", markup=False)
    if not summary.evaluated:
        err.print(f"rules not evaluated: {summary.message}", markup=False)


@cli.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("query")
@click.option("-p", "--param", "params", type=(str, str), multiple=True, metavar="NAME VALUE",
              help="Bind the query's parameter $NAME to VALUE (a number where it reads as one). Repeatable.")
@click.option("--line", "as_lines", is_flag=True, help="One 'column = value' line per column, rows apart (for wide rows).")
@click.option("--max-width", type=click.IntRange(min=4), default=40, show_default=True,
              help="Cut table cells wider than this, marked with '…' (the table display only).")
@click.option("--max-rows", type=click.IntRange(min=1), default=200, show_default=True,
              help="Show at most this many rows in the table or line display, and count the rest.")
@click.option("--csv", "csv_file", is_flag=False, flag_value="-", default=None, metavar="[FILE]",
              help="Write every row as CSV: to FILE, or to standard output when no FILE is given.")
@click.option("--parquet", "parquet_file", type=click.Path(dir_okay=False), help="Write every row to a Parquet FILE.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of objects instead of a table.")
def sql(db: str, query: str, params: tuple[tuple[str, str], ...], as_lines: bool, max_width: int, max_rows: int,
        csv_file: str | None, parquet_file: str | None, as_json: bool) -> None:
    """Run a SQL query on a store, read-only, and print the result.

    Tables: runs, notes, questions, answers, passages, evaluation, note_decisions and
    patient_decisions; views: answer_values, criteria, eligibility, attrition, and per
    patient (notes with a patient id) patient_answers, patient_criteria,
    patient_eligibility, patient_attrition; latest_run, latest_answers.

    Rows stream from the store: a table shows the first --max-rows and counts the rest, and
    --csv FILE, --parquet FILE or --json write them all.

    \b
    Example:
        crit sql results.duckdb "select status, count(*) from eligibility group by 1"
        crit sql results.duckdb "select * from answers where note_id = $id" -p id mts-2208 --line
        crit sql results.duckdb "select * from attrition" --csv attrition.csv
        crit sql results.duckdb "select * from answer_values" --parquet values.parquet
    """
    from crit.engine.store import Store

    if sum((csv_file is not None, parquet_file is not None, as_json, as_lines)) > 1:
        raise click.UsageError("choose one of --csv, --parquet, --json and --line")
    bound = {name: _param_value(value) for name, value in params}
    with Store.open(db, read_only=True) as store:
        columns, batches = store.query_batches(query, bound)
        if parquet_file is not None:
            n = _write_parquet(parquet_file, batches)
            err.print(f"{n} row(s) written to {printable(parquet_file)}", markup=False)
        elif csv_file is not None:
            n = _write_csv(csv_file, columns, batches)
            if csv_file != "-":
                err.print(f"{n} row(s) written to {printable(csv_file)}", markup=False)
        elif as_json:
            rows = [r for b in batches for r in b.to_pylist()]
            click.echo(json.dumps(rows, indent=2, default=str))
        else:
            shown, total = _first_rows(batches, max_rows)
            if as_lines:
                _print_lines(columns, shown)
            else:
                _print_table(columns, shown, max_width)
            more = f" (showing the first {len(shown)}; --csv FILE or --parquet FILE writes all)" if total > len(shown) else ""
            err.print(f"{total} row(s){more}", markup=False)


def _param_value(text: str) -> Any:
    """A parameter as DuckDB should compare it: a number where the text is one, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _first_rows(batches: Iterator[Any], limit: int) -> tuple[list[tuple[Any, ...]], int]:
    """The first `limit` rows, and how many rows there were in all (the rest are counted, not kept)."""
    shown: list[tuple[Any, ...]] = []
    total = 0
    for batch in batches:
        if len(shown) < limit:
            shown.extend(tuple(r.values()) for r in batch.slice(0, limit - len(shown)).to_pylist())
        total += batch.num_rows
    return shown, total


def _cell(value: Any, width: int | None = None) -> str:
    text = "" if value is None else printable(str(value))
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def _print_table(columns: list[str], rows: list[tuple[Any, ...]], max_width: int) -> None:
    """A table of the columns that fit the terminal, in order; the others are counted, and --line names them
    (a table squeezed to 1-3 characters a column, as `select * from runs` was, cannot be read)."""
    cells = [[_cell(v, max_width) for v in r] for r in rows]
    names = [printable(c) for c in columns]
    widths = [min(max_width, max([len(n), *(len(r[i]) for r in cells)])) for i, n in enumerate(names)]
    shown, used = 0, 1  # rich's table: a border, then each column's cell, padding and border
    for w in widths:
        if shown and used + w + 3 > out.width - 4:  # room for the "…" column of the rest
            break
        used += w + 3
        shown += 1
    table = Table(show_lines=False)
    for name, w in zip(names[:shown], widths):
        table.add_column(escape(name), overflow="fold", min_width=min(w, max(len(name), 3)), max_width=max_width)
    if shown < len(columns):
        table.add_column("…", max_width=1)
    for r in cells:
        # Text, not str: a value like "embedded[enum]" is data, not rich markup
        table.add_row(*(Text(v) for v in r[:shown]), *(("…",) if shown < len(columns) else ()))
    out.print(table)
    if shown < len(columns):
        err.print(f"{shown} of {len(columns)} columns shown (the rest do not fit {out.width} characters): "
                  "--line shows every column of each row", markup=False)


def _print_lines(columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """sqlite3's `.mode line`: every column of a row on its own line, names aligned."""
    names = [printable(c) for c in columns]
    width = max((len(n) for n in names), default=0)
    for i, r in enumerate(rows):
        if i:
            click.echo("")
        for name, value in zip(names, r, strict=True):
            click.echo(f"{name:>{width}} = {_cell(value)}")


def _write_csv(target: str, columns: list[str], batches: Iterator[Any]) -> int:
    import csv as csv_module

    n = 0
    handle = sys.stdout if target == "-" else open(target, "w", newline="", encoding="utf-8")  # noqa: SIM115
    try:
        writer = csv_module.writer(handle, lineterminator="\n")
        # To a file or a pipe the values go as stored; to a terminal they are made printable.
        clean = printable if handle.isatty() else (lambda v: v)
        writer.writerow([clean(c) for c in columns])
        for batch in batches:
            rows = [tuple(r.values()) for r in batch.to_pylist()]
            writer.writerows([[clean(v) if isinstance(v, str) else v for v in r] for r in rows])
            n += len(rows)
    finally:
        if handle is not sys.stdout:
            handle.close()
    return n


def _write_parquet(target: str, batches: Iterator[Any]) -> int:
    import pyarrow.parquet as pq

    n = 0
    writer = None
    try:
        for batch in batches:
            writer = writer or pq.ParquetWriter(target, batch.schema)
            writer.write_batch(batch)
            n += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return n


def _term_sources(question: Any) -> list[tuple[str, str]]:
    """(term, where it came from) for each term that finds the question's passages, in the order tried."""
    from crit.engine.reading.passages import phrase_terms, question_terms
    from crit.engine.reading.vocabulary import expansions

    phrase = {t.lower() for t in phrase_terms(question.phrase)}
    aka = {t.lower() for t in question.aka}
    added = {e.term.lower(): e.source for e in expansions(question.phrase, question.aka, question.kind)}
    return [(t, "phrase" if t.lower() in phrase else "aka" if t.lower() in aka else added.get(t.lower(), "crit"))
            for t in question_terms(question)]


def _terms_table(questions: Any) -> Table:
    """One row per question and source; a question's brands share one row, grouped by drug ("sertraline:
    Zoloft, Lustral"), since a class can have hundreds."""
    table = Table(title="terms that find each question's passages, and where they came from", show_lines=False)
    for col in ("name", "from", "terms"):
        table.add_column(col, overflow="fold")
    for q in questions:
        groups: dict[str, list[str]] = {}
        brands: dict[str, list[str]] = {}
        brand_source = ""
        for term, source in _term_sources(q):
            if source.startswith("brand of "):  # "brand of sertraline (drug-named-entity-recognition 2.0.9)"
                drug, _, dist = source.removeprefix("brand of ").rpartition(" (")
                brands.setdefault(drug, []).append(term)
                brand_source = f"brands ({dist}"
            else:
                groups.setdefault(source, []).append(term)
        rows = [(source, ", ".join(terms)) for source, terms in groups.items()]
        if brands:
            rows.append((brand_source, "; ".join(f"{drug}: {', '.join(ts)}" for drug, ts in brands.items())))
        if q.not_aka:
            rows.append(("not aka (removed)", ", ".join(q.not_aka)))
        for source, terms in rows:
            table.add_row(*(Text(printable(x)) for x in (q.name, source, terms)))
    return table


def _rules_sql(plan: Any) -> str | None:
    """The SQL the rules compile to, when the rules layer is installed with this version."""
    try:
        from crit.engine.eligibility.compile import rules_sql
    except ImportError:
        return None
    return rules_sql(plan)


# The trainer's commands (synth, select, train, eval) join these in crit.cli: engine never imports trainer.
