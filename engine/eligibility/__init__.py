"""Eligibility: a plan's lets and criteria over a store's answers, to each note's and patient's status.

Takes a Plan (crit.grammar.plan) and the answers in a Store; gives the tables and views
`criteria`, `eligibility`, `attrition` and their patient_* forms, written into the store.

- compile: the plan's rules as one DuckDB SQL script (pure; `crit compile --json` shows it);
- evaluate: load the script's inputs from the store and run it.

It is also the door to a runnable plan: `load_plan`, `plan_from_text` and `check_source` run the
language's checks (crit.grammar.plan.check_language) and then compile the rules, so a rule that
cannot run is an error of `crit check`, never a failure after every model call.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crit.engine.eligibility.compile import rules_sql
from crit.grammar.errors import CritError, Diagnostic
from crit.grammar.parse import read_source
from crit.grammar.plan import Checked, Plan, check_language

__all__ = ["check_source", "load_plan", "plan_from_text", "rules_problem", "stored_plan"]


def check_source(text: str, path: str | None = None) -> Checked:
    """Every diagnostic of .crit text, and its plan when it has no error (nothing raised)."""
    checked = check_language(text, path)
    if checked.plan is not None:
        problem = rules_problem(checked.plan)
        if problem is not None:
            return Checked(source=text, plan=None, diagnostics=[*checked.diagnostics, problem])
    return checked


def plan_from_text(text: str, path: str | None = None) -> Plan:
    """Check and compile .crit text (as a store keeps it); raise CritError with every error it has."""
    checked = check_source(text, path)
    if checked.plan is None:
        raise CritError(checked.errors, text)
    return checked.plan


def load_plan(path: str | Path) -> Plan:
    """Read, check and compile a .crit file; raise CritError with every error it has."""
    return plan_from_text(read_source(path), str(path))


def rules_problem(plan: Plan) -> Diagnostic | None:
    """Compile the rules SQL now, so a rule that cannot run (a threshold that overflows once converted,
    `creat > 1e308 g/dL`) is an error of `crit check`, not a failure after every model call."""
    try:
        rules_sql(plan)
    except CritError as err:
        first = err.diagnostics[0] if err.diagnostics else None
        message = first.message if first is not None else str(err)
        return Diagnostic(code="E010", message=f"a rule cannot be compiled: {message}", file=plan.source,
                          hint="use a threshold that is a finite number in the question's unit")
    except RecursionError:
        return Diagnostic(code="E011", message="an expression is nested too deeply to compile", file=plan.source,
                          hint="split it with `let` into named parts")
    return None


def stored_plan(run: Mapping[str, Any] | None) -> tuple[Plan | None, str | None]:
    """The plan a stored run compiled (its .crit text is in the store), else its .crit file's; or None and
    why not. `run` is a runs row (crit_source, crit_file, rules_fingerprint)."""
    run = run or {}
    if run.get("crit_source"):
        try:
            return plan_from_text(run["crit_source"], run.get("crit_file")), None
        except CritError:
            pass  # written by another crit whose language differed; try the file
    path = run.get("crit_file")
    if not path:
        return None, "the run does not name its .crit file"
    if not Path(path).is_file():
        return None, f"the criteria file {path} is not here"
    try:
        plan = load_plan(path)
    except CritError:
        return None, f"the criteria file {path} no longer compiles"
    stored = run.get("rules_fingerprint")
    if stored and stored != plan.rules_fingerprint:
        return plan, f"the criteria file {path} changed since this run: thresholds drawn are today's"
    return plan, None
