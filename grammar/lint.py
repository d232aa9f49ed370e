"""Lint: warnings about questions that are not single-order, or that nothing uses.

The paper's finding is that a boolean question hiding a threshold ("creatinine
above 1.3") or a conjunction ("diabetes and hypertension") is answered worse
than a numeric question plus a rule. A time limit inside a phrase ("in the past
3 months") is a rule hidden in a question too: the window belongs to the rule
(`mi within 3 months`), where the notes' dates decide it. A question that no
criterion or let reads is asked of every note for nothing. These are warnings:
the file still runs (`crit check --strict` fails on them).
"""

from __future__ import annotations

import re

from crit.grammar import ast
from crit.grammar.errors import Diagnostic, Span

_NUMBER = r"\d+(?:\.\d+)?"
_THRESHOLD = re.compile(
    rf"(?P<cmp>[<>]=?|≥|≤|\b(?:above|below|over|under|greater than|more than|less than|higher than|lower than|"
    rf"at least|at most|exceeding|exceeds|>=|<=)\b)\s*(?P<num>{_NUMBER})\s*(?P<unit>[^\s,;)]*)",
    re.IGNORECASE,
)
_TIME_LIMIT = re.compile(
    r"\b(?:(?:in|within|during|over|for)\s+)?(?:the\s+)?(?:past|last|previous|prior|preceding)\s+"
    r"(?P<amount>\d+|one|two|three|four|five|six|twelve)\s+(?P<unit>days?|weeks?|months?|years?)\b", re.IGNORECASE)
_CONJUNCTION = re.compile(r"\b(?:and|as well as|plus|together with)\b|&", re.IGNORECASE)


def _analyte_before(phrase: str, start: int) -> str:
    words = re.findall(r"[A-Za-z][A-Za-z0-9\-]*", phrase[:start])
    return words[-1] if words else "value"


def _names_read(file: ast.CritFile) -> set[str]:
    """Every name the file's criteria and lets read."""
    stack: list[ast.Node] = [s.expr for s in file.statements if isinstance(s, ast.CriterionDecl | ast.LetDecl)]
    names: set[str] = set()
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name | ast.BoundRef):
            names.add(node.name)
        stack.extend(ast.children(node))
    return names


def lint(file: ast.CritFile) -> list[Diagnostic]:
    out: list[Diagnostic] = []

    def warn(code: str, span: Span | None, message: str, label: str, hint: str) -> None:
        out.append(Diagnostic(severity="warning", code=code, file=file.path, span=span, message=message,
                              label=label, hint=hint))

    read = _names_read(file)
    for q in file.questions:
        m = _TIME_LIMIT.search(q.phrase)
        if m:
            warn("W203", q.phrase_span or q.span, f"'{q.name}' puts a time limit inside its phrase ('{m.group(0).strip()}')",
                 "a window hidden in the question",
                 f"ask without it and put the window in the rule: `{q.name} within {m.group('amount')} "
                 f"{m.group('unit').lower().rstrip('s')}s` (the notes' dates decide it)")
        if q.name not in read:
            warn("W204", q.span, f"no criterion or let reads '{q.name}'", "asked of every note for its stored answers alone",
                 "fine if you want its answers in SQL; otherwise use it in a rule or remove it")
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
            warn("W201", span, f"boolean '{q.name}' hides a threshold: not a single-order question", "asks for a comparison",
                 f'ask for the number and compare in a rule: numeric {q.name} {order} "{analyte}" in {unit}'
                 f" ... then use `{q.name} {op} {m.group('num')}`")
            continue
        m = _CONJUNCTION.search(q.phrase)
        if m:
            left, right = q.phrase[: m.start()].strip(" ,"), q.phrase[m.end():].strip(" ,")
            warn("W202", span, f"boolean '{q.name}' joins two findings with '{m.group(0)}': not a single-order question",
                 "two questions in one",
                 f'split it: boolean {q.name}_a "{left}" and boolean {q.name}_b "{right}", then combine with `and`')
    return out
