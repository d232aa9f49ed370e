"""A report of several pages: the HTML holds the figures and the first page, a folder beside it the rest.

The store is the review test's rules run over six notes (tests/test_report_review.py), reported two
notes a page: three pages. In headless Chromium, opened from file://, page 2 comes from its script
file with its highlights, a filter reaches a note of page 3, and a review mark made on page 2 is
exported after a reload (when only page 1 is in the HTML).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from crit.cli import cli
from crit.engine.report.evidence import natural_key
from crit.engine.report.html import pages_folder, write_report
from tests.test_report import _blob, _click, _no_js_errors, _rows
from tests.test_report_review import _answer_row, _rows_of, _run


def _page(folder: Path, k: int) -> list[dict[str, Any]]:
    """The notes of page k, as its script file hands them to the page."""
    m = re.fullmatch(rf"critReportPage\({k},(.*)\);\n", (folder / f"page-{k:04d}.js").read_text(), re.S)
    assert m, f"page {k} is not one callback"
    return json.loads(m.group(1))


def _wait(drv: Any, css: str, within: Any = None, timeout: float = 10.0) -> list[Any]:
    """Elements matching `css` once there are some (a page's file loads asynchronously)."""
    from selenium.webdriver.common.by import By

    for _ in range(int(timeout / 0.05)):
        found = (within or drv).find_elements(By.CSS_SELECTOR, css)
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"nothing matches {css!r} after {timeout} s")


def _open_loaded(drv: Any, note_id: str) -> Any:
    """Open a note and return its details once its page's file has loaded."""
    from selenium.webdriver.common.by import By

    detail = _click(drv, note_id).find_element(By.XPATH, "following-sibling::tr[1]")
    assert "detail-row" in detail.get_attribute("class")
    _wait(drv, "pre.note-text", detail)
    return detail


def test_a_report_of_several_pages_writes_them_beside_it(tmp_path: Path) -> None:
    db, _ = _run(tmp_path)
    out = write_report(db, tmp_path / "report.html", page_size=2)
    folder = pages_folder(out)
    assert folder == tmp_path / "report_files"
    assert sorted(p.name for p in folder.iterdir()) == ["crit-report.json", "index.js", "page-0002.js", "page-0003.js"]
    ids = sorted((r[0] for r in _rows_of(db, "SELECT note_id FROM notes")), key=natural_key)
    blob = _blob(out.read_text())
    assert (blob["total"], blob["page_size"], blob["folder"]) == (6, 2, "report_files")
    assert [n["id"] for n in blob["notes"]] == ids[:2]  # the HTML holds the first page only
    assert [n["id"] for n in _page(folder, 2)] == ids[2:4] and [n["id"] for n in _page(folder, 3)] == ids[4:]
    rows = json.loads(re.fullmatch(r"critReportIndex\((.*)\);\n", (folder / "index.js").read_text(), re.S).group(1))
    assert [r[0] for r in rows] == ids and all(len(r) == 10 for r in rows)  # every note's row, no text
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())

    # Written again, smaller than a page: one file, and the earlier pages (note text) are not left beside it.
    write_report(db, out)
    assert not folder.exists() and len(_blob(out.read_text())["notes"]) == 6


def _many(tmp_path: Path, n: int) -> Path:
    """A rules run (no model) over n one-line notes: more than the CLI's page of 100 makes a folder report."""
    from crit.engine.answering.backends.rules import RulesFactory
    from crit.engine.eligibility import load_plan
    from crit.engine.run import run

    crit = tmp_path / "many.crit"
    crit.write_text('trial M-1\nnumeric creat highest "creatinine" in mg/dL\nexclude "renal": creat > 2.5 mg/dL\n')
    notes = tmp_path / "many.jsonl"
    notes.write_text("".join(json.dumps({"note_id": f"n{i}", "text": f"Creatinine {1 + i % 3}.1 mg/dL."}) + "\n"
                             for i in range(n)))
    db = tmp_path / "many.duckdb"
    run(load_plan(crit), notes, db, RulesFactory())
    return db


def test_a_folder_that_is_not_a_report_s_is_refused(tmp_path: Path) -> None:
    mine = tmp_path / "report_files"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"\xff\xd8")
    out = tmp_path / "report.html"
    done = CliRunner().invoke(cli, ["report", str(_many(tmp_path, 101)), "-o", str(out)])
    assert done.exit_code == 1 and "'" + str(mine) + "' exists and is not a crit report folder" in done.output
    assert len(done.output.strip().splitlines()) == 1
    assert [p.name for p in mine.iterdir()] == ["holiday.jpg"] and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.crit", "many.duckdb", "many.jsonl", "report_files"]

    # A report that fits one file writes nothing there, and leaves that folder as it is.
    db, _ = _run(tmp_path)
    done = CliRunner().invoke(cli, ["report", str(db), "-o", str(out)])
    assert done.exit_code == 0 and out.is_file()
    assert [p.name for p in mine.iterdir()] == ["holiday.jpg"]


def test_a_folder_report_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    done = CliRunner().invoke(cli, ["report", str(_many(tmp_path, 101)), "-o", str(out)])
    assert done.exit_code == 0 and f"its other pages in {tmp_path / 'r_files'}" in done.output, done.output
    assert sorted(p.name for p in (tmp_path / "r_files").iterdir()) == ["crit-report.json", "index.js", "page-0002.js"]
    assert [n["id"] for n in _blob(out.read_text())["notes"]][:3] == ["n0", "n1", "n2"]  # natural order: n2 < n10


def test_page_two_in_browser_highlights_and_exports_its_marks(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    db, _ = _run(tmp_path)
    out = write_report(db, tmp_path / "report.html", page_size=2)
    folder = pages_folder(out)
    ids = [n["id"] for n in _blob(out.read_text())["notes"]] + [n["id"] for k in (2, 3) for n in _page(folder, k)]
    browser.get(out.as_uri())
    assert _rows(browser) == ids[:2]
    assert browser.find_element(By.ID, "page-info").text == "page 1 of 3"

    browser.find_element(By.ID, "next").click()
    assert _rows(browser) == ids[2:4]
    assert browser.find_element(By.ID, "page-info").text == "page 2 of 3"
    page2 = {n["id"]: n for n in _page(folder, 2)}
    note = next(n for n in page2.values() if any(a["g"] for a in n["ans"]))  # a note with a highlight
    detail = _open_loaded(browser, note["id"])
    marks = [(m.get_attribute("data-q"), m.text) for m in detail.find_elements(By.CSS_SELECTOR, "pre.note-text mark")]
    expected = {a["q"]: note["text"][a["s"][0]:a["s"][1]] for a in note["ans"] if a["g"]}
    assert {q for names, _ in marks for q in names.split()} == set(expected)
    for q, span in expected.items():
        assert "".join(t for names, t in marks if q in names.split()) == span, (q, span, marks)

    # A mark on page 2, then a reload: the HTML holds page 1 only, yet the export covers the mark.
    answer = next(a for a in note["ans"] if a["g"])
    _answer_row(detail, answer["q"]).find_element(By.CSS_SELECTOR, "button.mark-right").click()
    browser.refresh()
    assert _rows(browser) == ids[:2]
    summary = browser.find_element(By.ID, "review-summary")
    for _ in range(100):  # the marked note's page loads after the first drawing
        if "1 label(s) to export" in summary.text:
            break
        time.sleep(0.05)
    assert "1 marked: 1 right" in summary.text and "1 label(s) to export" in summary.text
    browser.find_element(By.ID, "export-labels").click()
    downloads = tmp_path / "downloads"
    for _ in range(100):
        files = list(downloads.glob("*.jsonl")) if downloads.is_dir() else []
        if files:
            break
        time.sleep(0.1)
    assert len(files) == 1
    (label,) = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert (label["note_id"], label["question"]) == (note["id"], answer["q"])
    assert label["span_start"] == answer["p"][0] and label["source"] == answer["src"]

    # A search reaches a note of page 3, whose details load from its file when opened.
    last = ids[-1]
    browser.find_element(By.ID, "search").send_keys(last)
    assert _rows(browser) == [last]
    detail = _open_loaded(browser, last)
    assert detail.find_element(By.CSS_SELECTOR, "pre.note-text").text.startswith(_page(folder, 3)[-1]["text"][:20])
    _no_js_errors(browser)


def test_without_its_folder_the_report_says_so(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    db, _ = _run(tmp_path)
    out = write_report(db, tmp_path / "report.html", page_size=2)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    out.rename(moved / out.name)
    browser.get((moved / out.name).as_uri())
    missing = browser.find_element(By.ID, "pages-missing")
    assert missing.is_displayed() and "only the first 2 of 6 notes" in missing.text
    assert len(_rows(browser)) == 2
