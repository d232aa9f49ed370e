"""The HTML evidence report: escaped, self-contained, and working in a real headless browser.

The fast tests build a store with the real store and rules modules from hand-written answers
(one note holds HTML and a <script>); the slow test runs `crit run` with the embedded model
over MTSamples notes and drives the report in Debian's headless Chromium.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from crit.engine.answering.backend import answer_key
from crit.engine.answers import Answer, locate_source
from crit.engine.eligibility import load_plan
from crit.engine.eligibility.evaluate import evaluate
from crit.engine.notes.reader import Note
from crit.engine.report.html import thresholds, write_report
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
    (2, "af"): (None, None, True, "no"),  # an NA answer quoting a word of the note: no evidence, no highlight
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
    # A number is marked by its own span inside the quote; the quote's span is what a label cites.
    assert n1_hgb["g"] and by_id["n1"]["text"][n1_hgb["s"][0]:n1_hgb["s"][1]] == "8.5 g/dL"
    assert by_id["n1"]["text"][n1_hgb["p"][0]:n1_hgb["p"][1]] == "Hb 8.5 g/dL"
    n3_creat = next(a for a in by_id["n3"]["ans"] if a["q"] == "creat")
    assert not n3_creat["g"] and n3_creat["s"] is None  # ungrounded: shown as such, never highlighted
    assert n3_creat["c"] == 3.1
    n3_af = next(a for a in by_id["n3"]["ans"] if a["q"] == "af")
    assert n3_af["na"] and not n3_af["g"] and n3_af["src"] == "no"


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


# ---- in a real browser ------------------------------------------------------------------------


def _rows(drv) -> list[str]:
    from selenium.webdriver.common.by import By

    return [tr.get_attribute("data-note-id") for tr in drv.find_elements(By.CSS_SELECTOR, "#note-rows tr.note-row")]


def _click(drv, note_id: str):
    """Click a note's row (it opens or closes the note's details); return the row."""
    from selenium.webdriver.common.by import By

    for tr in drv.find_elements(By.CSS_SELECTOR, "#note-rows tr.note-row"):
        if tr.get_attribute("data-note-id") == note_id:
            tr.click()
            return tr
    raise AssertionError(f"note {note_id} is not on the page")


def _open(drv, note_id: str):
    """Open a closed note and return its detail row (built on click)."""
    from selenium.webdriver.common.by import By

    detail = _click(drv, note_id).find_element(By.XPATH, "following-sibling::tr[1]")
    assert "detail-row" in detail.get_attribute("class")
    return detail


def _no_js_errors(drv) -> None:
    severe = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def _check_page(drv, blob: dict, criterion: str, search: str) -> None:
    """What a coordinator does with the page, checked against the data the page was built from.

    Highlights: every grounded answer with a value is a <mark> over exactly its span, named by its
    question, and nothing else is marked (NA and ungrounded answers never are). Filters: status, a criterion's status and the note-id search each show
    exactly the notes they should, and fewer than all.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    notes = {n["id"]: n for n in blob["notes"]}
    assert sorted(_rows(drv)) == sorted(notes)
    for n in notes.values():
        detail = _open(drv, n["id"])
        marks = [(m.get_attribute("data-q"), m.text) for m in detail.find_elements(By.CSS_SELECTOR, "pre.note-text mark")]
        expected = {a["q"]: n["text"][a["s"][0]:a["s"][1]] for a in n["ans"] if a["g"]}
        for q, span in expected.items():
            shown = "".join(t for names, t in marks if q in names.split())
            assert shown and " ".join(span.split()).startswith(" ".join(shown.split())[:20]), (n["id"], q, span, marks)
        assert {q for names, _ in marks for q in names.split()} == set(expected)  # ungrounded: never marked
        _click(drv, n["id"])  # close it again

    status = next(s for s in ("eligible", "ineligible", "unknown") if [n["status"] for n in notes.values()].count(s) != len(notes))
    Select(drv.find_element(By.ID, "status-filter")).select_by_visible_text(status)
    assert sorted(_rows(drv)) == sorted(k for k, n in notes.items() if n["status"] == status)
    Select(drv.find_element(By.ID, "status-filter")).select_by_value("")

    pos = next(c["position"] for c in blob["criteria"] if c["label"] == criterion)
    Select(drv.find_element(By.ID, "criterion-filter")).select_by_value(str(pos))
    Select(drv.find_element(By.ID, "criterion-status")).select_by_visible_text("met")
    met = sorted(k for k, n in notes.items() if [pos, "met"] in [c[:2] for c in n["crit"]])
    assert sorted(_rows(drv)) == met
    Select(drv.find_element(By.ID, "criterion-filter")).select_by_value("")
    Select(drv.find_element(By.ID, "criterion-status")).select_by_value("")
    assert len(_rows(drv)) == len(notes)

    drv.find_element(By.ID, "search").send_keys(search)
    found = sorted(k for k in notes if search.lower() in k.lower())
    assert sorted(_rows(drv)) == found and len(found) < len(notes)
    assert drv.find_element(By.ID, "match-count").text == f"{len(found)} of {len(notes)} notes"
    drv.find_element(By.ID, "search").send_keys(Keys.BACKSPACE * len(search))  # as a person would
    assert len(_rows(drv)) == len(notes)
    _no_js_errors(drv)


def test_report_in_browser(tmp_path: Path, browser) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    out = write_report(_store(tmp_path), tmp_path / "report.html")
    browser.get(out.as_uri())
    blob = _blob(out.read_text())
    assert sum(a["g"] for n in blob["notes"] for a in n["ans"]) == 5  # ANSWERS: 3 NA, 1 ungrounded
    _check_page(browser, blob, criterion="anemia", search="n2")

    detail = _open(browser, "n2<b>")
    pre = detail.find_element(By.CSS_SELECTOR, "pre.note-text")
    assert "<script>alert(1)</script>" in pre.text and "<b>bold</b>" in pre.text  # shown as text
    assert not detail.find_elements(By.CSS_SELECTOR, "pre.note-text script, pre.note-text b")
    with pytest.raises(NoAlertPresentException):  # the note's <script> never ran
        browser.switch_to.alert
    assert len(browser.find_elements(By.CSS_SELECTOR, "#distributions svg")) == 2
    _open(browser, "n1")
    browser.execute_script("document.querySelector('tr.open').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "report-screenshot.png"))
    _no_js_errors(browser)


SLOW_CRIT = """\
trial SMOKE-1 "report smoke test"
numeric age value "age" in years
boolean pregnant "current pregnancy"
include "adult": age >= 18 years
exclude "over 60": age > 60 years
exclude "pregnant": pregnant
"""

SLOW_NOTES = ("mts-2408", "mts-1080")  # short MTSamples notes that state an age (a man of 69, a woman of 55)


@pytest.mark.slow
def test_report_of_a_real_run_in_browser(tmp_path: Path, browser) -> None:
    from click.testing import CliRunner

    from crit.cli import cli

    corpus = Path(__file__).resolve().parents[2] / "shared" / "data" / "mtsamples.jsonl"
    if not corpus.is_file():
        pytest.skip(f"MTSamples corpus not found at {corpus}")
    notes = tmp_path / "notes"  # a folder of .txt files, one note each, named by note id
    notes.mkdir()
    for line in corpus.open():
        r = json.loads(line)
        if r["note_id"] in SLOW_NOTES:
            (notes / f"{r['note_id']}.txt").write_text(r["text"])
    crit = tmp_path / "smoke.crit"
    crit.write_text(SLOW_CRIT)
    db = tmp_path / "results.duckdb"
    done = CliRunner().invoke(cli, ["run", str(crit), str(notes), "--db", str(db)])
    assert done.exit_code == 0, done.output
    out = tmp_path / "report.html"
    done = CliRunner().invoke(cli, ["report", str(db), "-o", str(out)])
    assert done.exit_code == 0 and f"wrote {out}" in done.output, done.output
    blob = _blob(out.read_text())
    assert sorted(n["id"] for n in blob["notes"]) == sorted(SLOW_NOTES)
    assert all(len(n["ans"]) == 2 for n in blob["notes"])  # the model's answers, as stored, one per question
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        (with_evidence,) = con.execute("SELECT count(*) FROM answers WHERE grounded AND NOT na AND error IS NULL").fetchone()
    assert sum(a["g"] for n in blob["notes"] for a in n["ans"]) == with_evidence
    browser.get(out.as_uri())
    _check_page(browser, blob, criterion="over 60", search="2408")
    # A picture to look at: the first note opened, its quotes highlighted.
    _open(browser, blob["notes"][0]["id"])
    browser.execute_script("document.querySelector('tr.open').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "report-screenshot.png"))


def test_report_says_when_eligibility_is_from_other_rules(tmp_path: Path) -> None:
    db = _store(tmp_path)
    edited = tmp_path / "edited.crit"
    edited.write_text(CRIT.replace("hgb < 9 g/dL", "hgb < 8 g/dL"))  # a threshold edit, evaluated without a run
    with Store.open(db) as store:
        evaluate(store.con, load_plan(edited))
    html = write_report(db, tmp_path / "r.html").read_text()
    assert "not from this run&#39;s rules" in html
    assert {n["id"]: n["status"] for n in _blob(html)["notes"]}["n1"] == "eligible"  # 8.5 is no longer anemia


def test_report_from_another_folder_without_the_crit_file_draws_thresholds(tmp_path, monkeypatch):
    """The store keeps the .crit text a run compiled: the report needs no file on disk."""
    import json as _json

    from crit.engine.answering.backends.rules import RulesFactory
    from crit.engine.eligibility import load_plan
    from crit.engine.report.html import write_report
    from crit.engine.run import run

    crit = tmp_path / "trial.crit"
    crit.write_text('trial T-1\nnumeric creat highest "creatinine" in mg/dL\nexclude "renal": creat > 2.5 mg/dL\n')
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(_json.dumps({"note_id": f"n{i}", "text": f"Creatinine {v} mg/dL."}) + "\n"
                             for i, v in enumerate([1.1, 3.2])))
    db = tmp_path / "r.duckdb"
    run(load_plan(crit), notes, db, RulesFactory())
    crit.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    html = write_report(db, "report.html").read_text()
    assert "is not here" not in html
    assert "renal (&gt; 2.5)" in html or "renal (> 2.5)" in html
