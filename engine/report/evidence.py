"""The report's per-note evidence: a number's own span, every candidate value, each criterion as written.

crit.engine.report.html calls these while it gathers a run; they read the plan and the stored
answers and never a model. A numeric question's candidates are the values the rules' reader
listed (answers.candidates); an answer that lists none (a model's, or an older store's) is read
again with the reader's number finder over the question's passages, a few regular expressions
per note and question.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from crit.engine.answers import Candidate
from crit.engine.reading.passages import find_passages
from crit.engine.reading.reader import decide
from crit.grammar import ast
from crit.grammar.errors import Span
from crit.grammar.plan import Plan

__all__ = ["candidates_of", "criterion_sources", "flow", "natural_key", "value_span"]

_DIGITS = re.compile(r"([0-9]+)")
_WRITTEN = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?")  # a number as a note writes it ("126,000")


def natural_key(text: str) -> list[Any]:
    """Sort key that orders the numbers inside ids by value: mts-2 before mts-10.

    re.split with a group alternates text and digits, so positions compare str with str and int with int."""
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(_DIGITS.split(text))]


# ---- numbers ---------------------------------------------------------------------------------


def candidates_of(answer: dict[str, Any], text: str, plan: Plan | None) -> list[Candidate]:
    """Every value the note gives for a numeric answer's question: the stored list, else read again.

    Re-reading is skipped for the gate's answers (no passage mentions the question, so there is no
    value) and for the rules' own (an empty list there means the reader found none)."""
    stored = answer.get("candidates")
    if stored:
        raw = json.loads(stored) if isinstance(stored, str) else stored
        return [Candidate.model_validate(c) for c in raw or []]
    if plan is None or answer.get("method") in ("gate", "rules") or answer.get("error") is not None:
        return []
    question = next((q for q in plan.questions if q.name == answer["question"]), None)
    if question is None or question.kind != "numeric":
        return []
    return list(decide(question, text, find_passages(text, question)).get("candidates") or [])


def value_span(text: str, span: tuple[int, int], value: float | None,
               candidates: Sequence[Candidate]) -> tuple[int, int]:
    """The span of the number itself inside an answer's evidence `span`.

    The rules' evidence already is the number ("1.4 mg/dL"); a model quotes a sentence, so the report
    marks the candidate inside the quote that has the answer's value, else the first number the quote
    writes with that value; failing both, the quote as it is (never a guess outside it)."""
    if value is None:
        return span
    start, end = span
    inside = [c for c in candidates if start <= c.span_start and c.span_end <= end and abs(c.value - value) < 1e-9]
    if inside:
        return inside[0].span_start, inside[0].span_end
    for m in _WRITTEN.finditer(text, start, end):
        if abs(float(m.group(0).replace(",", "")) - value) < 1e-9:
            return m.start(), m.end()
    return span


# ---- criteria as written ------------------------------------------------------------------------


def _slice(source: str, span: Span | None) -> str | None:
    """The text of a 1-based, end-exclusive (line, col) span of the .crit source."""
    if span is None or not source:
        return None
    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    try:
        a = starts[span.line - 1] + span.col - 1
        b = starts[span.end_line - 1] + span.end_col - 1
    except IndexError:
        return None
    return " ".join(source[a:b].split()) or None  # a criterion written over lines reads as one line


def _uses(expr: ast.Node, lets: dict[str, ast.LetDecl], seen: set[str]) -> tuple[list[str], list[str]]:
    """(questions, lets) a criterion's expression reads, lets followed to their own questions, in order."""
    questions: list[str] = []
    used_lets: list[str] = []
    for node in ast.names_in(expr):
        name = node.name
        if name in lets and isinstance(node, ast.Name):
            if name not in seen:
                seen.add(name)
                used_lets.append(name)
                q, inner = _uses(lets[name].expr, lets, seen)
                questions.extend(q)
                used_lets.extend(inner)
        else:
            questions.append(name)
    return list(dict.fromkeys(questions)), list(dict.fromkeys(used_lets))


def criterion_sources(plan: Plan) -> list[dict[str, Any]]:
    """Per criterion (file order, position from 1): its expression as written, the questions it reads
    (through lets), and each let it reads with the let's own expression."""
    lets = {let.name: let for let in plan.lets}
    out = []
    for i, c in enumerate(plan.criteria, 1):
        questions, used = _uses(c.expr, lets, set())
        out.append({
            "position": i,
            "expr": _slice(plan.source_text, c.expr.span),
            "uses": questions,
            "lets": [[name, _slice(plan.source_text, lets[name].expr.span)] for name in used],
        })
    return out


# ---- the flow diagram ---------------------------------------------------------------------------


def flow(attrition: Sequence[dict[str, Any]], counts: dict[str, int], unit: str) -> dict[str, Any] | None:
    """A CONSORT-style flow from the rules' attrition: screened in, removed by each criterion (the first
    that fails a subject, in file order), then unknown and eligible out. None without criteria rows."""
    if not attrition:
        return None
    screened = int(attrition[0]["remaining_before"])
    steps = [{"position": r["position"], "label": r["label"], "type": r["type"], "removed": int(r["removed"]),
              "remaining": int(r["remaining_after"])} for r in attrition]
    return {
        "unit": unit,
        "screened": screened,
        "steps": [s for s in steps if s["removed"]],
        "quiet": [s for s in steps if not s["removed"]],  # criteria that removed no one, named in one line
        "excluded": sum(s["removed"] for s in steps),
        "remaining": steps[-1]["remaining"],
        "unknown": counts.get("unknown", 0),
        "eligible": counts.get("eligible", 0),
    }
