"""The DuckDB store (crit.engine.store): schema, batches written once and only once, what is missing."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from crit.engine.answering.backend import answer_key
from crit.engine.answers import Answer
from crit.engine.notes.reader import Note
from crit.engine.store import RunInfo, Store
from crit.engine.store.schema import SCHEMA_VERSION
from crit.grammar.errors import CritError
from crit.grammar.questions import make_question

HTN = make_question("htn", "boolean", "hypertension")
AGE = make_question("age", "numeric", "age", unit="years")
NOTES = [Note(note_id="n1", text="72-year-old with hypertension.", row=1), Note(note_id="n2", text="No history.", row=2)]


def keys_for(identity: str) -> dict[str, str]:
    return {q.name: answer_key(q.fingerprint, identity) for q in (HTN, AGE)}


def info(identity: str = "model-a") -> RunInfo:
    return RunInfo(crit_file="t.crit", crit_hash="h", rules_fingerprint="r", trial_id="T", notes_source="n.jsonl",
                   model=None, adapter=None, backend="transformers", backend_identity=identity)


def answer(note: str, question: str, keys: dict[str, str], value: float | None = 1.0) -> Answer:
    return Answer(note_id=note, question=question, fingerprint=keys[question], value=value, na=value is None,
                  raw="{}", latency_s=0.5, prompt_tokens=10, output_tokens=5)


def test_schema_created_and_versioned(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with Store.open(db):
        pass
    con = duckdb.connect(str(db), read_only=True)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert {"meta", "runs", "questions", "run_questions", "notes", "answers"} <= tables
    assert {"latest_run", "latest_answers"} <= views
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [(str(SCHEMA_VERSION),)]
    con.execute("SELECT 1")
    con.close()
    with Store.open(db) as store:  # opening again keeps what is there
        assert store.query("SELECT count(*) FROM runs")[1] == [(0,)]


def test_batch_insert_is_idempotent_and_missing_tracks_it(tmp_path: Path) -> None:
    keys = keys_for("model-a")
    with Store.open(tmp_path / "s.duckdb") as store:
        run_id = store.begin_run(info(), [HTN, AGE], keys)
        assert store.missing(["n1", "n2"], keys.values()) == {"n1": set(keys.values()), "n2": set(keys.values())}
        batch = [answer("n1", "htn", keys), answer("n1", "age", keys, 72.0)]
        assert store.write_batch(run_id, NOTES[:1], batch, keys).answers_new == 2
        assert store.write_batch(run_id, NOTES[:1], batch, keys).answers_new == 0  # the same batch again
        assert store.query("SELECT count(*) FROM answers")[1] == [(2,)]
        assert store.missing(["n1", "n2"], keys.values()) == {"n2": set(keys.values())}
        # Another model's keys are all missing: answers are never shared across models.
        other = keys_for("model-b")
        assert store.missing(["n1"], other.values()) == {"n1": set(other.values())}
        store.finish_run(run_id, "done", notes_done=1)
        assert store.query("SELECT status, notes_done, answers_new FROM latest_run")[1] == [("done", 1, 2)]
        assert store.query("SELECT note_id, question, value FROM latest_answers ORDER BY question")[1] == [
            ("n1", "age", 72.0),
            ("n1", "htn", 1.0),
        ]


def test_a_failed_batch_leaves_nothing(tmp_path: Path) -> None:
    keys = keys_for("model-a")
    with Store.open(tmp_path / "s.duckdb") as store:
        run_id = store.begin_run(info(), [HTN, AGE], keys)
        wrong = answer("n1", "htn", keys_for("model-b"))  # a key this run did not promise
        with pytest.raises(ValueError):
            store.write_batch(run_id, NOTES, [answer("n2", "htn", keys), wrong], keys)
        assert store.query("SELECT count(*) FROM answers")[1] == [(0,)]
        assert store.query("SELECT count(*) FROM notes")[1] == [(0,)]


def test_changed_note_text_drops_its_answers(tmp_path: Path) -> None:
    keys = keys_for("model-a")
    with Store.open(tmp_path / "s.duckdb") as store:
        run_id = store.begin_run(info(), [HTN, AGE], keys)
        store.write_batch(run_id, NOTES[:1], [answer("n1", "htn", keys)], keys)
        edited = Note(note_id="n1", text="A different text.", row=1)
        assert store.changed_notes([edited]) == {"n1"}
        result = store.write_batch(run_id, [edited], [], keys)
        assert result.notes_changed == 1
        assert store.missing(["n1"], keys.values()) == {"n1": set(keys.values())}


def test_stale_running_run_is_marked_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        store.begin_run(info(), [HTN, AGE], keys_for("model-a"))  # never finished: as after kill -9
    with Store.open(db) as store:
        assert store.query("SELECT status FROM runs")[1] == [("interrupted",)]


def test_read_only_and_sql_errors(tmp_path: Path) -> None:
    with pytest.raises(CritError, match="not found"):
        Store.open(tmp_path / "absent.duckdb", read_only=True)
    db = tmp_path / "s.duckdb"
    Store.open(db).close()
    with Store.open(db, read_only=True) as store:
        with pytest.raises(CritError, match="syntax error"):
            store.query("SELEC 1")
        with pytest.raises(CritError, match="read-only"):
            store.query("DELETE FROM runs")


def _schema_3_store(path: Path) -> None:
    """A store as crit wrote it before schema 4: the answers' chunk column was named "window"."""
    keys = keys_for("model-a")
    with Store.open(path) as store:
        run = store.begin_run(info(), [HTN, AGE], keys)
        chunked = answer("n1", "htn", keys).model_copy(update={"chunk": 2})
        store.write_batch(run, NOTES, [chunked, answer("n1", "age", keys, 72.0)], keys)
    con = duckdb.connect(str(path))
    con.execute('ALTER TABLE answers RENAME COLUMN chunk TO "window"')
    con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    con.close()


def test_an_older_store_is_migrated_when_opened_for_writing(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    _schema_3_store(db)
    with Store.open(db) as store:
        assert store.con.execute("SELECT note_id, question, chunk FROM answers ORDER BY question").fetchall() == [
            ("n1", "age", None), ("n1", "htn", 2)]
        assert store.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)


def test_a_shard_of_an_older_schema_merges_under_the_new_names(tmp_path: Path) -> None:
    shard, out = tmp_path / "shard.duckdb", tmp_path / "out.duckdb"
    _schema_3_store(shard)
    with Store.open(out) as store:
        merged = store.merge_from(shard)
        assert merged.added["answers"] == 2
        assert store.con.execute("SELECT chunk FROM answers WHERE question = 'htn'").fetchone() == (2,)
