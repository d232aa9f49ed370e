"""Report: one self-contained HTML file that shows a run's evidence, note by note.

`write_report` opens a store read-only, gathers the run, the rules' results
(`eligibility`, `criteria`, `answer_values`, `attrition`; per patient, when the
notes name patients, `patient_eligibility` and a timeline per patient from
crit.engine.report.timeline) and every answer with its quoted span, and renders `templates/report.html.j2` with Jinja2
(autoescaped). The file loads nothing from the network: CSS and JS are inline,
and the per-note data is one JSON blob that the page's script filters,
paginates and renders only when a note is opened, so 10,000 notes stay
responsive. Note text reaches the page only as JSON and is put on screen with
`textContent`, never as markup.

Plots are drawn here, server-side, with matplotlib as inline SVG: a static
picture needs no JavaScript library in the page (plotly.js would add over
3 MB to every report, vega-lite and vega-embed need their scripts inlined
too), matplotlib is well kept and widely trusted, and SVG scales and prints.
One plot per numeric question: the distribution of converted values, with each
rule's threshold drawn as a line, split by sex where the threshold is sex-aware.

Thresholds come from the plan, reloaded from the run's .crit file; when that
file is gone the report says so and draws distributions without thresholds.
"""

from __future__ import annotations

import io
import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from jinja2 import Environment, PackageLoader
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict

from crit.engine.eligibility import stored_plan
from crit.engine.notes.columns import sex_of
from crit.engine.report.evidence import candidates_of, criterion_sources, flow, natural_key, value_span
from crit.engine.report.timeline import timelines
from crit.engine.store import Store
from crit.grammar import ast, units
from crit.grammar.errors import CritError
from crit.grammar.plan import Plan

__all__ = ["Threshold", "thresholds", "write_report"]


class Threshold(BaseModel):
    """A value a rule compares a numeric question with, in the question's unit, per sex."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str
    label: str  # the criterion's label
    op: str  # the comparison as written with the question on the left: ">", "<=", "within", ...
    male: float | None
    female: float | None

    @property
    def sex_aware(self) -> bool:
        return self.male != self.female


# ---- the run's plan ---------------------------------------------------------------------


# ---- thresholds from the plan -----------------------------------------------------------




def _per_sex(node: ast.Node, question: str, plan: Plan) -> tuple[float | None, float | None] | None:
    """The (male, female) value of a threshold expression in `question`'s unit, or None if not a threshold."""
    q = plan.question(question)
    if isinstance(node, ast.Quantity):
        if node.unit is None or q.unit is None or node.unit == q.unit:
            return node.value, node.value
        lin = units.linear(node.unit, q.unit, units.analyte_of(q.phrase, q.aka), tuple(plan.conversions))
        if lin is None:
            return None
        v = lin.apply(node.value)
        return v, v
    if isinstance(node, ast.Neg):
        inner = _per_sex(node.operand, question, plan)
        return None if inner is None else tuple(None if v is None else -v for v in inner)  # type: ignore[return-value]
    if isinstance(node, ast.BoundRef):
        r = plan.ranges.get(node.name)
        if r is None:
            return None
        return (r.male_high, r.female_high) if node.func == "uln" else (r.male_low, r.female_low)
    if isinstance(node, ast.Arith) and node.op in ("*", "/"):
        for k, other in ((node.left, node.right), (node.right, node.left)):
            if isinstance(k, ast.Quantity) and k.unit is None and not (node.op == "/" and k is node.left):
                inner = _per_sex(other, question, plan)
                if inner is None:
                    return None
                f = k.value if node.op == "*" else 1 / k.value if k.value else None
                if f is None:
                    return None
                return tuple(None if v is None else v * f for v in inner)  # type: ignore[return-value]
    return None


def thresholds(plan: Plan) -> list[Threshold]:
    """Every `question <op> value` and `question above/below/within range` in the plan's criteria.

    Comparisons with lets or with other questions are not thresholds on one axis and are skipped.
    """
    numeric = {q.name for q in plan.questions if q.kind == "numeric"}
    found: list[Threshold] = []
    for c in plan.criteria:
        for node in ast.walk(c.expr):
            if isinstance(node, ast.Compare):
                for name_side, other, op in ((node.left, node.right, node.op), (node.right, node.left, ast.FLIPPED[node.op])):
                    if isinstance(name_side, ast.Name) and name_side.name in numeric:
                        value = _per_sex(other, name_side.name, plan)
                        if value is not None:
                            found.append(Threshold(question=name_side.name, label=c.label, op=op, male=value[0], female=value[1]))
                        break
            elif isinstance(node, ast.RangeTest) and isinstance(node.operand, ast.Name):
                r = plan.ranges.get(node.operand.name)
                if r is None or node.operand.name not in numeric:
                    continue
                for bound, male, female in (("low", r.male_low, r.female_low), ("high", r.male_high, r.female_high)):
                    if male is not None or female is not None:
                        label = f"{c.label} ({node.side} range, {bound})"
                        found.append(Threshold(question=node.operand.name, label=label, op=node.side, male=male, female=female))
    return found


# ---- plots ----------------------------------------------------------------------------------

_COLORS = {"any": "#4c72b0", "male": "#4c72b0", "female": "#c44e52"}


def value_plot(question: str, unit: str | None, values: dict[str, list[float]], lines: list[Threshold]) -> Markup:
    """An inline SVG: histogram of `values` per sex group, with a vertical line per threshold."""
    import matplotlib

    matplotlib.use("Agg")  # no display; also keeps matplotlib from probing GUI toolkits
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "crit", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(5.2, 2.4))
        try:
            # Not finite (a conversion to inf): no bin holds it; the caller counts what it left out.
            left_out = sum(not math.isfinite(v) for vs in values.values() for v in vs)
            values = {k: [v for v in vs if math.isfinite(v)] for k, vs in values.items()}
            everything = [v for vs in values.values() for v in vs]
            bins = min(30, max(5, len(set(everything))))
            groups = [(k, vs) for k, vs in values.items() if vs]
            ax.hist(
                [vs for _, vs in groups],
                bins=bins,
                label=[f"{k} (n={len(vs)})" for k, vs in groups],
                color=[_COLORS.get(k, "#888888") for k, _ in groups],
                alpha=0.8,
                stacked=len(groups) > 1,
            )
            for t in lines:
                if t.sex_aware:
                    for sex, v in (("male", t.male), ("female", t.female)):
                        if v is not None:
                            ax.axvline(v, color=_COLORS[sex], linestyle="--", linewidth=1.2)
                            ax.annotate(f"{t.label} ({sex} {t.op} {v:g})", (v, 1), xycoords=("data", "axes fraction"),
                                        rotation=90, va="top", ha="right", fontsize=7, color=_COLORS[sex],
                                        parse_math=False)  # a label is text: "$...$" is not mathtext
                elif t.male is not None:
                    ax.axvline(t.male, color="#222222", linestyle="--", linewidth=1.2)
                    ax.annotate(f"{t.label} ({t.op} {t.male:g})", (t.male, 1), xycoords=("data", "axes fraction"),
                                rotation=90, va="top", ha="right", fontsize=7, color="#222222", parse_math=False)
            xlabel = f"{question} ({unit})" if unit else question
            if left_out:
                xlabel += f"; {left_out} value(s) not finite, left out"
            ax.set_xlabel(xlabel, parse_math=False)
            ax.set_ylabel("notes")
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # counts of notes
            if len(groups) > 1:
                legend = ax.legend(fontsize=7, frameon=False)
                for text in legend.get_texts():
                    text.set_parse_math(False)
            ax.spines[["top", "right"]].set_visible(False)
            fig.tight_layout()
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        finally:
            plt.close(fig)
    svg = buf.getvalue()
    # matplotlib writes a full XML document; inside HTML only the <svg> element belongs.
    # Its text is XML-escaped by matplotlib, so it is safe to inline as markup.
    return Markup(svg[svg.index("<svg") :])


# ---- gathering ------------------------------------------------------------------------------

_NON_BMP = re.compile("[\U00010000-\U0010ffff]")


def _utf16(text: str, offset: int) -> int:
    """A Python character offset as a JavaScript (UTF-16) string index."""
    return offset + len(_NON_BMP.findall(text[:offset]))


def _num(v: Any) -> float | None:
    return None if v is None else round(float(v), 6)


def _gather(store: Store, run_id: str | None) -> dict[str, Any]:
    tables = store.columns()
    for needed in ("notes", "answers"):
        if needed not in tables:
            raise CritError(f"the store has no {needed} table; run `crit run` first")
    run = store.run_record(run_id)
    plan, plan_note = stored_plan(run)
    evaluation = store.evaluation_record()

    # The answer_key of each question in this run (runs share answers through their keys).
    run_keys = store.run_answer_keys(str(run["run_id"])) if run is not None and "run_questions" in tables else {}

    # Questions: the plan's, else what the store recorded for the run's keys, else the names answers use.
    if plan is not None:
        questions = [{"name": q.name, "kind": q.kind, "unit": q.unit, "text": q.text} for q in plan.questions]
    elif run_keys and "questions" in tables:
        questions = store.questions_of(list(run_keys.values()))
    else:
        questions = [{"name": n, "kind": None, "unit": None, "text": None} for n in store.answered_questions()]

    notes = store.note_texts()
    answers = store.chosen_answers(list(run_keys.values()))
    values = {(r["note_id"], r["question"]): r for r in store.rules_rows("answer_values")}
    eligibility = {r["note_id"]: r for r in store.rules_rows("eligibility")}
    criteria_rows = store.rules_rows("criteria")
    attrition = store.rules_rows("attrition")

    criteria: dict[int, dict[str, Any]] = {}
    per_note_criteria: dict[str, list[list[Any]]] = {}
    for r in criteria_rows:
        criteria.setdefault(r["position"], {"position": r["position"], "label": r["label"], "type": r["type"]})
        per_note_criteria.setdefault(r["note_id"], []).append([r["position"], r["status"], r["reason"]])
    if not criteria and plan is not None:
        criteria = {i: {"position": i, "label": c.label, "type": c.type} for i, c in enumerate(plan.criteria, 1)}
    # Each criterion as the .crit file writes it, and the questions it reads, beside its result per note.
    # Only when the rules last evaluated are this plan's: an edited file's results would sit beside the
    # expressions they did not compute.
    evaluated_fp = (evaluation or {}).get("rules_fingerprint")
    if plan is not None and evaluated_fp in (None, plan.rules_fingerprint):
        for source in criterion_sources(plan):
            if source["position"] in criteria:
                criteria[source["position"]].update(source)

    by_note: dict[str, list[dict[str, Any]]] = {}
    quality = {q["name"]: {"question": q["name"], "answers": 0, "na": 0, "ungrounded": 0, "errors": 0} for q in questions}
    for a in answers:
        by_note.setdefault(a["note_id"], []).append(a)
        qstat = quality.setdefault(a["question"], {"question": a["question"], "answers": 0, "na": 0, "ungrounded": 0, "errors": 0})
        qstat["answers"] += 1
        if a["error"] is not None:
            qstat["errors"] += 1
        elif a["na"]:
            qstat["na"] += 1
        elif not a["grounded"]:
            qstat["ungrounded"] += 1

    # Sex per note, as the rules read it: the notes' column, else the built-in question (1 = female).
    note_sex: dict[str, str | None] = {}
    for n in notes:
        s = sex_of(None if n["sex"] is None else str(n["sex"]))
        if s is None:
            v = values.get((n["note_id"], "sex"), {}).get("converted")
            s = None if v is None else "female" if v else "male"
        note_sex[n["note_id"]] = s

    kinds = {q["name"]: q["kind"] for q in questions}
    note_data = []
    for n in sorted(notes, key=lambda n: natural_key(n["note_id"])):  # mts-2 before mts-10
        nid, text = n["note_id"], n["text"] or ""
        ans = []
        for a in sorted(by_note.get(nid, []), key=lambda a: a["question"]):
            v = values.get((nid, a["question"]), {})
            s0, s1 = a["span_start"], a["span_end"]
            # Highlight only a verbatim quote backing a value: an NA answer's quote (often a stray
            # "no" found inside some word) is no evidence, and the page says "not in the note" instead.
            span_ok = (
                s0 is not None and s1 is not None and 0 <= s0 < s1 <= len(text)
                and not a["na"] and a["error"] is None
            )
            numeric = kinds.get(a["question"]) == "numeric" or bool(a.get("candidates"))
            cands = candidates_of(a, text, plan) if numeric else []
            # A number is marked by its own span ("1.4 mg/dL"), not by the sentence a model quoted.
            shown = value_span(text, (s0, s1), a["value"], cands) if span_ok and numeric else (s0, s1)
            ans.append(
                {
                    "q": a["question"],
                    "k": kinds.get(a["question"]),
                    "v": _num(a["value"]),
                    "u": a["unit"],
                    "c": _num(v.get("converted")),
                    "why": v.get("reason"),
                    "na": bool(a["na"]),
                    "g": bool(a["grounded"]) and span_ok,
                    "s": [_utf16(text, shown[0]), _utf16(text, shown[1])] if span_ok else None,
                    # The answer's own span in Python characters: what exported labels cite (gold's offsets).
                    "p": [s0, s1] if span_ok else None,
                    "src": a["source"],
                    "err": a["error"],
                    "m": a.get("method"),  # gate / rules / model (stores before evidence-first: None)
                    "r": a.get("reading"),
                    # Every value found for a numeric question: [start, end] (UTF-16), value, unit, chosen.
                    "cands": [[_utf16(text, c.span_start), _utf16(text, c.span_end), _num(c.value), c.unit,
                               span_ok and c.span_start >= s0 and c.span_end <= s1 and _num(c.value) == _num(a["value"])]
                              for c in cands if 0 <= c.span_start < c.span_end <= len(text)],
                }
            )
        e = eligibility.get(nid, {})
        note_date = n.get("note_date")
        note_data.append(
            {
                "id": nid,
                "title": n.get("title"),
                "date": note_date.isoformat() if hasattr(note_date, "isoformat") else note_date,
                "patient": n.get("patient_id"),
                "sex": note_sex.get(nid),
                "status": e.get("status"),
                "deciding": list(e.get("deciding") or []),
                "crit": per_note_criteria.get(nid, []),
                "ans": ans,
                "text": text,
            }
        )

    # Distributions of converted numeric answers, with thresholds.
    lines = thresholds(plan) if plan is not None else []
    plots = []
    for q in questions:
        if q["kind"] != "numeric":
            continue
        qlines = [t for t in lines if t.question == q["name"]]
        converted = [(nid, v["converted"]) for (nid, qn), v in values.items() if qn == q["name"] and v["converted"] is not None]
        if not converted:
            continue
        if any(t.sex_aware for t in qlines):
            groups: dict[str, list[float]] = {"male": [], "female": [], "unknown sex": []}
            for nid, v in converted:
                groups[note_sex.get(nid) or "unknown sex"].append(float(v))
        else:
            groups = {"any": [float(v) for _, v in converted]}
        plots.append({"question": q["name"], "svg": value_plot(q["name"], q["unit"], groups, qlines), "n": len(converted)})

    # The rules' tables hold the latest evaluation only; say so when that is not this run's rules.
    rules_note = None
    evaluated_fp, run_fp = (evaluation or {}).get("rules_fingerprint"), (run or {}).get("rules_fingerprint")
    if evaluated_fp and run_fp and evaluated_fp != run_fp:
        rules_note = (
            f"eligibility below comes from the rules last evaluated in this store (fingerprint {evaluated_fp}), "
            f"not from this run's rules ({run_fp})"
        )

    patient_rows = store.rules_rows("patient_eligibility")
    patients = timelines(store, patient_rows, plan)
    patient_total = len(patient_rows)
    patient_counts = {"eligible": 0, "ineligible": 0, "unknown": 0}
    for r in patient_rows:
        patient_counts[r["status"]] += 1

    counts = {"eligible": 0, "ineligible": 0, "unknown": 0}
    for e in eligibility.values():
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    # The flow counts patients when the notes name them (the rules screen a patient over all their notes).
    if patient_total:
        flow_data = flow(store.rules_rows("patient_attrition"), patient_counts, "patients")
    else:
        flow_data = flow(attrition, counts, "notes")
    # A question never asked (the built-in sex question when the corpus gives sex) has nothing to show.
    quality_rows = sorted((r for r in quality.values() if r["answers"]), key=lambda r: (-(r["na"] + r["ungrounded"] + r["errors"]), r["question"]))
    return {
        "run": _plain(run) if run else None,
        "parameters": _parameters(run),
        "evaluation": _plain(evaluation) if evaluation else None,
        "trial": (plan.trial_id if plan else None) or (evaluation or {}).get("trial") or (run or {}).get("trial_id"),
        "trial_title": plan.trial_title if plan else None,
        "plan_note": plan_note,
        "rules_note": rules_note,
        "counts": counts,
        "evaluated": bool(eligibility),
        "attrition": [_plain(r) for r in attrition],
        "flow": flow_data,
        "quality": quality_rows,
        "plots": plots,
        "patients": patients,
        "patient_total": patient_total,
        "patient_counts": patient_counts,
        "blob": {"run_id": str(run["run_id"]) if run else None, "questions": questions, "criteria": [criteria[k] for k in sorted(criteria)], "notes": note_data},
    }


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat(sep=" ", timespec="seconds") if isinstance(v, datetime) else v for k, v in row.items()}


def _parameters(run: dict[str, Any] | None) -> dict[str, Any]:
    raw = (run or {}).get("parameters")
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return {"parameters": raw}
    return {k: v for k, v in raw.items() if v is not None} if isinstance(raw, dict) else {"parameters": raw}


def finite(data: Any) -> Any:
    """`data` with every NaN or infinite number replaced by None (null in the page: JSON has no Infinity,
    and one would make the browser refuse the whole page's data)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def _script_json(data: Any) -> Markup:
    """JSON safe inside <script>: no `</script>`, `<!--` or HTML-significant characters survive raw, and
    no number JSON cannot hold (the serialiser refuses NaN and Infinity; `finite` has replaced them)."""
    text = json.dumps(finite(data), ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return Markup(text)


def write_report(db_path: str | Path, out_path: str | Path, run_id: str | None = None) -> Path:
    """Render the store at `db_path` (its latest run, or `run_id`) to one HTML file at `out_path`."""
    db = Path(db_path)
    if not db.is_file():
        raise CritError(f"{db}: no such store (a DuckDB file written by `crit run`)")
    out = _checked_output(out_path, db)
    store = Store.open(db, read_only=True)
    try:
        data = _gather(store, run_id)
    except duckdb.Error as e:  # a view another tool added that reads a file, a damaged table: one line
        raise CritError(f"cannot read the store '{db}' for the report: {str(e).splitlines()[0]}") from None
    finally:
        store.close()
    env = Environment(loader=PackageLoader("crit.engine.report", "templates"), autoescape=True)
    html = env.get_template("report.html.j2").render(
        **{k: v for k, v in data.items() if k != "blob"},
        blob=_script_json(data["blob"]),
        db_name=db.name,
        generated=datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    # Written beside and then moved into place: a failed write never leaves half a report.
    partial = out.with_name(out.name + ".partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(html, encoding="utf-8")
        partial.replace(out)
    except OSError as exc:
        partial.unlink(missing_ok=True)  # it holds note text: never left behind
        raise CritError(f"cannot write the report to '{out_path}': {exc.strerror or exc}") from None
    return out


def _checked_output(out_path: str | Path, db: Path) -> Path:
    """The report's path, refused before any work when it is empty, a folder, or the store itself."""
    if not str(out_path).strip():
        raise CritError("-o needs a file name, e.g. -o report.html")
    out = Path(out_path)
    if out.is_dir():
        raise CritError(f"-o '{out_path}' is a folder; give a file name, e.g. {out / 'report.html'}")
    if out.exists() and out.resolve() == db.resolve():
        raise CritError(f"-o '{out_path}' is the store itself; the report would overwrite it (hint: -o report.html)")
    if out.exists() and out.suffix.lower() not in (".html", ".htm"):
        raise CritError(f"-o '{out_path}' exists and is not an .html file; crit will not overwrite it")
    return out
