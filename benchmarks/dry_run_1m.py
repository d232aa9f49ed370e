"""Benchmark: `crit run --dry-run` over a synthetic 1,000,000-note corpus, against a naive baseline.

The corpus is the MTSamples notes repeated with new ids (mts-1318 -> mts-1318-r000417),
written to Parquet under /tmp (never in git). Each measurement runs in its own
subprocess so its peak RSS (ru_maxrss of that child) is its own:
- crit: crit.engine.dryrun.dry_run over the whole file with the ARISTOTLE questions,
  against an answer store holding answers for the first 1,000 notes;
- naive: pandas.read_parquet of the whole file, then a Python loop checking each row
  (id present and unique, text non-empty) - what one writes without a streaming reader.

Usage: python benchmarks/dry_run_1m.py [--notes 1000000] [--out /tmp/crit-bench]
"""

from __future__ import annotations

import argparse
import json
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
    return {"seconds": time.perf_counter() - t0, "notes": report.notes, "bad_rows": len(report.bad_rows),
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


def measure(kind: str, *args: str) -> dict:
    """Run one measurement in a fresh interpreter; add its peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--child", kind, *args], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notes", type=int, default=1_000_000)
    ap.add_argument("--out", default="/tmp/crit-bench")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *args = a.child
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
    write_store(db, corpus, answered=1000)
    crit = measure("crit", str(corpus), str(db))
    naive = measure("naive", str(corpus))
    print(f"corpus: {a.notes:,} notes, {corpus.stat().st_size / 1e6:.0f} MB Parquet")
    print(f"crit --dry-run: {crit['seconds']:.1f} s, peak RSS {crit['peak_rss_mb']:.0f} MB "
          f"({crit['notes']:,} notes, {crit['pairs_cached']:,} pairs cached, {crit['pairs_left']:,} left)")
    print(f"naive (pandas whole file + Python loop): {naive['seconds']:.1f} s, peak RSS {naive['peak_rss_mb']:.0f} MB")
    print(f"ratio naive/crit: time {naive['seconds'] / crit['seconds']:.2f}x, memory {naive['peak_rss_mb'] / crit['peak_rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
