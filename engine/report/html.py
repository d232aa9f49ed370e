"""Report: an HTML page that shows a run's evidence, note by note, offline.

`write_report` opens a store read-only, gathers the run and the rules' results as SQL aggregates
(counts, `attrition`, the questions' missing evidence, value histograms; per patient, when the notes
name patients, `patient_eligibility` and a timeline for the first patients from
crit.engine.report.timeline), and reads the notes with their answers and quoted spans one page at a
time (crit.engine.report.pages). It renders `templates/report.html.j2` with Jinja2 (autoescaped).
Notes that fit one page make one self-contained file. More, and the file holds the figures and the
first page, and a folder beside it (report.html -> report_files/) one script per further page and
every note's summary row (index.js), which the page loads with <script> tags (a page opened from
file:// may run scripts beside it but not fetch JSON). CSS and JS are inline; nothing comes from the
network. Note text reaches the page only as JSON and is put on screen with `textContent`, never as markup.

Plots are drawn here, server-side, with matplotlib as inline SVG: a static
picture needs no JavaScript library in the page (plotly.js would add over
3 MB to every report, vega-lite and vega-embed need their scripts inlined
too), matplotlib is well kept and widely trusted, and SVG scales and prints.
One plot per numeric question: the distribution of converted values (binned in SQL over every
note), with each rule's threshold drawn as a line, split by sex where the threshold is sex-aware.

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
from crit.engine.report.evidence import criterion_sources, flow
from crit.engine.report.pages import PAGE_SIZE, NotePages
from crit.engine.report.timeline import MAX_PATIENTS, timelines
from crit.engine.store import Store
from crit.grammar import ast, units
from crit.grammar.errors import CritError
from crit.grammar.plan import Plan

__all__ = ["Threshold", "binned_plot", "pages_folder", "thresholds", "value_plot", "write_report"]


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
    import numpy as np

    # Not finite (a conversion to inf): no bin holds it; the plot counts what it left out.
    left_out = sum(not math.isfinite(v) for vs in values.values() for v in vs)
    values = {k: [v for v in vs if math.isfinite(v)] for k, vs in values.items()}
    everything = [v for vs in values.values() for v in vs]
    edges = np.histogram_bin_edges(everything or [0.0], bins=min(30, max(5, len(set(everything)))))
    counts = {k: np.histogram(vs, bins=edges)[0].tolist() for k, vs in values.items()}
    return binned_plot(question, unit, edges.tolist(), counts, lines, left_out)


def binned_plot(question: str, unit: str | None, edges: list[float], counts: dict[str, list[int]],
                lines: list[Threshold], left_out: int = 0) -> Markup:
    """An inline SVG: a histogram already binned (`counts` per sex group over `edges`, as the store's SQL
    counts them), with a vertical line per threshold; `left_out` values were not finite."""
    import matplotlib

    matplotlib.use("Agg")  # no display; also keeps matplotlib from probing GUI toolkits
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "crit", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(5.2, 2.4))
        try:
            groups = [(k, c) for k, c in counts.items() if sum(c)]
            centers = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
            if groups:  # each bin's centre weighted by its count draws the bars numpy would have counted
                ax.hist(
                    [centers] * len(groups),
                    bins=edges,
                    weights=[c for _, c in groups],
                    label=[f"{k} (n={sum(c)})" for k, c in groups],
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


def _histogram_plot(question: dict[str, Any], pages: NotePages, lines: list[Threshold]) -> dict[str, Any] | None:
    """A numeric question's plot from the store's bin counts (SQL), or None when it has no converted value."""
    found = pages.histogram(question["name"], by_sex=any(t.sex_aware for t in lines))
    if found is None:
        return None
    edges, counts, left_out = found
    svg = binned_plot(question["name"], question["unit"], edges, counts, lines, left_out)
    return {"question": question["name"], "svg": svg, "n": sum(map(sum, counts.values())) + left_out}


def _gather(store: Store, run_id: str | None, page_size: int) -> tuple[dict[str, Any], NotePages]:
    """The report's figures over every note (SQL aggregates) and its notes, to be read page by page."""
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
    kinds = {q["name"]: q["kind"] for q in questions}
    pages = NotePages(store, list(run_keys.values()), plan, kinds, page_size)

    criteria = pages.criteria()
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

    # Distributions of converted numeric answers, with thresholds: binned in SQL, drawn here.
    lines = thresholds(plan) if plan is not None else []
    plots = []
    for q in questions:
        if q["kind"] == "numeric":
            plot = _histogram_plot(q, pages, [t for t in lines if t.question == q["name"]])
            if plot is not None:
                plots.append(plot)

    # The rules' tables hold the latest evaluation only; say so when that is not this run's rules.
    rules_note = None
    evaluated_fp, run_fp = (evaluation or {}).get("rules_fingerprint"), (run or {}).get("rules_fingerprint")
    if evaluated_fp and run_fp and evaluated_fp != run_fp:
        rules_note = (
            f"eligibility below comes from the rules last evaluated in this store (fingerprint {evaluated_fp}), "
            f"not from this run's rules ({run_fp})"
        )

    patient_counts = {"eligible": 0, "ineligible": 0, "unknown": 0}
    patients: list[Any] = []
    if "patient_eligibility" in tables:
        for status, n in store.con.execute("SELECT status, count(*) FROM patient_eligibility GROUP BY status").fetchall():
            patient_counts[status] = int(n)
        shown = store.con.execute("SELECT patient_id, status, deciding FROM patient_eligibility ORDER BY patient_id "
                                  "LIMIT ?", [MAX_PATIENTS]).fetchall()
        patients = timelines(store, [{"patient_id": p, "status": s, "deciding": d} for p, s, d in shown], plan)
    patient_total = sum(patient_counts.values())

    counts = pages.counts()
    attrition = store.rules_rows("attrition")
    # The flow counts patients when the notes name them (the rules screen a patient over all their notes).
    if patient_total:
        flow_data = flow(store.rules_rows("patient_attrition"), patient_counts, "patients")
    else:
        flow_data = flow(attrition, counts, "notes")
    data = {
        "run": _plain(run) if run else None,
        "parameters": _parameters(run),
        "evaluation": _plain(evaluation) if evaluation else None,
        "trial": (plan.trial_id if plan else None) or (evaluation or {}).get("trial") or (run or {}).get("trial_id"),
        "trial_title": plan.trial_title if plan else None,
        "plan_note": plan_note,
        "rules_note": rules_note,
        "counts": counts,
        "evaluated": "eligibility" in tables and sum(counts.values()) > 0,
        "attrition": [_plain(r) for r in attrition],
        "flow": flow_data,
        # A question never asked (the built-in sex question when the corpus gives sex) has nothing to show.
        "quality": pages.quality(),
        "plots": plots,
        "patients": patients,
        "patient_total": patient_total,
        "patient_counts": patient_counts,
        "blob": {"run_id": str(run["run_id"]) if run else None, "questions": questions,
                 "criteria": [criteria[k] for k in sorted(criteria)]},
    }
    return data, pages


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
    try:  # most data is finite: walking it all for the rare NaN costs more than the serialising
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError:
        text = json.dumps(finite(data), ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return Markup(text)


MARKER = "crit-report.json"  # in a report's folder: says crit wrote it, so crit may replace it


def pages_folder(out: Path) -> Path:
    """The folder of a report's further pages: report.html -> report_files, beside it."""
    return out.with_name(out.stem + "_files")


def _ours(folder: Path, complete: bool = True) -> bool:
    """Whether `folder` is a report folder crit wrote: nothing but crit's files, and its marker (written
    last, so a folder a killed report left half-written has none: `complete=False` accepts that)."""
    try:
        names = [p.name for p in folder.iterdir()]
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8")) if complete else {}
    except (OSError, ValueError):
        return False
    return ((not complete or isinstance(marker, dict) and marker.get("format") == "crit-report-pages")
            and all(n in (MARKER, "index.js") or re.fullmatch(r"page-\d{4,}\.js", n) for n in names))


def _remove(folder: Path) -> None:
    """Delete a report folder crit wrote (checked by `_ours` first): its files, then the folder."""
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()


def _write_pages(pages: NotePages, folder: Path, report_name: str) -> list[dict[str, Any]]:
    """Pages 2.. (a script each that calls the report's registered callback: a page opened from file:// may
    load scripts but not fetch JSON) and every note's summary row (index.js), one page in memory at a time;
    returns the first page, which the HTML holds."""
    folder.mkdir()
    first: list[dict[str, Any]] = []
    with (folder / "index.js").open("w", encoding="utf-8") as index:
        index.write("critReportIndex([")
        for k in range(pages.pages):
            notes = pages.page(k)
            rows = [pages.index_row(n) for n in notes]
            if rows:
                index.write(("," if k else "") + str(_script_json(rows))[1:-1])
            if k == 0:
                first = notes
            else:
                (folder / f"page-{k + 1:04d}.js").write_text(f"critReportPage({k + 1},{_script_json(notes)});\n",
                                                           encoding="utf-8")
        index.write("]);\n")
    # Last: a folder with its marker is complete.
    (folder / MARKER).write_text(json.dumps({"format": "crit-report-pages", "report": report_name,
                                             "notes": pages.total, "pages": pages.pages}) + "\n", encoding="utf-8")
    return first


def write_report(db_path: str | Path, out_path: str | Path, run_id: str | None = None,
                 page_size: int = PAGE_SIZE) -> Path:
    """Render the store at `db_path` (its latest run, or `run_id`) to an HTML file at `out_path`.

    Notes that fit one page (`page_size`) make one self-contained file. More, and the file holds the figures
    and the first page, and the folder `pages_folder(out)` beside it the other pages and every note's summary
    row; that folder is replaced when crit wrote it, and refused when anything else is there."""
    db = Path(db_path)
    if not db.is_file():
        raise CritError(f"{db}: no such store (a DuckDB file written by `crit run`)")
    out = _checked_output(out_path, db)
    folder = pages_folder(out)
    # Written beside and then moved into place: a failed write never leaves half a report.
    partial = out.with_name(out.name + ".partial")
    partial_folder = folder.with_name(folder.name + ".partial")
    if partial_folder.exists() and not _ours(partial_folder, complete=False):
        raise CritError(f"'{partial_folder}' exists and is not crit's; the report writes its pages there first "
                        "(move it, or choose another -o)")
    store = Store.open(db, read_only=True)
    try:
        data, pages = _gather(store, run_id, page_size)
        paged = pages.pages > 1
        stale = folder.exists() and _ours(folder)  # only crit's own folder is replaced or removed
        if paged and folder.exists() and not stale:
            raise CritError(f"'{folder}' exists and is not a crit report folder; the report's pages go there "
                            "(move it, or choose another -o)")
        out.parent.mkdir(parents=True, exist_ok=True)
        _discard(partial, partial_folder)  # what a killed report left
        first = _write_pages(pages, partial_folder, out.name) if paged else pages.page(0)
        env = Environment(loader=PackageLoader("crit.engine.report", "templates"), autoescape=True)
        html = env.get_template("report.html.j2").render(
            **{k: v for k, v in data.items() if k != "blob"},
            blob=_script_json({**data["blob"], "notes": first, "total": pages.total,
                               "page_size": page_size, "folder": folder.name if paged else None}),
            folder=folder.name if paged else None,
            total=pages.total,
            page_count=pages.pages,
            db_name=db.name,
            generated=datetime.now().astimezone().isoformat(timespec="seconds"),
        )
        partial.write_text(html, encoding="utf-8")
        if stale:  # an earlier report's pages: note text that the new report does not show, not kept beside it
            _remove(folder)
        if paged:
            partial_folder.replace(folder)
        partial.replace(out)
    except duckdb.Error as e:  # a view another tool added that reads a file, a damaged table: one line
        _discard(partial, partial_folder)
        raise CritError(f"cannot read the store '{db}' for the report: {str(e).splitlines()[0]}") from None
    except OSError as exc:
        _discard(partial, partial_folder)
        raise CritError(f"cannot write the report to '{out_path}': {exc.strerror or exc}") from None
    except BaseException:
        _discard(partial, partial_folder)
        raise
    finally:
        store.close()
    return out


def _discard(partial: Path, partial_folder: Path) -> None:
    """Remove what a failed report wrote: it holds note text, never left behind."""
    partial.unlink(missing_ok=True)
    if partial_folder.is_dir():
        for p in partial_folder.iterdir():
            p.unlink(missing_ok=True)
        partial_folder.rmdir()


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
