"""Benchmark: rule evaluation as a .crit file grows, against the compiler of d4781c2 (before issue 29, part 5).

Generates .crit files with 100, 500 and 2,000 boolean questions (one criterion per ten
questions: `any(...)` includes and `and` excludes) and one with 100 questions and 3,000
chained lets (each reads the one before it and a question), synthesises answers for 10,000
notes directly in a DuckDB file (10% not mentioned, 0.5% failed generations, 30% present;
no patient ids), and times `evaluate` once per size. Each measurement runs in its own
subprocess, so its peak memory (ru_maxrss of that child) is its own, with a DuckDB
memory_limit and a wall-clock timeout: a size the old compiler cannot finish prints
"out of memory" or "over N s" instead of hanging.

The old compiler is the commit's own tree (`git archive`, unpacked under --work), imported
through a directory that maps the repository's folders to the package `crit`, as the editable
install does; this checkout is imported the same way, so both read the same store.

    python benchmarks/rules_scale.py [--notes 10000] [--sizes 100,500,2000] [--chain 3000] [--timeout 300]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD = "d4781c2"  # main before the linear compile
CHAIN_QUESTIONS = 100


def crit_text(questions: int, lets: int) -> str:
    """`questions` boolean questions, a criterion per ten of them, and `lets` chained lets."""
    lines = ['trial SCALE "rules at scale"']
    lines += [f'boolean b{i} "finding number {i}"' for i in range(questions)]
    previous = None
    for k in range(lets):
        b = f"b{k % questions}"
        if previous is None:
            lines.append(f"let l{k} = {b}")
        else:
            lines.append(f"let l{k} = {previous} or {b}" if k % 2 else f"let l{k} = {previous} and not {b}")
        previous = f"l{k}"
    for c in range(0, questions, 10):
        names = [f"b{i}" for i in range(c, min(c + 10, questions))]
        if c % 20 == 0:
            lines.append(f'include "any of {c}..": any({", ".join(names)})')
        else:
            lines.append(f'exclude "all of {c}..": ' + " and ".join(names))
    if previous is not None:
        lines.append(f'include "the chain": {previous}')
    return "\n".join(lines) + "\n"


def build_store(db: Path, questions: int, notes: int) -> None:
    """Notes and one answer per note and question, generated inside DuckDB."""
    import duckdb

    con = duckdb.connect(str(db))
    con.execute("SELECT setseed(0.42)")
    con.execute(
        "CREATE TABLE notes AS SELECT 'note-' || i AS note_id, CASE WHEN i % 2 = 0 THEN 'female' ELSE 'male' END AS sex "
        "FROM range(?) t(i)",
        [notes],
    )
    con.execute(
        """CREATE TABLE answers AS
        SELECT note_id, question, question || '-fp' AS answer_key,
            CASE WHEN r < 0.105 THEN NULL WHEN v < 0.3 THEN 1.0 ELSE 0.0 END AS value,
            NULL::VARCHAR AS unit, r < 0.1 AS na, CASE WHEN r >= 0.1 AND r < 0.105 THEN 'timeout' END AS error
        FROM (SELECT n.note_id, 'b' || q.i AS question, random() AS r, random() AS v
              FROM notes n CROSS JOIN range(?) q(i))""",
        [questions],
    )
    con.close()


def child(crit: Path, db: Path, memory: str) -> None:
    """One measurement (in its own process): evaluate the plan over the store, print JSON."""
    import duckdb

    import crit as package
    from crit.engine.eligibility import load_plan
    from crit.engine.eligibility.evaluate import evaluate

    plan = load_plan(crit)
    con = duckdb.connect(str(db))
    con.execute(f"SET memory_limit = '{memory}'")
    keys = {q.name: f"{q.name}-fp" for q in plan.questions}
    t0 = time.perf_counter()
    summary = evaluate(con, plan, keys)
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "counts": [summary.eligible, summary.ineligible, summary.unknown], "crit": package.__file__,
    }))


def package_dir(tree: Path, into: Path) -> Path:
    """A directory whose `crit` is the tree's code, mapped as pyproject.toml maps it."""
    pkg = into / "crit"
    pkg.mkdir(parents=True, exist_ok=True)
    for name in ("__init__.py", "cli.py"):
        link = pkg / name
        if not link.exists():
            link.symlink_to(tree / "crit" / name)
    for sub in ("grammar", "engine", "trainer"):
        link = pkg / sub
        if not link.exists():
            link.symlink_to(tree / sub, target_is_directory=True)
    return into


def old_tree(work: Path) -> Path:
    """The tree of the old commit, unpacked once under `work`."""
    tree = work / f"src-{OLD}"
    if not (tree / "engine").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = work / f"{OLD}.tar"
        with archive.open("wb") as out:
            subprocess.run(["git", "-C", str(ROOT), "archive", OLD], stdout=out, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
    return tree


def measure(path_dir: Path, crit: Path, db: Path, timeout: int, memory: str) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(path_dir))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(crit), str(db), "--memory", memory]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"over {timeout} s"}
    if done.returncode != 0:
        err = done.stderr
        if "out of memory" in err.lower() or "OutOfMemory" in err or done.returncode in (-9, 137):
            return {"failed": "out of memory"}
        last = [line for line in err.strip().splitlines() if line.strip()][-1:] or [f"exit {done.returncode}"]
        return {"failed": "error: " + last[0].rsplit("Error: ", 1)[-1][:80]}  # DuckDB's message, without its class
    return json.loads(done.stdout.strip().splitlines()[-1])


def cell(r: dict[str, object]) -> tuple[str, str]:
    if "failed" in r:
        return str(r["failed"]), "-"
    return f"{r['seconds']:.1f} s", f"{float(r['peak_mb']):,.0f} MB"  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--sizes", default="100,500,2000", help="numbers of boolean questions")
    parser.add_argument("--chain", type=int, default=3000, help="chained lets (0: none)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per measurement")
    parser.add_argument("--memory", default="6GB", help="DuckDB memory_limit of each measurement")
    parser.add_argument("--skip-old", action="store_true", help="time this checkout only")
    parser.add_argument("--work", type=Path, default=Path("/tmp/crit-rules-scale"))
    parser.add_argument("--child", nargs=2, type=Path, metavar=("CRIT", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.memory)
        return

    args.work.mkdir(parents=True, exist_ok=True)
    new_dir = package_dir(ROOT, args.work / "new")
    old_dir = None if args.skip_old else package_dir(old_tree(args.work), args.work / "old")
    cases = [(f"{n:,} questions", n, 0) for n in map(int, args.sizes.split(","))]
    if args.chain:
        cases.append((f"{args.chain:,} chained lets", CHAIN_QUESTIONS, args.chain))
    print(f"{args.notes:,} notes; load average at start {os.getloadavg()}; timeout {args.timeout} s, "
          f"DuckDB memory_limit {args.memory} per measurement")
    print("| case | old time | old peak | new time | new peak | speed-up | same counts |")
    print("|---|---|---|---|---|---|---|")
    for label, questions, lets in cases:
        crit = args.work / f"scale_{questions}_{lets}.crit"
        crit.write_text(crit_text(questions, lets))
        db = args.work / f"scale_{questions}.duckdb"
        if not db.exists():
            build_store(db, questions, args.notes)
        new = measure(new_dir, crit, db, args.timeout, args.memory)
        old = measure(old_dir, crit, db, args.timeout, args.memory) if old_dir else {"failed": "not run"}
        ratio = (f"{float(old['seconds']) / float(new['seconds']):.1f}x"  # type: ignore[arg-type]
                 if "seconds" in old and "seconds" in new else "-")
        same = ("yes" if old.get("counts") == new.get("counts") else "NO") if "counts" in old and "counts" in new else "-"
        print(f"| {label} | {' | '.join(cell(old))} | {' | '.join(cell(new))} | {ratio} | {same} |", flush=True)
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
