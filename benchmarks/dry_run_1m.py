"""Benchmark: `crit run --dry-run` over a synthetic 1,000,000-note corpus, against a naive baseline.

The corpus is the MTSamples notes repeated with new ids (mts-1318 -> mts-1318-r000417),
written to Parquet under /tmp (never in git). Each measurement runs in its own
subprocess so its peak RSS (ru_maxrss of that child) is its own:
- crit: crit.engine.dryrun.dry_run over the whole file with the ARISTOTLE questions,
  against an answer store holding answers for the first 1,000 notes;
- old (with --old TREE): the same dry run by another checkout of crit (e.g. main before the dry run
  counted in SQL: `git worktree add --detach /tmp/dryrun-old d4781c2`), in the same run;
- naive: pandas.read_parquet of the whole file, then a Python loop checking each row
  (id present and unique, text non-empty) - what one writes without a streaming reader.
Each crit child imports its own tree (a small package shim under --out), never the installed crit.

Usage: python benchmarks/dry_run_1m.py [--notes 1000000] [--out /tmp/crit-bench] [--old /tmp/dryrun-old]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MTSAMPLES = ROOT.parent / "shared" / "data" / "mtsamples.jsonl"
CRIT = ROOT / "criteria" / "aristotle.crit"


def write_corpus(path: Path, n: int) -> None:
    """n notes: MTSamples texts cycled, ids made unique; written in row groups, never all in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = [json.loads(line) for line in MTSAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = [r["note_id"] for r in base]
    texts = [r["text"] for r in base]
    schema = pa.schema([("note_id", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        chunk = 50_000
        for start in range(0, n, chunk):
            rng = range(start, min(n, start + chunk))
            w.write_table(
                pa.table(
                    {
                        "note_id": [f"{ids[i % len(ids)]}-r{i // len(ids):06d}" for i in rng],
                        "text": [texts[i % len(texts)] for i in rng],
                    },
                    schema=schema,
                )
            )


def _keys() -> dict[str, str]:
    from crit.engine.answering.backend import answer_key
    from crit.engine.eligibility import load_plan

    plan = load_plan(CRIT)
    return {q.name: answer_key(q.fingerprint, "bench@openai") for q in plan.questions}


def write_store(db: Path, corpus: Path, answered: int) -> None:
    """A store with synthetic answers for the first `answered` notes (so the cache lookup is exercised)."""
    from crit.engine.answering.payloads import to_answer
    from crit.engine.eligibility import load_plan
    from crit.engine.notes.reader import NoteReader
    from crit.engine.store import RunInfo, Store

    plan = load_plan(CRIT)
    keys = _keys()
    raw = {"boolean": '{"answer": "not mentioned", "source": ""}',
           "numeric": '{"status": "not stated", "answer": null, "unit": null, "source": ""}'}
    info = RunInfo(crit_file=str(CRIT), crit_hash="bench", rules_fingerprint=plan.rules_fingerprint, trial_id=plan.trial_id,
                   notes_source=str(corpus), model=None, adapter=None, backend="openai", backend_identity="bench@openai")
    with Store.open(db) as store, NoteReader(corpus) as reader:
        run_id = store.begin_run(info, plan.questions, keys)
        batch = next(reader.batches(size=answered))
        answers = [to_answer(n.note_id, n.text, q, "bench@openai", raw[q.kind]) for n in batch for q in plan.questions]
        store.write_batch(run_id, batch, answers, keys)
        store.finish_run(run_id, "done")


def child_crit(corpus: str, db: str) -> dict:
    from crit.engine.dryrun import dry_run

    t0 = time.perf_counter()
    report = dry_run(corpus, _keys(), db)
    # bad_row_count: every bad row (an older crit listed them all in bad_rows)
    bad = getattr(report, "bad_row_count", len(report.bad_rows))
    return {"seconds": time.perf_counter() - t0, "notes": report.notes, "bad_rows": bad,
            "pairs_left": report.pairs_left, "pairs_cached": report.pairs_cached}


def child_naive(corpus: str) -> dict:
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_parquet(corpus)
    seen: set[str] = set()
    bad = 0
    for note_id, text in zip(df["note_id"], df["text"]):
        if not note_id or note_id in seen or not isinstance(text, str) or not text.strip():
            bad += 1
        seen.add(note_id)
    return {"seconds": time.perf_counter() - t0, "notes": len(df) - bad, "bad_rows": bad}


def shim(tree: Path, out: Path) -> Path:
    """A folder holding a `crit` package made of `tree`'s folders (the layout pyproject.toml maps), to put on
    PYTHONPATH so a child imports that checkout of crit, whatever is installed."""
    folder = out / f"shim-{tree.resolve().as_posix().strip('/').replace('/', '-')}"
    package = folder / "crit"
    package.mkdir(parents=True, exist_ok=True)
    for name, target in (("__init__.py", tree / "crit" / "__init__.py"), ("cli.py", tree / "crit" / "cli.py"),
                         ("grammar", tree / "grammar"), ("engine", tree / "engine"), ("trainer", tree / "trainer")):
        link = package / name
        if not link.is_symlink():
            link.symlink_to(target.resolve())
    return folder


def measure(kind: str, *args: str, tree: Path | None = None, out: Path | None = None) -> dict:
    """Run one measurement in a fresh interpreter (importing crit from `tree`, if given); add its peak RSS."""
    env = dict(os.environ)
    if tree is not None and out is not None:
        env["PYTHONPATH"] = str(shim(tree, out))
    done = subprocess.run([sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True,
                          env=env, cwd=out)
    if done.returncode != 0:
        raise SystemExit(f"{kind} measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", type=int, default=1_000_000)
    ap.add_argument("--out", default="/tmp/crit-bench")
    ap.add_argument("--old", type=Path, help="another checkout of crit to measure in the same run (e.g. main)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *args = a.child
        if kind == "store":
            write_store(Path(args[0]), Path(args[1]), answered=1000)
            return
        result = child_crit(*args) if kind == "crit" else child_naive(*args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(json.dumps(result))
        return

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / f"notes-{a.notes}.parquet"
    db = out / "answers.duckdb"
    if not corpus.exists():
        t0 = time.perf_counter()
        write_corpus(corpus, a.notes)
        print(f"wrote {corpus} ({corpus.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    if db.exists():
        db.unlink()
    with_tree = {"tree": ROOT, "out": out}
    # The store is written by this checkout; an older one reads it as well (same schema).
    subprocess.run([sys.executable, __file__, "--child", "store", str(db), str(corpus)], check=True,
                   env={**os.environ, "PYTHONPATH": str(shim(ROOT, out))}, cwd=out)
    crit = measure("crit", str(corpus), str(db), **with_tree)
    old = measure("crit", str(corpus), str(db), tree=a.old, out=out) if a.old else None
    naive = measure("naive", str(corpus), out=out)
    print(f"corpus: {a.notes:,} notes, {corpus.stat().st_size / 1e6:.0f} MB Parquet")
    print(f"crit --dry-run: {crit['seconds']:.1f} s, peak RSS {crit['peak_rss_mb']:.0f} MB "
          f"({crit['notes']:,} notes, {crit['bad_rows']:,} bad rows, {crit['pairs_cached']:,} pairs cached, "
          f"{crit['pairs_left']:,} left)")
    if old is not None:
        print(f"old crit --dry-run ({a.old}): {old['seconds']:.1f} s, peak RSS {old['peak_rss_mb']:.0f} MB "
              f"({old['notes']:,} notes, {old['bad_rows']:,} bad rows, {old['pairs_cached']:,} pairs cached, "
              f"{old['pairs_left']:,} left)")
        same = all(old[k] == crit[k] for k in ("notes", "bad_rows", "pairs_cached", "pairs_left"))
        print(f"ratio old/crit: time {old['seconds'] / crit['seconds']:.2f}x, memory "
              f"{old['peak_rss_mb'] / crit['peak_rss_mb']:.2f}x; counts {'equal' if same else 'DIFFER'}")
    print(f"naive (pandas whole file + Python loop): {naive['seconds']:.1f} s, peak RSS {naive['peak_rss_mb']:.0f} MB")
    print(f"ratio naive/crit: time {naive['seconds'] / crit['seconds']:.2f}x, memory {naive['peak_rss_mb'] / crit['peak_rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
