"""The HTML evidence report: escaped, self-contained, and working in a real headless browser.

The fast tests build a store with the real store and rules modules from hand-written answers
(one note holds HTML and a <script>); the slow test runs `crit run` with the embedded model
over MTSamples notes and drives the report in Debian's headless Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from crit.engine.answers import Answer, locate_source
from crit.engine.backends.base import answer_key
from crit.engine.notes import Note
from crit.engine.plan import load_plan
from crit.engine.report import thresholds, write_report
from crit.engine.rules import evaluate
from crit.engine.store import RunInfo, Store
from crit.grammar.errors import CritError

CRIT = """\
trial TEST-1 "report test <trial>"
boolean af "atrial fibrillation"
numeric hgb lowest "hemoglobin" in g/dL aka "Hb"
numeric creat highest "creatinine" in mg/dL
range creat male 0.7..1.3 female 0.6..1.1
include "AF": af
exclude "anemia": hgb < 9 g/dL
exclude "renal": creat > 2 * uln(creat)
"""

EVIL = "Patient note <script>alert(1)</script> and </script><b>bold</b> & Hb 8.1 g/dL with atrial fibrillation."

NOTES = [
    Note(note_id="n1", text="72 year old woman with atrial fibrillation. Hb 8.5 g/dL. Creatinine 1.0 mg/dL.", sex="F", row=1),
    Note(note_id="n2<b>", text=EVIL, sex="M", row=2),
    Note(note_id="n3", text="Routine visit, no complaints. Creatinine 3.1 mg/dL.", sex="M", row=3),
]

# (note index, question) -> (value, unit, na, quoted source)
ANSWERS = {
    (0, "af"): (1.0, None, False, "atrial fibrillation"),
    (0, "hgb"): (8.5, "g/dL", False, "Hb 8.5 g/dL"),
    (0, "creat"): (1.0, "mg/dL", False, "Creatinine 1.0 mg/dL"),
    (1, "af"): (1.0, None, False, "atrial fibrillation"),
    (1, "hgb"): (8.1, "g/dL", False, "Hb 8.1 g/dL"),
    (1, "creat"): (None, None, True, ""),
    (2, "af"): (None, None, True, ""),
    (2, "hgb"): (None, None, True, ""),
    (2, "creat"): (3.1, "mg/dL", False, "creatinine was 3.1"),  # not verbatim: ungrounded
}


def _store(tmp_path: Path) -> Path:
    crit = tmp_path / "test.crit"
    crit.write_text(CRIT)
    plan = load_plan(crit)
    db = tmp_path / "results.duckdb"
    identity = "hand-written"
    keys = {q.name: answer_key(q.fingerprint, identity) for q in plan.questions}
    with Store.open(db) as store:
        info = RunInfo(
            crit_file=str(crit), crit_hash=plan.source_hash, rules_fingerprint=plan.rules_fingerprint,
            trial_id=plan.trial_id, notes_source="hand", model="none", adapter=None, backend="hand",
            backend_identity=identity, parameters={"temperature": 0}, notes_total=len(NOTES),
        )
        run_id = store.begin_run(info, plan.questions, keys)
        answers = []
        for (i, q), (value, unit, na, source) in ANSWERS.items():
            start, end, match = locate_source(source or None, NOTES[i].text)
            answers.append(Answer(
                note_id=NOTES[i].note_id, question=q, fingerprint=keys[q], raw="{}", latency_s=0.0,
                prompt_tokens=0, output_tokens=0, value=value, unit=unit, na=na, source=source or None,
                span_start=start, span_end=end, match=match, grounded=match == "exact",
            ))
        store.write_batch(run_id, NOTES, answers, keys)
        store.finish_run(run_id, "done")
        evaluate(store.con, plan, keys)
    return db


def _blob(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="crit-data">(.*?)</script>', html, re.S)
    assert m, "the data blob is missing"
    return json.loads(m.group(1))


def test_report_escapes_html_and_is_self_contained(tmp_path: Path) -> None:
    out = write_report(_store(tmp_path), tmp_path / "report.html")
    html = out.read_text()

    # The note's markup never appears as markup: not in the page, not raw inside the JSON.
    assert "<script>alert" not in html
    assert "</script><b>" not in html and "<b>bold" not in html
    assert "n2<b>" not in html
    assert html.count("</script>") == 2  # the data blob's and the code's own closing tags, nothing more
    # ...yet the JSON carries the exact text, for textContent to show.
    blob = _blob(html)
    texts = {n["id"]: n["text"] for n in blob["notes"]}
    assert texts["n2<b>"] == EVIL
    assert "report test &lt;trial&gt;" in html  # the trial title went through Jinja's autoescape

    # Self-contained: nothing is fetched (SVG xmlns are names, not loads).
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", html, re.I)
    assert "<link" not in html

    # Content: counts, attrition in file order, plots with thresholds.
    by_id = {n["id"]: n for n in blob["notes"]}
    assert by_id["n1"]["status"] == "ineligible" and by_id["n1"]["deciding"] == ["anemia"]
    assert by_id["n3"]["status"] == "ineligible"  # renal: 3.1 > 2 * 1.3
    assert [c["label"] for c in blob["criteria"]] == ["AF", "anemia", "renal"]
    assert html.index(">AF<") < html.index(">anemia<") < html.index(">renal<")
    assert html.count("<svg") == 2  # hgb and creat
    n1_hgb = next(a for a in by_id["n1"]["ans"] if a["q"] == "hgb")
    assert n1_hgb["g"] and by_id["n1"]["text"][n1_hgb["s"][0]:n1_hgb["s"][1]] == "Hb 8.5 g/dL"
    n3_creat = next(a for a in by_id["n3"]["ans"] if a["q"] == "creat")
    assert not n3_creat["g"] and n3_creat["s"] is None  # ungrounded: shown as such, never highlighted
    assert n3_creat["c"] == 3.1


def test_thresholds_read_the_rules_per_sex(tmp_path: Path) -> None:
    crit = tmp_path / "t.crit"
    crit.write_text(CRIT)
    found = {(t.question, t.label): t for t in thresholds(load_plan(crit))}
    assert set(found) == {("hgb", "anemia"), ("creat", "renal")}
    anemia, renal = found["hgb", "anemia"], found["creat", "renal"]
    assert (anemia.op, anemia.male, anemia.female, anemia.sex_aware) == ("<", 9, 9, False)
    assert renal.op == ">" and renal.sex_aware
    assert renal.male == pytest.approx(2.6) and renal.female == pytest.approx(2.2)


def test_report_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(CritError, match="no such store"):
        write_report(tmp_path / "absent.duckdb", tmp_path / "r.html")
    db = _store(tmp_path)
    with pytest.raises(CritError, match="no run 'nope'"):
        write_report(db, tmp_path / "r.html", run_id="nope")


def test_report_without_the_crit_file_still_renders(tmp_path: Path) -> None:
    db = _store(tmp_path)
    (tmp_path / "test.crit").unlink()
    html = write_report(db, tmp_path / "r.html").read_text()
    assert "is not here" in html
    assert {q["name"] for q in _blob(html)["questions"]} == {"af", "hgb", "creat", "sex"}  # the run recorded its questions
    assert html.count("<svg") == 2  # distributions still drawn, without thresholds
