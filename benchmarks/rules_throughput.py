"""Benchmark: `crit run --backend rules` throughput, against an earlier commit measured in the same run.

Each measurement is one child process running the `crit run` command end to end (read the notes,
find evidence, answer, write the store, decide eligibility), its wall time and peak RSS
(ru_maxrss of that child) taken. The baseline is the commit named by --baseline (default: main
before issue 29), checked out with `git worktree` under /tmp and imported through a shim folder,
so the two run the same notes on the same machine minutes apart. Every run's answers, passages,
notes and eligibility are compared with the baseline's, column by column (run ids and times
aside): a speed-up that changes an answer is a bug, and the benchmark says so.

--million N also screens a corpus of N notes (the MTSamples notes cycled with new ids, Parquet
under /tmp, never in git) with the current code only: the baseline's time for it is its measured
rate extrapolated, which the table marks.

    python benchmarks/rules_throughput.py [--baseline REV] [--workers 1 2] [--million 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MTSAMPLES = ROOT.parent / "shared" / "data" / "mtsamples.jsonl"
CRIT = ROOT / "criteria" / "aristotle.crit"
BASELINE = "d4781c2"  # main before issue 29 (batches of 4 notes, one scan a question, one process)


def _shim(tree: Path, shim: Path) -> Path:
    """A folder that imports `crit` from the checkout `tree`: crit/ holds links to the checkout's parts, laid
    out as installed (a link to the checkout's root would not do: the editable install's finder would still
    serve crit.engine from wherever crit is installed)."""
    package = shim / "crit"
    package.mkdir(parents=True, exist_ok=True)
    parts = {"__init__.py": tree / "crit" / "__init__.py", "cli.py": tree / "crit" / "cli.py",
             "grammar": tree / "grammar", "engine": tree / "engine", "trainer": tree / "trainer"}
    for name, target in parts.items():
        if not (package / name).is_symlink():
            (package / name).symlink_to(target)
    return shim


def shim_for(rev: str, work: Path) -> Path:
    """A folder to put first on PYTHONPATH to import crit as it was at `rev` (checked out under `work`)."""
    tree = work / f"crit-{rev}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                       capture_output=True)
    return _shim(tree, work / f"shim-{rev}")


# Runs `crit` in this child and prints its own peak RSS and its children's (the largest worker process).
_MEASURED = """
import json, resource, sys
from crit.cli import main
sys.argv = ["crit", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as e:
    code = e.code or 0
own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
import crit.engine
print("RUSAGE", json.dumps({"main_mb": own.ru_maxrss / 1024, "worker_mb": workers.ru_maxrss / 1024,
                            "code": crit.engine.__file__}))
sys.exit(code)
"""


def _tree_pss_mb(root: int) -> float:
    """The summed proportional set size of a process and its descendants, in MB: pages the workers share
    with the process they were forked from count once."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, ppid = int(stat.parent.name), int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)
    return total / 1024


def screen(shim: Path, notes: Path, db: Path, extra: list[str]) -> dict[str, float]:
    """`crit run --backend rules` in a child process: wall and CPU seconds, peak RSS in MB (the main
    process's, and the largest worker's), and the peak summed PSS of the run's processes (sampled every 2 s)."""
    db.unlink(missing_ok=True)
    command = [sys.executable, "-c", _MEASURED, "run", str(CRIT), str(notes), "--db", str(db), "--backend", "rules",
               *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # Run from the shim's folder: from the checkout, `python -c` would import its crit/ ahead of the shim's.
    child = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(shim)}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=shim)
    peak_pss = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_pss
        while not stop.wait(2.0):
            peak_pss = max(peak_pss, _tree_pss_mb(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child.communicate()
    stop.set()
    sampler.join()
    done = subprocess.CompletedProcess(command, child.returncode, stdout, stderr)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"crit run failed ({' '.join(extra)}):\n{done.stderr[-2000:]}")
    usage = json.loads(done.stdout.rsplit("RUSAGE ", 1)[1])
    code = usage.pop("code")
    if not code.startswith(str(shim)):
        raise SystemExit(f"the child imported crit from {code}, not from {shim}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"seconds": seconds, "cpu_s": cpu, "pss_mb": peak_pss, **usage}


def current_shim(work: Path) -> Path:
    """A folder to put first on PYTHONPATH to import crit from this checkout, as it is now."""
    return _shim(ROOT, work / "shim-current")


def same_results(a: Path, b: Path) -> str:
    """'identical', or which stored table differs and by how many rows."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
    # Keys hash the code's versions, and run ids and times differ by construction.
    skip = {"run_id", "created_at", "latency_s", "answer_key", "question_fingerprint"}
    differences = []
    for table in ("notes", "answers", "passages", "eligibility", "criteria"):
        columns = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'a' AND table_name = ?",
            [table]).fetchall()]
        cols = ", ".join(f'"{c}"' for c in columns if c not in skip)
        one = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM a.{table} EXCEPT ALL "
                          f"SELECT {cols} FROM b.{table})").fetchone()
        two = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM b.{table} EXCEPT ALL "
                          f"SELECT {cols} FROM a.{table})").fetchone()
        if one and two and (one[0] or two[0]):
            differences.append(f"{table}: {one[0]} rows only in the first, {two[0]} only in the second")
    con.close()
    return "identical" if not differences else "; ".join(differences)


def write_corpus(path: Path, n: int) -> None:
    """n notes: MTSamples texts cycled, ids made unique; written in row groups, never all in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = [json.loads(line) for line in MTSAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    schema = pa.schema([("note_id", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        for start in range(0, n, 50_000):
            rng = range(start, min(n, start + 50_000))
            w.write_table(pa.table({"note_id": [f"{base[i % len(base)]['note_id']}-r{i // len(base):06d}" for i in rng],
                                    "text": [base[i % len(base)]["text"] for i in rng]}, schema=schema))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--million", type=int, default=0, help="also screen a corpus of this many notes")
    parser.add_argument("--work", type=Path, default=Path("/tmp/crit-bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    notes = sum(1 for line in MTSAMPLES.read_text(encoding="utf-8").splitlines() if line.strip())
    print(f"crit run --backend rules: {notes:,} MTSamples notes x {CRIT.name}; load {os.getloadavg()[0]:.2f}")

    old_db = args.work / "baseline.duckdb"
    now = current_shim(args.work)
    old = screen(shim_for(args.baseline, args.work), MTSAMPLES, old_db, [])
    rows = [("baseline " + args.baseline, old, "-")]
    for w in args.workers:
        db = args.work / f"workers{w}.duckdb"
        rows.append((f"now, --workers {w}", screen(now, MTSAMPLES, db, ["--workers", str(w)]), same_results(old_db, db)))
    print("\n| run | wall | notes/s | CPU s | peak RSS: main + largest worker | peak summed PSS | ratio | "
          "results against the baseline |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m, same in rows:
        print(f"| {name} | {m['seconds']:.1f} s | {notes / m['seconds']:.0f} | {m['cpu_s']:.1f} | "
              f"{m['main_mb']:.0f} + {m['worker_mb']:.0f} MB | {m['pss_mb']:.0f} MB | {old['seconds'] / m['seconds']:.1f}x | "
              f"{same} |")

    if args.million:
        corpus = args.work / f"corpus-{args.million}.parquet"
        if not corpus.exists():
            write_corpus(corpus, args.million)
        db = args.work / "million.duckdb"
        m = screen(now, corpus, db, [])
        rate = notes / old["seconds"]
        print(f"\n{args.million:,} notes, now (default workers): {m['seconds'] / 60:.1f} min, "
              f"{args.million / m['seconds']:.0f} notes/s, CPU {m['cpu_s'] / 60:.1f} min, peak RSS {m['main_mb']:.0f} MB main "
              f"+ {m['worker_mb']:.0f} MB largest worker, peak summed PSS {m['pss_mb']:.0f} MB; "
              f"baseline at its measured {rate:.0f} notes/s: {args.million / rate / 3600:.1f} h (extrapolated), "
              f"ratio {args.million / rate / m['seconds']:.0f}x; store {db.stat().st_size / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
