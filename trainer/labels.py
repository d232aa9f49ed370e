"""Labels: an answer as a gold file writes it, and whether it is right (one definition for crit eval's
benchmarks, the trials benchmark and crit calibrate)."""

from __future__ import annotations

from crit.engine.answers import Answer
from crit.grammar import units
from crit.grammar.questions import Question

NA = (None, "not mentioned")


def label_of(a: Answer | None, q: Question, gold_unit: str | None) -> str | float | None:
    """An answer as the gold file writes it: a boolean label, or a number in the gold's unit."""
    if a is None or a.error:
        return "error" if q.kind == "boolean" else float("inf")
    if q.kind == "boolean":
        return "not mentioned" if a.na else ("present" if a.value == 1.0 else "absent")
    if a.na or a.value is None:
        return None
    target = gold_unit or q.unit
    if target is None or a.unit is None or units.normalise_unit(a.unit) == units.normalise_unit(target):
        return a.value
    converted = units.convert(a.value, a.unit, target, units.analyte_of(q.phrase, q.aka))
    return float("inf") if converted is None else converted


def right(g: str | float | None, p: str | float | None, rel_tol: float = 0.05) -> bool:
    """A boolean label exactly; a number within `rel_tol` of the gold's; a missing value only as missing."""
    if isinstance(g, str) or isinstance(p, str):
        return g == p
    if g is None or p is None:
        return g is None and p is None
    return abs(p - g) <= rel_tol * abs(g) + 1e-9
