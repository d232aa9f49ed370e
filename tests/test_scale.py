"""A run at scale: worker processes give the answers one process gives, and a kill -9 loses no rules
answer, duplicates none, and redoes at most the open batch of model work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from crit.engine.answering.registry import factory_for
from crit.engine.eligibility import load_plan
from crit.engine.run import PIECE_NOTES, run

ROOT = Path(__file__).resolve().parent.parent
CRIT = ROOT / "criteria" / "aristotle.crit"
MTSAMPLES = ROOT.parent / "shared" / "data" / "mtsamples.jsonl"
SAMPLE = ROOT / "examples" / "mtsamples-sample.jsonl"


def _corpus(path: Path, n: int) -> Path:
    """n notes: MTSamples (the shared copy where present, else the shipped sample) cycled with new ids."""
    source = MTSAMPLES if MTSAMPLES.exists() else SAMPLE
    with source.open(encoding="utf-8") as f:
        base = [json.loads(line) for _, line in zip(range(n), f)]
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            record = base[i % len(base)]
            out.write(json.dumps({"note_id": f"{record['note_id']}-{i}", "text": record["text"]}) + "\n")
    return path


def _stored(db: Path) -> dict[str, list[tuple]]:
    """Every stored row that a run decides, run ids and times aside, sorted."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "answers": sorted(con.execute(
                "SELECT note_id, answer_key, question, value, unit, na, source, span_start, span_end, grounded, method, "
                "candidates, reading, sure FROM answers").fetchall(), key=repr),
            "passages": sorted(con.execute("SELECT * FROM passages").fetchall(), key=repr),
            "notes": sorted(con.execute("SELECT note_id, text_hash, source_row FROM notes").fetchall()),
            "eligibility": sorted(con.execute("SELECT * FROM eligibility").fetchall(), key=repr),
        }
    finally:
        con.close()


@pytest.mark.slow  # three runs over 250 notes: CI runs it, the fast suite does not
def test_two_workers_store_exactly_what_one_process_stores(tmp_path: Path) -> None:
    notes = _corpus(tmp_path / "notes.jsonl", 2 * PIECE_NOTES + 50)  # three pieces: both workers get work
    plan = load_plan(CRIT)
    one = run(plan, notes, tmp_path / "one.duckdb", factory_for("rules"), workers=1)
    two = run(plan, notes, tmp_path / "two.duckdb", factory_for("rules"), workers=2)
    assert one.notes_done == two.notes_done == 2 * PIECE_NOTES + 50
    assert one.by_method == two.by_method and one.answers_new == two.answers_new
    assert _stored(tmp_path / "one.duckdb") == _stored(tmp_path / "two.duckdb")
    # A second run over the same store finds every answer and asks nothing, with workers or not.
    again = run(plan, notes, tmp_path / "two.duckdb", factory_for("rules"), workers=2)
    assert again.answers_new == 0 and again.answers_cached == one.answers_new + one.answers_cached


def _children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (Linux's /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _killed_after_first_commit(script: str, tmp_path: Path) -> set[int]:
    """Run `script` in a child that prints 'committed N' after each batch; kill -9 it after the first.
    Returns the processes the child had started (its workers)."""
    script = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + textwrap.dedent(script)  # for tests.conftest
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("committed"), line
        workers = _children(child.pid)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=120)
    assert child.returncode == -signal.SIGKILL
    return workers


@pytest.mark.slow  # a real process killed mid-run
def test_kill_9_during_a_rules_run_loses_and_duplicates_no_answer(tmp_path: Path) -> None:
    notes = _corpus(tmp_path / "notes.jsonl", 600)
    db = tmp_path / "killed.duckdb"
    workers = _killed_after_first_commit(f"""
        import crit.engine.run as r
        from crit.engine.answering.registry import factory_for
        from crit.engine.eligibility import load_plan
        r.RULES_BATCH_NOTES, r.RULES_BATCH_SECONDS = 200, 1e9  # three large batches, committed by size only
        r.run(load_plan({str(CRIT)!r}), {str(notes)!r}, {str(db)!r}, factory_for("rules"), workers=2,
              on_progress=lambda p: print("committed", p.notes_done, flush=True))
        """, tmp_path)
    con = duckdb.connect(str(db), read_only=True)
    kept = con.execute("SELECT count(DISTINCT note_id) FROM answers").fetchone()
    con.close()
    assert kept is not None and kept[0] in (200, 400)  # whole batches only
    # Its workers, left without the process that fed them, end too (they used to wait forever).
    assert len(workers) >= 2
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)

    plan = load_plan(CRIT)
    resumed = run(plan, notes, db, factory_for("rules"))
    clean = run(plan, notes, tmp_path / "clean.duckdb", factory_for("rules"))
    assert resumed.answers_cached == kept[0] * len(plan.model_questions)
    assert _stored(db) == _stored(tmp_path / "clean.duckdb")  # none lost, none twice
    assert len(_stored(db)["answers"]) == 600 * len(plan.model_questions) == clean.answers_new


@pytest.mark.slow  # a real process killed mid-run
def test_kill_9_during_a_model_run_redoes_at_most_the_open_batch(tmp_path: Path) -> None:
    from tests.conftest import ScriptedFactory

    notes = _corpus(tmp_path / "notes.jsonl", 30)
    db = tmp_path / "killed.duckdb"
    # The scripted model says which note it is asked, and is slow enough that the kill comes mid-run.
    script = f"""import sys, time; sys.path.insert(0, {str(ROOT)!r})
from crit.engine.eligibility import load_plan
from crit.engine.run import run
from tests.conftest import ScriptedBackend, ScriptedFactory

class Loud(ScriptedBackend):
    def answer(self, note_id, note_text, questions):
        print("asked", note_id, flush=True)
        time.sleep(0.05)
        return super().answer(note_id, note_text, questions)

class LoudFactory(ScriptedFactory):
    def create(self):
        return Loud(self.script, self.identity_text)

run(load_plan({str(CRIT)!r}), {str(notes)!r}, {str(db)!r}, LoudFactory(), batch_notes=5, policy="model",
    on_progress=lambda p: print("committed", p.notes_done, flush=True))
"""
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    lines = []
    try:
        assert child.stdout is not None
        while not (lines and lines[-1].startswith("committed")):
            lines.append(child.stdout.readline())
        lines.append(child.stdout.readline())  # the first note of the next batch is being asked
        os.kill(child.pid, signal.SIGKILL)
        lines.extend(child.stdout.read().splitlines())
    finally:
        child.wait(timeout=120)
    assert child.returncode == -signal.SIGKILL
    asked_before = {line.split()[1] for line in lines if line.startswith("asked")}
    con = duckdb.connect(str(db), read_only=True)
    kept = {r[0] for r in con.execute("SELECT note_id FROM notes").fetchall()}
    con.close()
    assert len(kept) % 5 == 0 and 5 <= len(kept) < 30  # whole batches of 5 notes
    assert 0 < len(asked_before - kept) <= 5  # the model work lost: at most the open batch

    factory = ScriptedFactory()
    resumed = run(load_plan(CRIT), notes, db, factory, batch_notes=5, policy="model")
    asked_again = {note_id for b in factory.backends for note_id, _, _ in b.calls}
    everything = {json.loads(line)["note_id"] for line in notes.read_text().splitlines()}
    # Only notes not committed are asked again (a note no passage names is not asked at all).
    assert asked_again and not asked_again & kept and asked_again <= everything - kept
    assert resumed.notes_done == 30
    assert resumed.answers_cached == len(load_plan(CRIT).model_questions) * len(kept)


@pytest.mark.slow  # three runs over 250 notes
def test_a_rerun_over_changed_texts_answers_them_again_in_every_piece(tmp_path: Path) -> None:
    notes = _corpus(tmp_path / "notes.jsonl", 2 * PIECE_NOTES + 50)
    plan = load_plan(CRIT)
    db = tmp_path / "store.duckdb"
    run(plan, notes, db, factory_for("rules"), workers=2)
    records = [json.loads(line) for line in notes.read_text().splitlines()]
    for i in (3, PIECE_NOTES + 7, 2 * PIECE_NOTES + 40):  # one note in each piece
        records[i]["text"] = "Atrial fibrillation. Creatinine 2.9 mg/dL. A 80-year-old man."
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(json.dumps(r) + "\n" for r in records))
    again = run(plan, edited, db, factory_for("rules"), workers=2)
    assert again.notes_changed == 3 and again.answers_new == 3 * len(plan.model_questions)
    run(plan, edited, tmp_path / "clean.duckdb", factory_for("rules"), workers=1)
    assert _stored(db) == _stored(tmp_path / "clean.duckdb")


@pytest.mark.slow  # a real process group stopped mid-run
def test_sigterm_to_the_run_and_its_workers_stops_it_as_interrupted_and_it_resumes(tmp_path: Path) -> None:
    notes = _corpus(tmp_path / "notes.jsonl", 600)
    db = tmp_path / "stopped.duckdb"
    script = f"""import sys; sys.path.insert(0, {str(ROOT)!r})
import crit.engine.run as r
from crit.engine.answering.registry import factory_for
from crit.engine.eligibility import load_plan
r.RULES_BATCH_NOTES, r.RULES_BATCH_SECONDS = 200, 1e9
r.run(load_plan({str(CRIT)!r}), {str(notes)!r}, {str(db)!r}, factory_for("rules"), workers=2,
      on_progress=lambda p: print("committed", p.notes_done, flush=True))
"""
    # Its own session, so that the signal goes to the run and its workers together, as `pkill -f` sends it.
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=ROOT, start_new_session=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("committed")
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=60)  # it used to hang: a worker stopped inside the pool's queue lock
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode != 0
    con = duckdb.connect(str(db), read_only=True)
    statuses = con.execute("SELECT status FROM runs").fetchall()
    con.close()
    assert child.stderr is not None
    assert statuses == [("interrupted",)], child.stderr.read()[-3000:]  # what the run said, if it was not marked
    plan = load_plan(CRIT)
    resumed = run(plan, notes, db, factory_for("rules"))
    assert resumed.notes_done == 600 and len(_stored(db)["answers"]) == 600 * len(plan.model_questions)


def test_the_store_memory_cap_is_a_size_or_one_clear_error(tmp_path: Path) -> None:
    from crit.grammar.errors import CritError

    plan = load_plan(CRIT)
    with pytest.raises(CritError, match="--memory 'lots' is not a size"):
        run(plan, SAMPLE, tmp_path / "m.duckdb", factory_for("rules"), memory="lots", limit=2)
    done = run(plan, SAMPLE, tmp_path / "m.duckdb", factory_for("rules"), memory="64MB", limit=2)
    assert done.status == "done" and done.notes_done == 2
