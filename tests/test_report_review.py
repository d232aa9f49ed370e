"""A report a person can review: in headless Chromium over a rules run of gold notes.

The page marks a number by its own span and lists every value found for it, shows each criterion's
expression beside the values it compared, draws the flow with the store's counts, keeps a reviewer's
marks across a reload, and exports them as labels that `crit eval` scores.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import duckdb
from click.testing import CliRunner

from crit.cli import cli
from crit.engine.report.evidence import natural_key
from crit.engine.report.html import write_report
from tests.test_report import _blob, _click, _no_js_errors, _open, _rows

ROOT = Path(__file__).resolve().parent.parent
CRIT = """\
trial REVIEW-1 "review test"
boolean af "atrial fibrillation or atrial flutter" aka "AF", "afib"
boolean htn "hypertension" aka "HTN"
numeric hgb lowest "hemoglobin" in g/dL assumed aka "Hb", "Hgb", "H&H", "H and H"
numeric creat highest "creatinine" in mg/dL assumed aka "Cr"
numeric age value "age" in years assumed
include "adult": age >= 18 years
include "AF": af
exclude "anemia": hgb < 9 g/dL
exclude "renal": creat > 2.5 mg/dL
"""
GOLD_NOTES = ("mts-1594", "mts-1186", "mts-2631", "mts-2628", "mts-1501")
# A note of our own: its id sorts before mts-1186 only in natural order, and the rules read its
# hemoglobin as 10.2 (the "8.4 g/dL today" is not chained to the term), so a reviewer corrects it.
OWN = {"note_id": "mts-99", "note_date": "2024-06-01",
       # The emoji (two UTF-16 units, one Python character) checks that exported spans are Python offsets.
       "text": "A 64-year-old man \U0001F642 with atrial fibrillation. Hemoglobin 10.2 g/dL on admission, 8.4 g/dL today. "
               "Creatinine 1.1."}


def _run(tmp_path: Path) -> tuple[Path, Path]:
    """A rules run (no model) of CRIT over five gold notes and OWN; the store and the .crit file."""
    notes = tmp_path / "notes.jsonl"
    with notes.open("w") as out:
        for line in (ROOT / "tests" / "gold" / "notes.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r["note_id"] in GOLD_NOTES:
                day = 10 + GOLD_NOTES.index(r["note_id"])
                out.write(json.dumps({"note_id": r["note_id"], "text": r["text"], "note_date": f"2024-05-{day}"}) + "\n")
        out.write(json.dumps(OWN) + "\n")
    crit = tmp_path / "review.crit"
    crit.write_text(CRIT)
    db = tmp_path / "results.duckdb"
    done = CliRunner().invoke(cli, ["run", str(crit), str(notes), "--db", str(db), "--backend", "rules"])
    assert done.exit_code == 0, done.output
    return db, crit


def _rows_of(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def _answer_row(detail: Any, question: str) -> Any:
    from selenium.webdriver.common.by import By

    return detail.find_element(By.CSS_SELECTOR, f'table.answers tr[data-q="{question}"]')


def _select(drv: Any, note_id: str, quote: str) -> None:
    """Select `quote` in a note's text, as a reviewer drags over it."""
    drv.execute_script("""
        const [noteId, quote] = arguments;
        const pre = [...document.querySelectorAll("pre.note-text")].find(p => p.dataset.noteId === noteId);
        const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          const at = node.data.indexOf(quote);
          if (at >= 0) {
            const r = document.createRange(); r.setStart(node, at); r.setEnd(node, at + quote.length);
            const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(r); return;
          }
        }
        throw new Error("quote not in one text node: " + quote);""", note_id, quote)
    time.sleep(0.2)  # selectionchange is dispatched asynchronously


def test_natural_key_orders_numbers_by_value() -> None:
    assert sorted(["mts-10", "mts-2", "MTS-1", "mts-2b", "n"], key=natural_key) == ["MTS-1", "mts-2", "mts-2b", "mts-10", "n"]


def test_review_in_browser_exports_labels_crit_eval_scores(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    db, crit = _run(tmp_path)
    out = write_report(db, tmp_path / "report.html")
    blob = _blob(out.read_text())
    browser.get(out.as_uri())

    # Natural order of note ids, and each note's date.
    ids = [n["id"] for n in blob["notes"]]
    assert ids[0] == "mts-99" and ids == sorted(ids, key=natural_key) and _rows(browser) == ids
    assert next(n for n in blob["notes"] if n["id"] == "mts-99")["date"] == "2024-06-01"

    # The flow diagram's counts are the store's.
    (total,), = _rows_of(db, "SELECT count(*) FROM eligibility")
    status = dict(_rows_of(db, "SELECT status, count(*) FROM eligibility GROUP BY status"))
    attrition = _rows_of(db, "SELECT position, removed, remaining_after FROM attrition ORDER BY position")
    count = lambda css: int(browser.find_element(By.CSS_SELECTOR, css).get_attribute("data-count"))  # noqa: E731
    assert count("#flow-screened") == total == 6
    assert count("#flow-eligible") == status.get("eligible", 0) and count("#flow-unknown") == status.get("unknown", 0)
    assert count("#flow-remaining") == attrition[-1][2]
    shown = {int(e.get_attribute("data-position")): int(e.get_attribute("data-count"))
             for e in browser.find_elements(By.CSS_SELECTOR, "#flow .flow-excluded")}
    assert shown == {p: r for p, r, _ in attrition if r} and sum(shown.values()) == status.get("ineligible", 0) > 0

    # The value highlight is the number's own span, and every value found is listed, the chosen one marked.
    (s0, s1, candidates), = _rows_of(db, "SELECT span_start, span_end, candidates FROM answers "
                                         "WHERE note_id = 'mts-1186' AND question = 'hgb'")
    text = next(n["text"] for n in blob["notes"] if n["id"] == "mts-1186")
    detail = _open(browser, "mts-1186")
    hgb_marks = [m.text for m in detail.find_elements(By.CSS_SELECTOR, "pre.note-text mark")
                 if "hgb" in m.get_attribute("data-q").split()]
    assert hgb_marks == [text[s0:s1]] == ["8.2"]  # the value, not its sentence
    chips = [c.text for c in _answer_row(detail, "hgb").find_elements(By.CSS_SELECTOR, ".chip")]
    assert len(chips) == len(json.loads(candidates)) == 2 and "8.2 ✓" in chips
    assert len(detail.find_elements(By.CSS_SELECTOR, 'pre.note-text .cand[data-cand="hgb"]')) >= 1  # the other value

    # Each criterion's expression beside the values it compared, and its result.
    anemia = detail.find_element(By.CSS_SELECTOR, 'table.criteria tr[data-position="3"]')
    assert anemia.find_element(By.CSS_SELECTOR, "td.expr code").text == "hgb < 9 g/dL"
    assert anemia.find_element(By.CSS_SELECTOR, 'td.uses div[data-q="hgb"]').text == "hgb = 8.2 → 8.2"
    assert "met" in anemia.text

    # Review: af in mts-1186 is right; hgb in mts-99 is corrected to 8.4 g/dL, quoting the note.
    _answer_row(detail, "af").find_element(By.CSS_SELECTOR, "button.mark-right").click()
    _click(browser, "mts-1186")
    detail = _open(browser, "mts-99")
    hgb = _answer_row(detail, "hgb")
    hgb.find_element(By.CSS_SELECTOR, "button.mark-correct").click()
    value = hgb.find_element(By.CSS_SELECTOR, "input.correct-answer")
    value.clear()
    value.send_keys("8.4")
    _select(browser, "mts-99", "8.4 g/dL")
    hgb.find_element(By.CSS_SELECTOR, "button.use-selection").click()
    hgb.find_element(By.CSS_SELECTOR, "button.save-correction").click()
    assert "corrected: 8.4 g/dL" in hgb.find_element(By.CSS_SELECTOR, ".mark-state").text

    # The marks survive a reload (localStorage, keyed by the run).
    browser.refresh()
    assert "2 marked: 1 right, 0 wrong, 1 corrected" in browser.find_element(By.ID, "review-summary").text
    detail = _open(browser, "mts-99")
    assert "rv-corrected" in _answer_row(detail, "hgb").get_attribute("class")
    _click(browser, "mts-99")
    detail = _open(browser, "mts-1186")
    assert _answer_row(detail, "af").find_element(By.CSS_SELECTOR, ".mark-state").text == "marked right"
    key = "crit-review:" + blob["run_id"]
    assert len(json.loads(browser.execute_script("return localStorage.getItem(arguments[0])", key))) == 2

    # Export: a real download of a JSONL file in tests/gold's format.
    browser.find_element(By.ID, "export-labels").click()
    downloads = tmp_path / "downloads"
    for _ in range(50):
        files = [f for f in downloads.glob("*.jsonl")] if downloads.is_dir() else []
        if files:
            break
        time.sleep(0.1)
    assert len(files) == 1, list(downloads.iterdir()) if downloads.is_dir() else "no download folder"
    labels = [json.loads(line) for line in files[0].read_text().splitlines()]
    af_start, af_end, af_source = _rows_of(db, "SELECT span_start, span_end, source FROM answers "
                                               "WHERE note_id = 'mts-1186' AND question = 'af'")[0]
    own = OWN["text"]
    assert sorted(labels, key=lambda x: x["note_id"]) == [
        {"note_id": "mts-1186", "question": "af", "kind": "boolean", "answer": "present", "unit": None,
         "source": af_source, "span_start": af_start, "span_end": af_end},
        {"note_id": "mts-99", "question": "hgb", "kind": "numeric", "answer": 8.4, "unit": "g/dL",
         "source": "8.4 g/dL", "span_start": own.index("8.4 g/dL"), "span_end": own.index("8.4 g/dL") + 8},
    ]
    assert all(text_of(blob, x["note_id"])[x["span_start"]:x["span_end"]] == x["source"] for x in labels)
    _no_js_errors(browser)

    # crit eval reads the exported labels (no notes file beside them: the store holds the notes).
    done = CliRunner().invoke(cli, ["eval", str(files[0]), "--db", str(db), "--criteria", str(crit),
                                    "--out", str(tmp_path / "eval.duckdb")])
    assert done.exit_code == 0, done.output
    scored = {(q, m): (v, n) for q, m, v, n in _rows_of(tmp_path / "eval.duckdb", "SELECT question, metric, value, n FROM eval")}
    assert scored["all", "error_rate"] == (0.0, 2)  # two labels read, both answered in the store
    assert scored["af", "balanced_acc"] == (1.0, 1)  # marked right
    assert scored["hgb", "within_5%"] == (0.0, 1)  # the store says 10.2; the reviewer, 8.4


def text_of(blob: dict[str, Any], note_id: str) -> str:
    return next(n["text"] for n in blob["notes"] if n["id"] == note_id)


def test_eval_of_labels_names_a_question_the_criteria_lack(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"note_id": "n1", "question": "nope", "kind": "boolean", "answer": "present",
                                  "unit": None, "source": None, "span_start": None, "span_end": None}) + "\n")
    crit = tmp_path / "review.crit"
    crit.write_text(CRIT)
    (tmp_path / "some.duckdb").write_bytes(b"")
    done = CliRunner().invoke(cli, ["eval", str(labels), "--db", str(tmp_path / "some.duckdb"), "--criteria", str(crit)])
    assert done.exit_code != 0 and "not in" in done.output and "nope" in done.output


def test_bad_stored_marks_do_not_break_the_page(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    db, _ = _run(tmp_path)
    out = write_report(db, tmp_path / "report.html")
    blob = _blob(out.read_text())
    browser.get(out.as_uri())
    for marks in ('{"not": "a list"}', "not json", '[null, 3, {"note_id": 5}]'):
        browser.execute_script("localStorage.setItem(arguments[0], arguments[1])", "crit-review:" + blob["run_id"], marks)
        browser.refresh()
        assert browser.find_element(By.ID, "review-summary").text.startswith("0 marked")
        assert len(_rows(browser)) == 6
    _no_js_errors(browser)


def test_flow_counts_patients_when_the_notes_name_them(tmp_path: Path) -> None:
    from crit.engine.answering.backends.rules import RulesFactory
    from crit.engine.eligibility import load_plan
    from crit.engine.run import run

    crit = tmp_path / "review.crit"
    crit.write_text(CRIT)
    notes = tmp_path / "notes.jsonl"
    rows = [("p1", "2024-01-02", "A 70-year-old man with atrial fibrillation. Hemoglobin 12.0."),
            ("p1", "2024-02-02", "Creatinine 3.1 mg/dL."),
            ("p2", "2024-01-05", "A 50-year-old woman with atrial fibrillation. Hemoglobin 13.1 g/dL. Creatinine 0.9."),
            ("p3", "2024-01-07", "A 40-year-old man seen for a sprained ankle.")]
    notes.write_text("".join(json.dumps({"note_id": f"n{i}", "patient_id": p, "note_date": d, "text": t}) + "\n"
                             for i, (p, d, t) in enumerate(rows)))
    db = tmp_path / "r.duckdb"
    run(load_plan(crit), notes, db, RulesFactory())
    html = write_report(db, tmp_path / "report.html").read_text()
    status = dict(_rows_of(db, "SELECT status, count(*) FROM patient_eligibility GROUP BY status"))
    found = dict(re.findall(r'id="flow-(\w+)" data-count="(\d+)"', html))
    assert 'data-unit="patients"' in html and found["screened"] == "3"
    assert int(found["eligible"]) == status.get("eligible", 0) and int(found["unknown"]) == status.get("unknown", 0)
    removed = _rows_of(db, "SELECT position, removed FROM patient_attrition WHERE removed > 0 ORDER BY position")
    shown = [(int(a), int(b)) for a, b in re.findall(r'class="fbox flow-excluded" data-position="(\d+)" data-count="(\d+)"', html)]
    assert shown == removed and sum(b for _, b in shown) == status.get("ineligible", 0) > 0
