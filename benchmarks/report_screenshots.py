"""Screenshots of the report in headless Chromium, for the README: docs/report/*.png.

A rules run (no model) of criteria/aristotle.crit over eight gold notes (tests/gold/notes.jsonl),
then `crit report`, opened in Debian's chromium with its chromedriver (nothing is downloaded):
- flow.png: the CONSORT-style flow, notes screened to eligible;
- value-highlight.png: a note's text with its hemoglobin marked by the value's own span, the
  other hemoglobin value underlined with dots;
- criteria.png: a note's criteria, each expression as written beside the values it compared;
- review.png: the answers table with review marks (right, wrong, corrected) and a correction open.

Each PNG is kept under 300 KB (scaled down if not). Usage: python benchmarks/report_screenshots.py [--out docs/report]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTES = ("mts-1186", "mts-1594", "mts-2631", "mts-2628", "mts-1501", "mts-1123", "mts-2771", "mts-1841")
SHOWN = "mts-1186"  # two hemoglobin values (11.7 and 8.2): the lowest is chosen
MAX_BYTES = 300_000


def build(tmp: Path) -> Path:
    """The report of a rules run over NOTES; returns the HTML file."""
    from crit.engine.answering.backends.rules import RulesFactory
    from crit.engine.eligibility import load_plan
    from crit.engine.report.html import write_report
    from crit.engine.run import run

    notes = tmp / "notes.jsonl"
    with notes.open("w") as out:
        for line in (ROOT / "tests" / "gold" / "notes.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r["note_id"] in NOTES:
                out.write(json.dumps({"note_id": r["note_id"], "text": r["text"],
                                      "note_date": f"2024-03-{10 + NOTES.index(r['note_id'])}"}) + "\n")
    db = tmp / "results.duckdb"
    run(load_plan(ROOT / "criteria" / "aristotle.crit"), notes, db, RulesFactory())
    return write_report(db, tmp / "report.html")


def browser(tmp: Path):  # noqa: ANN201 - a selenium WebDriver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        raise SystemExit("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--force-device-scale-factor=1", f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,1400"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def shot(element, path: Path) -> None:  # noqa: ANN001 - a selenium WebElement
    """A PNG of one element, scaled down until it is under MAX_BYTES."""
    element.screenshot(str(path))
    if path.stat().st_size > MAX_BYTES:
        from PIL import Image

        img = Image.open(path)
        while path.stat().st_size > MAX_BYTES:
            img = img.resize((img.width * 4 // 5, img.height * 4 // 5), Image.LANCZOS)
            img.save(path, optimize=True)
    print(f"{path} ({path.stat().st_size // 1000} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "report"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        report = build(tmp)
        drv = browser(tmp)
        try:
            drv.get(report.as_uri())
            shot(drv.find_element(By.ID, "flow"), out / "flow.png")

            row = next(r for r in drv.find_elements(By.CSS_SELECTOR, "#note-rows tr.note-row")
                       if r.get_attribute("data-note-id") == SHOWN)
            row.click()
            detail = row.find_element(By.XPATH, "following-sibling::tr[1]")
            pre = detail.find_element(By.CSS_SELECTOR, "pre.note-text")
            # The hemoglobin mark in the middle of the note's box, the other value just above it.
            drv.execute_script("""const [pre] = arguments; const m = pre.querySelector('mark[data-q~="hgb"]');
                pre.scrollTop = m.offsetTop - pre.offsetTop - pre.clientHeight / 2;""", pre)
            shot(pre, out / "value-highlight.png")
            shot(detail.find_element(By.CSS_SELECTOR, "table.criteria"), out / "criteria.png")

            answers = detail.find_element(By.CSS_SELECTOR, "table.answers")

            def row_of(q: str):  # noqa: ANN202
                return answers.find_element(By.CSS_SELECTOR, f'tr[data-q="{q}"]')

            row_of("af").find_element(By.CSS_SELECTOR, "button.mark-right").click()
            row_of("age").find_element(By.CSS_SELECTOR, "button.mark-right").click()
            row_of("hf").find_element(By.CSS_SELECTOR, "button.mark-wrong").click()
            hgb = row_of("hgb")
            hgb.find_element(By.CSS_SELECTOR, "button.mark-correct").click()
            value = hgb.find_element(By.CSS_SELECTOR, "input.correct-answer")
            value.clear()
            value.send_keys("8.2")
            hgb.find_element(By.CSS_SELECTOR, "button.save-correction").click()
            row_of("htn").find_element(By.CSS_SELECTOR, "button.mark-correct").click()  # left open, to show the editor
            time.sleep(0.2)
            # Only the rows the picture is about (the gate's "not asked" rows would fill it).
            drv.execute_script("""const [t, keep] = arguments;
                for (const tr of t.querySelectorAll("tr[data-q]")) if (!keep.includes(tr.dataset.q)) tr.style.display = "none";""",
                               answers, ["af", "age", "diabetes", "hf", "hgb", "htn", "lvef"])
            shot(answers, out / "review.png")
        finally:
            drv.quit()


if __name__ == "__main__":
    main()
