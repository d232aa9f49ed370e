"""The `crit` command line: thin commands over crit.grammar, crit.engine and crit.trainer.

Each command parses its options, calls one library function and renders the
result with rich. A CritError becomes its rendered diagnostics on stderr and
exit code 1; usage errors exit 2 (click's own); nothing prints a traceback for
bad input.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from crit.grammar.errors import CritError, render

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class CritGroup(click.Group):
    """Turns a CritError raised by any command into a message for people and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CritError as e:
            err.print(e.render(color=err.is_terminal), markup=False, highlight=False)
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
    from crit.engine.plan import check_source
    from crit.grammar.parse import read_source

    text = read_source(file)
    checked = check_source(text, file)
    color = err.is_terminal
    for d in checked.diagnostics:
        err.print(render(d, text, color=color) + "\n", markup=False, highlight=False)
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

    No model is loaded: this shows exactly what `crit run` would ask.

    \b
    Example:
        crit compile criteria/aristotle.crit --json | jq '.questions[].text'
    """
    from crit.engine.plan import load_plan

    plan = load_plan(file)
    if as_json:
        data = plan.model_dump(mode="json", exclude={"lets", "criteria"})
        data["lets"] = [l.meaning() for l in plan.lets]
        data["criteria"] = [c.meaning() for c in plan.criteria]
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
        table.add_row(q.name, q.kind, q.text, q.unit or "", q.fingerprint)
    out.print(table)
    crit_table = Table(title=f"{len(plan.criteria)} criteria")
    for col in ("", "label", "if missing"):
        crit_table.add_column(col)
    for c in plan.criteria:
        crit_table.add_row(c.type, c.label, c.if_missing)
    out.print(crit_table)


@cli.command()
@click.argument("db", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="HTML file to write (overwritten if it exists).")
@click.option("--run", "run_id", default=None, help="Run to report (a run_id from the runs table); default: the latest.")
def report(db: str, output: str, run_id: str | None) -> None:
    """Write one self-contained HTML evidence report of a run: open it in any browser, offline.

    It shows eligibility counts, attrition per criterion, the questions with most
    missing evidence, value distributions against the thresholds, and every note
    with its criteria, answers and highlighted quotes. The file holds the notes'
    text: share it only where the notes may go.

    \b
    Example:
        crit report results.duckdb -o report.html
        crit report results.duckdb -o old.html --run 20261123T101500-abc123
    """
    from crit.engine.report import write_report

    path = write_report(db, output, run_id=run_id)
    size = path.stat().st_size
    out.print(f"wrote {path} ({size / 1e6:.1f} MB)" if size >= 1e6 else f"wrote {path} ({size / 1e3:.0f} kB)", markup=False)


def _rules_sql(plan: Any) -> str | None:
    """The SQL the rules compile to, when the rules layer is installed with this version."""
    try:
        from crit.engine.rules import rules_sql
    except ImportError:
        return None
    return rules_sql(plan)


def main() -> None:
    cli(prog_name="crit")


if __name__ == "__main__":
    main()
