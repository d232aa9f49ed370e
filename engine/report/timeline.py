"""Patient timelines for the report: each patient's notes by date, the evidence that decided
each criterion, and the windows the rules drew, as a small inline SVG.

Everything comes from the store the rules wrote (`patient_eligibility`, `patient_criteria`,
`patient_answers`, `notes`, read through crit.engine.store) and the run's plan, which says
which questions and windows each criterion reads. Nothing is decided here: this module only shows what the SQL decided.
"""

from __future__ import annotations

from datetime import date
from html import escape
from typing import Any

from markupsafe import Markup
from pydantic import BaseModel

from crit.engine.store import Store
from crit.grammar import ast
from crit.grammar.plan import Plan, window_spec

MAX_PATIENTS = 200  # a report is read by a person; `crit sql` has the rest
MAX_QUOTE = 160


class Evidence(BaseModel):
    """One combined answer a criterion read: the value and the note (and words) it came from."""

    question: str
    boolean: bool
    window: str | None  # "6 months"; None: all the patient's notes
    window_start: date | None
    converted: float | None
    unit: str | None
    reason: str | None  # why there is no value: na, window, error, unit, missing
    note_id: str | None
    note_date: date | None
    quote: str | None

    @property
    def shown(self) -> str | None:
        """The value as a reader says it: present / absent, or the number and its unit."""
        if self.converted is None:
            return None
        if self.boolean:
            return "present" if self.converted else "absent"
        return f"{self.converted:g}" + (f" {self.unit}" if self.unit else "")


class CriterionLine(BaseModel):
    position: int
    label: str
    type: str
    status: str
    reason: str
    evidence: list[Evidence]


class PatientTimeline(BaseModel):
    patient_id: str
    status: str
    deciding: list[str]
    index_date: date | None
    notes: list[tuple[str, date | None]]  # by date, undated last
    criteria: list[CriterionLine]

    def svg(self) -> Markup:
        return _draw(self)


def reads(plan: Plan) -> dict[int, list[tuple[str, str | None]]]:
    """Criterion position -> the (question, window label) pairs its expression reads, lets expanded."""
    lets = {let.name: let.expr for let in plan.lets}
    questions = {q.name for q in plan.questions}

    def walk(node: ast.Node, seen: frozenset[str]) -> list[tuple[str, str | None]]:
        if isinstance(node, ast.Window):
            return [(window_spec(node).question, window_spec(node).label)]
        if isinstance(node, (ast.Name, ast.BoundRef)):
            name = node.name
            if name in lets and name not in seen:
                return walk(lets[name], seen | {name})
            # The built-in sex is shown with the patient, not as evidence: it is not combined like an answer.
            return [(name, None)] if name in questions and name != "sex" else []
        return [pair for child in ast.children(node) for pair in walk(child, seen)]

    out = {}
    for pos, c in enumerate(plan.criteria, 1):
        pairs = walk(c.expr, frozenset())
        out[pos] = list(dict.fromkeys(pairs))
    return out


def timelines(store: Store, eligibility: list[dict[str, Any]], plan: Plan | None) -> list[PatientTimeline]:
    """The timelines of the first MAX_PATIENTS patients of `eligibility` (the store's patient_eligibility rows)."""
    shown = eligibility[:MAX_PATIENTS]
    if not shown:
        return []
    notes, answers, criteria = store.patient_rows([r["patient_id"] for r in shown])
    text_of = {n["note_id"]: n["text"] or "" for n in notes}
    answer_of = {(a["patient_id"], a["question"], a["time_window"]): a for a in answers}
    index_of = {a["patient_id"]: a["index_date"] for a in answers}
    # Each patient's rows, grouped once (the store returns them ordered).
    notes_of: dict[str, list[tuple[str, date | None]]] = {}
    for n in notes:
        notes_of.setdefault(n["patient_id"], []).append((n["note_id"], n["note_date"]))
    criteria_of: dict[str, list[dict[str, Any]]] = {}
    for c in criteria:
        criteria_of.setdefault(c["patient_id"], []).append(c)
    read = reads(plan) if plan is not None else {}
    out = []
    for p in shown:
        pid = p["patient_id"]
        lines = []
        for c in criteria_of.get(pid, []):
            evidence = []
            for question, window in read.get(c["position"], []):
                a = answer_of.get((pid, question, window))
                if a is None:
                    continue
                quote = None
                start, end = a["span_start"], a["span_end"]
                if a["note_id"] is not None and start is not None and end is not None:
                    quote = text_of.get(a["note_id"], "")[start:end][:MAX_QUOTE] or None
                q = plan.question(question) if plan is not None else None
                evidence.append(Evidence(question=question, boolean=q is not None and q.kind == "boolean", window=window,
                                         window_start=_date(a["window_start"]), converted=a["converted"],
                                         unit=q.unit if q is not None else None,
                                         reason=a["reason"], note_id=a["note_id"], note_date=_date(a["note_date"]), quote=quote))
            lines.append(CriterionLine(position=c["position"], label=c["label"], type=c["type"], status=c["status"],
                                       reason=c["reason"], evidence=evidence))
        out.append(PatientTimeline(
            patient_id=pid, status=p["status"], deciding=list(p["deciding"] or []), index_date=index_of.get(pid),
            notes=notes_of.get(pid, []), criteria=lines,
        ))
    return out


def _draw(t: PatientTimeline) -> Markup:
    """Notes as dots on a date axis; each window a band from its start to the index date; the note
    an answer came from filled."""
    dated = [d for _, d in t.notes if d is not None]
    windows = {(e.window, e.window_start, e.question) for c in t.criteria for e in c.evidence if e.window_start}
    if not dated:
        return Markup('<p class="muted">No note of this patient is dated: windows have nothing to read.</p>')
    first = min([*dated, *(w[1] for w in windows if w[1])])
    last = max([*dated, *([t.index_date] if t.index_date else [])])
    span = max((last - first).days, 1)
    width, left, right = 640, 150, 20

    def x(d: date) -> float:
        return left + (d - first).days / span * (width - left - right)

    evidence_notes = {e.note_id for c in t.criteria for e in c.evidence if e.note_id}
    rows = sorted(windows, key=lambda w: (w[2], w[1]))
    height = 46 + 16 * len(rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="timeline of {escape(t.patient_id)}">',
             f'<line x1="{left}" y1="20" x2="{width - right}" y2="20" stroke="#999"/>',
             '<text x="0" y="24" font-size="11">notes</text>']
    for note_id, d in t.notes:
        if d is None:
            continue
        fill = "#1f77b4" if note_id in evidence_notes else "white"
        parts.append(f'<circle cx="{x(d):.1f}" cy="20" r="5" fill="{fill}" stroke="#1f77b4">'
                     f'<title>{escape(note_id)} {d.isoformat()}</title></circle>')
    for i, (label, start, question) in enumerate(rows):
        y = 38 + 16 * i
        end = t.index_date or last
        parts.append(f'<text x="0" y="{y + 9}" font-size="11">{escape(question)} within {escape(label or "")}</text>')
        parts.append(f'<rect x="{x(start):.1f}" y="{y}" width="{max(x(end) - x(start), 1):.1f}" height="10" '
                     f'fill="#ff7f0e" fill-opacity="0.35"><title>{start.isoformat()} to {end.isoformat()}</title></rect>')
    if t.index_date:
        parts.append(f'<line x1="{x(t.index_date):.1f}" y1="8" x2="{x(t.index_date):.1f}" y2="{height - 4}" '
                     f'stroke="#d62728" stroke-dasharray="3,2"><title>index date {t.index_date.isoformat()}</title></line>')
    parts.append(f'<text x="{left}" y="{height - 2}" font-size="10">{first.isoformat()}</text>')
    parts.append(f'<text x="{width - right}" y="{height - 2}" font-size="10" text-anchor="end">{last.isoformat()}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _date(value: object) -> date | None:
    """A date as the store gives it; None for one Python cannot hold (a window reaching before year 1
    comes back from DuckDB as text, "0001-09-01 (BC)"): the timeline then draws it open-ended."""
    return value if isinstance(value, date) else None
