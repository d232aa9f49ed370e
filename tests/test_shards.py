"""Sharded runs: a stable split by note id, and `merge_stores` giving back the unsharded store.

The stores are real DuckDB files written through crit.engine.store with answers that went
through parse_answer (generated deterministically here instead of by a model, so the test
is fast); the merged store's answers and eligibility must equal one unsharded run's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pytest

from crit.engine.answering.backend import answer_key
from crit.engine.answering.payloads import to_answer
from crit.engine.eligibility import load_plan
from crit.engine.eligibility.evaluate import evaluate
from crit.engine.merge import merge_stores
from crit.engine.notes.reader import read_notes
from crit.engine.notes.shards import Shard, parse_shard, shard_of
from crit.engine.store import RunInfo, Store
from crit.grammar.errors import CritError

ROOT = Path(__file__).resolve().parent.parent
CRIT = ROOT / "criteria" / "aristotle.crit"
NOTES = ROOT / "tests" / "gold" / "notes.jsonl"
IDENTITY = "synthetic@test"


def test_parse_shard():
    assert parse_shard("2/4") == Shard(index=2, count=4)
    assert str(parse_shard(" 1 / 1 ")) == "1/1"
    for bad in ("0/4", "5/4", "1/0", "a/b", "2", "-1/3"):
        with pytest.raises(CritError, match="--shard"):
            parse_shard(bad)


def test_shard_of_is_stable_and_covers_every_note_once():
    ids = [f"note-{i}" for i in range(2000)]
    # Pinned values: the split must not change between versions, or re-running shard 2 of 4
    # on another machine would ask other notes.
    assert [shard_of(i, 4) for i in ids[:6]] == [
        int.from_bytes(hashlib.sha256(i.encode()).digest()[:8], "big") % 4 + 1 for i in ids[:6]
    ]
    shards = [Shard(index=k, count=4) for k in range(1, 5)]
    held = [sum(s.holds(i) for s in shards) for i in ids]
    assert held == [1] * len(ids)
    sizes = [sum(s.holds(i) for i in ids) for s in shards]
    assert all(400 < n < 600 for n in sizes), sizes  # roughly even


def _raw(note_id: str, q) -> str:
    """A deterministic, schema-valid generation per (note, question)."""
    h = hashlib.sha256(f"{note_id}/{q.name}".encode()).digest()[0]
    if q.kind == "boolean":
        return json.dumps({"answer": ["present", "absent", "not mentioned"][h % 3], "source": ""})
    if h % 2:
        return json.dumps({"status": "not stated", "answer": None, "unit": None, "source": ""})
    return json.dumps({"status": "stated", "answer": float(h % 90), "unit": q.unit, "source": ""})


def _run(db: Path, shard: Shard | None) -> None:
    """What `crit run --shard` stores: the shard's notes and their answers, one run."""
    plan = load_plan(CRIT)
    keys = {q.name: answer_key(q.fingerprint, IDENTITY) for q in plan.questions}
    notes, _ = read_notes(NOTES)
    notes = [n for n in notes if shard is None or shard.holds(n.note_id)]
    info = RunInfo(
        crit_file=str(CRIT), crit_hash=plan.source_hash, rules_fingerprint=plan.rules_fingerprint, trial_id=plan.trial_id,
        notes_source=str(NOTES), model=None, adapter=None, backend="test", backend_identity=IDENTITY,
    )
    with Store.open(db) as store:
        run_id = store.begin_run(info, plan.questions, keys)
        for b in range(0, len(notes), 7):
            batch = notes[b : b + 7]
            answers = [to_answer(n.note_id, n.text, q, IDENTITY, _raw(n.note_id, q)) for n in batch for q in plan.questions]
            store.write_batch(run_id, batch, answers, keys)
        store.finish_run(run_id, "done", notes_done=len(notes))
        evaluate(store.con, plan, keys)


ANSWER_COLS = "note_id, answer_key, question, question_fingerprint, value, unit, na, source, span_start, span_end, grounded, match, raw, error"


def _table(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_two_shards_merged_equal_one_unsharded_run(tmp_path):
    _run(tmp_path / "all.duckdb", None)
    _run(tmp_path / "s1.duckdb", parse_shard("1/2"))
    _run(tmp_path / "s2.duckdb", parse_shard("2/2"))
    s1 = _table(tmp_path / "s1.duckdb", "SELECT count(DISTINCT note_id) FROM answers")[0][0]
    s2 = _table(tmp_path / "s2.duckdb", "SELECT count(DISTINCT note_id) FROM answers")[0][0]
    assert s1 > 0 and s2 > 0 and s1 + s2 == 30

    summary = merge_stores(tmp_path / "merged.duckdb", [tmp_path / "s1.duckdb", tmp_path / "s2.duckdb"])
    assert summary.evaluated and summary.conflicting_notes == 0
    assert summary.added["notes"] == 30 and summary.added["runs"] == 2

    order = f"SELECT {ANSWER_COLS} FROM answers ORDER BY note_id, answer_key"
    assert _table(tmp_path / "merged.duckdb", order) == _table(tmp_path / "all.duckdb", order)
    assert len(_table(tmp_path / "all.duckdb", order)) == 30 * len(load_plan(CRIT).questions)
    notes = "SELECT note_id, text_hash, length FROM notes ORDER BY note_id"
    assert _table(tmp_path / "merged.duckdb", notes) == _table(tmp_path / "all.duckdb", notes)
    # Eligibility is re-evaluated corpus-wide over the merged answers.
    elig = "SELECT note_id, status FROM eligibility ORDER BY note_id"
    assert _table(tmp_path / "merged.duckdb", elig) == _table(tmp_path / "all.duckdb", elig)

    # Merging the same shard again adds nothing.
    again = merge_stores(tmp_path / "merged.duckdb", [tmp_path / "s1.duckdb"])
    assert sum(again.added.values()) == 0
    assert _table(tmp_path / "merged.duckdb", order) == _table(tmp_path / "all.duckdb", order)


def test_merge_refuses_missing_or_foreign_files(tmp_path):
    with pytest.raises(CritError, match="not found"):
        merge_stores(tmp_path / "out.duckdb", [tmp_path / "nope.duckdb"])
    foreign = tmp_path / "foreign.duckdb"
    with duckdb.connect(str(foreign)) as con:
        con.execute("CREATE TABLE t (x INT)")
    with pytest.raises(CritError, match="not a crit store"):
        merge_stores(tmp_path / "out.duckdb", [foreign])


def test_a_shard_with_limit_runs_that_many_of_its_own_notes(tmp_path):
    """`--shard i/4 --limit 1` once failed with "no note can run": the limit was applied before the shard."""
    from crit.engine.answering.backends.rules import RulesFactory
    from crit.engine.eligibility import load_plan
    from crit.engine.notes.shards import parse_shard
    from crit.engine.run import run

    root = Path(__file__).resolve().parent.parent
    plan = load_plan(root / "criteria" / "aristotle.crit")
    for i in range(1, 5):
        summary = run(plan, root / "examples" / "mtsamples-sample.jsonl", tmp_path / f"s{i}.duckdb", RulesFactory(),
                      limit=1, shard=parse_shard(f"{i}/4"))
        assert summary.notes_done == 1
