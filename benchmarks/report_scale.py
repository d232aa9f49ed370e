"""Benchmark: `crit report` over a store of 100,000 tiny notes, this checkout against an older crit.

Builds a store (under --out, never in git) with the store's own schema: 100,000 one-line notes
("Patient note-17: atrial fibrillation. Hb 8.5 g/dL. Creatinine 1.40 mg/dL."), four answers each
(af, hgb, creat, and the built-in sex question answered NA) synthesised in DuckDB with the spans
of their quotes, then the rules evaluated by crit.engine.eligibility.evaluate. Then each report
is written in its own subprocess, so its peak RSS (ru_maxrss of that child, from wait4) is its own:
- new: this checkout's crit.engine.report.html.write_report;
- old: the same function at --old (default d4781c2, the report built whole in memory), exported
  with `git archive` to a folder under --out and imported through a package shim beside it.
Prints wall time, peak RSS, the HTML's size and its pages folder's size, and new / old ratios.

Usage: python benchmarks/report_scale.py [--notes 100000] [--old d4781c2] [--out /tmp/crit-report-bench]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CRIT = """\
trial BENCH-1 "report at scale"
boolean af "atrial fibrillation"
numeric hgb lowest "hemoglobin" in g/dL aka "Hb"
numeric creat highest "creatinine" in mg/dL
range creat male 0.7..1.3 female 0.6..1.1
include "AF": af
exclude "anemia": hgb < 9 g/dL
exclude "renal": creat > 2 * uln(creat)
"""

# Each child: put the checkout first on sys.path (a package shim), write the report, print nothing of the notes.
CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from crit.engine.report.html import write_report
write_report(sys.argv[2], sys.argv[3])
"""


def shim(checkout: Path, at: Path) -> Path:
    """A folder holding a `crit` package whose parts are `checkout`'s folders (pyproject's package-dir)."""
    pkg = at / "crit"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    for name in ("__init__.py", "cli.py"):
        (pkg / name).symlink_to(checkout / "crit" / name)
    for name in ("grammar", "engine", "trainer"):
        (pkg / name).symlink_to(checkout / name)
    return at


def build(db: Path, crit: Path, notes: int) -> None:
    """The store: notes, a run and its questions through crit's Store, answers synthesised in DuckDB, rules run."""
    sys.path.insert(0, str(shim(ROOT, db.parent / "shim-new")))
    from crit.engine.answering.backend import answer_key
    from crit.engine.eligibility import load_plan
    from crit.engine.eligibility.evaluate import evaluate
    from crit.engine.store import RunInfo, Store

    plan = load_plan(crit)
    identity = "bench-synthetic"
    keys = {q.name: answer_key(q.fingerprint, identity) for q in plan.questions}
    with Store.open(db) as store:
        info = RunInfo(crit_file=str(crit), crit_hash=plan.source_hash, rules_fingerprint=plan.rules_fingerprint,
                       trial_id=plan.trial_id, notes_source="synthetic", model="none", adapter=None, backend="synthetic",
                       backend_identity=identity, parameters={}, notes_total=notes)
        run_id = store.begin_run(info, plan.questions, keys)
        con = store.con
        con.execute("SELECT setseed(0.29)")
        con.execute(
            "CREATE TEMP TABLE synth AS SELECT 'note-' || i AS note_id, "
            "CASE WHEN random() < 0.5 THEN 'F' ELSE 'M' END AS sex, random() < 0.7 AS af, "
            "round(6 + random() * 10, 1) AS hgb, round(0.5 + random() * 3, 2) AS creat FROM range(?) t(i)", [notes])
        con.execute(
            "CREATE TEMP TABLE synth_text AS SELECT *, 'Patient ' || note_id || ': ' "
            "|| CASE WHEN af THEN 'atrial fibrillation' ELSE 'sinus rhythm' END || '. Hb ' || printf('%.1f', hgb) "
            "|| ' g/dL. Creatinine ' || printf('%.2f', creat) || ' mg/dL.' AS text FROM synth")
        con.execute("INSERT INTO notes (note_id, sex, text, text_hash, length, source_row) "
                    "SELECT note_id, sex, text, md5(text), length(text), row_number() OVER () FROM synth_text")
        quotes = {  # question -> (value, unit, quote) in SQL over synth_text
            "af": ("CASE WHEN af THEN 1.0 END", "NULL", "CASE WHEN af THEN 'atrial fibrillation' END"),
            "hgb": ("hgb", "'g/dL'", "'Hb ' || printf('%.1f', hgb) || ' g/dL'"),
            "creat": ("creat", "'mg/dL'", "'Creatinine ' || printf('%.2f', creat) || ' mg/dL'"),
            "sex": ("NULL", "NULL", "NULL"),
        }
        for q, (value, unit, quote) in quotes.items():
            con.execute(
                "INSERT INTO answers (note_id, answer_key, question, question_fingerprint, run_id, value, unit, na, "
                "source, span_start, span_end, grounded, match, raw, latency_s, prompt_tokens, output_tokens, error, "
                "created_at, method) "
                f"SELECT note_id, ?, ?, ?, ?, v, {unit}, v IS NULL, src, "
                "CASE WHEN src IS NOT NULL THEN strpos(text, src) - 1 END, "
                "CASE WHEN src IS NOT NULL THEN strpos(text, src) - 1 + length(src) END, "
                "src IS NOT NULL, CASE WHEN src IS NOT NULL THEN 'exact' END, '{}', 0, 0, 0, NULL, now(), 'model' "
                f"FROM (SELECT *, {value} AS v, {quote} AS src FROM synth_text)",
                [keys[q], q, plan.question(q).fingerprint, run_id])
        store.finish_run(run_id, "done")
        evaluate(con, plan, keys)


def measure(label: str, shim_dir: Path, db: Path, out: Path) -> dict[str, float]:
    """Write the report in a child process: wall seconds, peak RSS (MB), HTML and folder sizes (MB)."""
    folder = out.with_name(out.stem + "_files")
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(shim_dir), str(db), str(out)], cwd=shim_dir)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{label}: the report failed (exit {os.waitstatus_to_exitcode(status)})")
    files = sum(p.stat().st_size for p in folder.iterdir()) if folder.is_dir() else 0
    count = len(list(folder.iterdir())) if folder.is_dir() else 0
    row = {"wall_s": wall, "rss_mb": usage.ru_maxrss / 1024, "html_mb": out.stat().st_size / 1e6,
           "folder_mb": files / 1e6, "files": count}
    print(f"{label}: {wall:.1f} s, peak RSS {row['rss_mb']:.0f} MB, HTML {row['html_mb']:.1f} MB, "
          f"folder {row['folder_mb']:.1f} MB in {count} files", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=100_000)
    parser.add_argument("--old", default="d4781c2", help="the crit revision to compare with (git archive of it)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/crit-report-bench"))
    parser.add_argument("--skip-old", action="store_true", help="measure this checkout only")
    args = parser.parse_args()

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    crit, db = args.out / "bench.crit", args.out / "bench.duckdb"
    crit.write_text(CRIT)
    t0 = time.perf_counter()
    build(db, crit, args.notes)
    print(f"store: {args.notes:,} notes, {4 * args.notes:,} answers, rules evaluated "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)

    new = measure("new (this checkout)", args.out / "shim-new", db, args.out / "new" / "report.html")
    if args.skip_old:
        return
    old_tree = args.out / "old-tree"
    old_tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.old], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(old_tree, filter="data")
    old = measure(f"old ({args.old})", shim(old_tree, args.out / "shim-old"), db, args.out / "old" / "report.html")

    print()
    print(f"| {args.notes:,} notes | wall (s) | peak RSS (MB) | main HTML (MB) | folder (MB, files) |")
    print("|---|---|---|---|---|")
    for name, r in ((f"old ({args.old})", old), ("new (this branch)", new)):
        print(f"| {name} | {r['wall_s']:.1f} | {r['rss_mb']:.0f} | {r['html_mb']:.1f} | "
              f"{r['folder_mb']:.1f} ({r['files']:.0f}) |")
    print(f"| new / old | {new['wall_s'] / old['wall_s']:.2f} | {new['rss_mb'] / old['rss_mb']:.3f} | "
          f"{new['html_mb'] / old['html_mb']:.4f} | |")


if __name__ == "__main__":
    main()
