"""crit run end to end with the real embedded model: 2 one-sentence notes x 2 questions (slow).

The runs use `policy="model"` (gate + model), so the model answers every question a passage
mentions: the rules alone would answer these notes without loading it.

(a) a run stores answers and one eligibility row per note, and `crit sql` reads them;
(b) a threshold edit re-runs with zero model calls and a new evaluation;
(c) a run killed with SIGKILL after its first committed batch resumes to the same answers, none twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from crit.cli import cli
from crit.engine.answering.backends.transformers import TransformersFactory
from crit.engine.eligibility import load_plan
from crit.engine.run import run

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "run"
NOTES = FIXTURES / "notes.jsonl"
ANSWER_COLUMNS = "note_id, question, answer_key, value, unit, na, source, span_start, span_end, grounded, raw, error"


class CountingFactory(TransformersFactory):
    """The real transformers factory, counting backends created and answer() calls made."""

    created = 0
    calls = 0

    def create(self):  # type: ignore[override]
        backend = super().create()
        CountingFactory.created += 1
        real = backend.answer

        def answer(*args, **kwargs):
            CountingFactory.calls += 1
            return real(*args, **kwargs)

        backend.answer = answer  # type: ignore[method-assign]
        return backend


def answers(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT {ANSWER_COLUMNS} FROM answers ORDER BY note_id, question").fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("run") / "results.duckdb"
    summary = run(load_plan(FIXTURES / "small.crit"), NOTES, db, CountingFactory(), batch_notes=1, policy="model")
    assert summary.status == "done" and summary.notes_done == 2
    assert summary.answers_new == 4 and summary.answers_cached == 0 and summary.backend_calls == 2
    return db


def test_run_stores_answers_and_eligibility_and_sql_reads_them(first_run: Path) -> None:
    rows = answers(first_run)
    assert [(r[0], r[1]) for r in rows] == [("mts-1919", "age"), ("mts-1919", "htn"), ("mts-668", "age"), ("mts-668", "htn")]
    result = CliRunner().invoke(cli, ["sql", str(first_run), "select note_id, status from eligibility order by 1", "--csv"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "note_id,status"
    assert [l.split(",")[0] for l in lines[1:]] == ["mts-1919", "mts-668"]
    # The status follows from the stored answers by small.crit's two includes (adult: age >= 18;
    # hypertension: htn), worked out here in Python, apart from the rules SQL.
    con = duckdb.connect(str(first_run), read_only=True)
    stored = {(n, q): (v, na, e) for n, q, v, na, e in
              con.execute("SELECT note_id, question, value, na, error FROM answers").fetchall()}
    con.close()

    def met(value, na, error, test):
        return None if (na or error or value is None) else test(value)

    for line in lines[1:]:
        note_id, status = line.split(",")
        adult = met(*stored[(note_id, "age")], lambda v: v >= 18)
        htn = met(*stored[(note_id, "htn")], lambda v: v == 1.0)
        expected = "ineligible" if False in (adult, htn) else "eligible" if (adult, htn) == (True, True) else "unknown"
        assert status == expected, (note_id, adult, htn)
    bad = CliRunner().invoke(cli, ["sql", str(first_run), "select nope from eligibility"])
    assert bad.exit_code == 1 and "nope" in bad.output


def test_threshold_edit_makes_no_model_call(first_run: Path, tmp_path: Path) -> None:
    db = tmp_path / "results.duckdb"
    shutil.copy(first_run, db)
    edited = tmp_path / "small.crit"
    edited.write_text((FIXTURES / "small.crit").read_text().replace("age >= 18 years", "age >= 65 years"))
    before = CountingFactory.created, CountingFactory.calls
    plan = load_plan(edited)
    summary = run(plan, NOTES, db, CountingFactory(), batch_notes=1, policy="model")
    assert (CountingFactory.created, CountingFactory.calls) == before  # no model loaded, none asked
    assert summary.backend_calls == 0 and summary.answers_new == 0 and summary.answers_cached == 4
    assert answers(db) == answers(first_run)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT rules_fingerprint FROM evaluation").fetchall() == [(plan.rules_fingerprint,)]
    assert plan.rules_fingerprint != load_plan(FIXTURES / "small.crit").rules_fingerprint
    # The new threshold decides "adult" from the same stored ages.
    rows = con.execute(
        "SELECT c.note_id, c.status, a.value, a.na, a.error FROM criteria c JOIN answers a "
        "ON a.note_id = c.note_id AND a.question = 'age' WHERE c.label = 'adult'"
    ).fetchall()
    assert len(rows) == 2
    for _, status, value, na, error in rows:
        expected = "unknown" if (na or error or value is None) else ("met" if value >= 65 else "not met")
        assert status == expected
    assert con.execute("SELECT count(*) FROM eligibility").fetchall() == [(2,)]
    con.close()


def test_sigkill_then_resume_gives_the_same_answers(first_run: Path, tmp_path: Path) -> None:
    db = tmp_path / "killed.duckdb"
    # A child process runs the real pipeline and says when each batch (one note) is committed.
    script = textwrap.dedent(
        f"""
        import sys
        from crit.engine.answering.backends.transformers import TransformersFactory
        from crit.engine.eligibility import load_plan
        from crit.engine.run import run
        run(load_plan({str(FIXTURES / "small.crit")!r}), {str(NOTES)!r}, {str(db)!r}, TransformersFactory(),
            batch_notes=1, policy="model", on_progress=lambda p: print("committed", p.notes_done, flush=True))
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("committed 1"), line
        os.kill(child.pid, signal.SIGKILL)  # mid-way through the second note
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    partial = answers(db)
    assert {r[0] for r in partial} == {"mts-1919"}

    result = CliRunner().invoke(
        cli, ["run", str(FIXTURES / "small.crit"), str(NOTES), "--db", str(db), "--batch-size", "1", "--policy", "model"]
    )
    assert result.exit_code == 0, result.output
    final = answers(db)
    assert final == answers(first_run)  # greedy decoding: the same answers, none lost
    assert len({(r[0], r[2]) for r in final}) == len(final) == 4  # none twice
    con = duckdb.connect(str(db), read_only=True)
    statuses = con.execute("SELECT status FROM runs ORDER BY started_at").fetchall()
    con.close()
    assert statuses == [("interrupted",), ("done",)]


def test_the_front_door_takes_the_note_columns_as_one_object_or_as_keywords(tmp_path: Path) -> None:
    """crit.run is what `crit run` calls: a backend by name, the run's options, and NoteColumns."""
    import crit
    from crit.engine.notes.columns import NoteColumns
    from crit.grammar.errors import CritError

    patients = Path(__file__).resolve().parent / "fixtures" / "patients"
    plan = crit.load(patients / "screen.crit")
    by_object = crit.run(plan, patients / "notes.jsonl", db=tmp_path / "a.duckdb", backend="rules",
                         columns=NoteColumns(patient_column="patient"))
    by_keyword = crit.run(plan, patients / "notes.jsonl", db=tmp_path / "b.duckdb", backend="rules",
                          patient_column="patient")
    assert by_object.summary.evaluation.by_patient is not None
    assert by_object.summary.evaluation.by_patient == by_keyword.summary.evaluation.by_patient
    with pytest.raises(CritError, match="give the note columns once"):
        crit.run(plan, patients / "notes.jsonl", db=tmp_path / "c.duckdb", backend="rules",
                 columns=NoteColumns(), patient_column="patient")
    with pytest.raises(CritError, match="does not take --base-url"):
        crit.run(plan, patients / "notes.jsonl", db=tmp_path / "d.duckdb", backend="rules", base_url="http://x")
    left = crit.dry_run(plan, patients / "notes.jsonl", db=tmp_path / "a.duckdb", backend="rules")
    assert left.pairs_cached > 0 and left.pairs_left == 0


def test_the_summary_counts_this_runs_notes_apart_from_the_stores(tmp_path: Path) -> None:
    """A second, smaller run over a store counts its own notes first, then the whole store's (issue 28)."""
    import crit

    root = Path(__file__).resolve().parent.parent
    plan = crit.load(root / "criteria" / "aristotle.crit")
    sample = root / "examples" / "mtsamples-sample.jsonl"
    whole = crit.run(plan, sample, db=tmp_path / "s.duckdb", backend="rules").summary
    five = crit.run(plan, sample, db=tmp_path / "s.duckdb", backend="rules", limit=5).summary
    assert sum(whole.this_run.values()) == whole.evaluation.notes == 20
    assert sum(five.this_run.values()) == 5 and five.evaluation.notes == 20
    assert five.this_run["unknown"] <= whole.evaluation.unknown
