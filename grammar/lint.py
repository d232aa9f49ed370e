"""Lint: warnings about questions that are not single-order.

The paper's finding is that a boolean question hiding a threshold ("creatinine
above 1.3") or a conjunction ("diabetes and hypertension") is answered worse
than a numeric question plus a rule. These are warnings: the file still runs.
"""

from __future__ import annotations

import re

from crit.grammar import ast
from crit.grammar.errors import Diagnostic

_NUMBER = r"\d+(?:\.\d+)?"
_THRESHOLD = re.compile(
    rf"(?P<cmp>[<>]=?|≥|≤|\b(?:above|below|over|under|greater than|more than|less than|higher than|lower than|"
    rf"at least|at most|exceeding|exceeds|>=|<=)\b)\s*(?P<num>{_NUMBER})\s*(?P<unit>[^\s,;)]*)",
    re.IGNORECASE,
)
_CONJUNCTION = re.compile(r"\b(?:and|as well as|plus|together with)\b|&", re.IGNORECASE)


def _analyte_before(phrase: str, start: int) -> str:
    words = re.findall(r"[A-Za-z][A-Za-z0-9\-]*", phrase[:start])
    return words[-1] if words else "value"


def lint(file: ast.CritFile) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for q in file.questions:
        if q.type != "boolean":
            continue
        span = q.phrase_span or q.span
        m = _THRESHOLD.search(q.phrase)
        if m:
            analyte = _analyte_before(q.phrase, m.start())
            unit = m.group("unit") or "<unit>"
            op = ">" if m.group("cmp").lower() in (">", "above", "over", "greater than", "more than", "higher than", "exceeding", "exceeds") else (
                "<" if m.group("cmp").lower() in ("<", "below", "under", "less than", "lower than") else m.group("cmp"))
            order = "lowest" if op.startswith("<") else "highest"
            out.append(Diagnostic(
                severity="warning", code="W201", file=file.path, span=span,
                message=f"boolean '{q.name}' hides a threshold: not a single-order question",
                label="asks for a comparison",
                hint=f'ask for the number and compare in a rule: numeric {q.name} {order} "{analyte}" in {unit}'
                     f" ... then use `{q.name} {op} {m.group('num')}`",
            ))
            continue
        m = _CONJUNCTION.search(q.phrase)
        if m:
            left, right = q.phrase[: m.start()].strip(" ,"), q.phrase[m.end():].strip(" ,")
            out.append(Diagnostic(
                severity="warning", code="W202", file=file.path, span=span,
                message=f"boolean '{q.name}' joins two findings with '{m.group(0)}': not a single-order question",
                label="two questions in one",
                hint=f'split it: boolean {q.name}_a "{left}" and boolean {q.name}_b "{right}", then combine with `and`',
            ))
    return out
