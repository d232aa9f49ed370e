"""Run: ask a plan's questions over a corpus of notes, store the answers, then decide eligibility.

run() streams the notes in batches; for each note it answers only the questions
the store has no answer for under the run's identity (crit.engine.answering.policy:
model, evidence, policy, gate mode), and commits each batch (notes, answers,
passages) in one transaction. Each answer is reached evidence first
(crit.engine.answering.policy.EvidenceEngine): the gate, then the rules, then the model
where the rules are not sure. The model is loaded only when some question is
actually missing, so a re-run after a threshold edit loads no model and makes
no model call: it only re-evaluates the rules.
Ctrl-C (KeyboardInterrupt) marks the run 'interrupted' and keeps every batch
already committed; running the same command again resumes from there.
No note text is ever logged.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import duckdb
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from crit.engine.answering import DEFAULT_POLICY, Policy
from crit.engine.answering.backend import Backend, Request, answer_key
from crit.engine.answering.policy import EvidenceEngine, engine_identity
from crit.engine.answering.registry import BackendFactory, require
from crit.engine.answering.trust import TrustProfile
from crit.engine.eligibility.evaluate import EvaluationSummary, evaluate
from crit.engine.notes.columns import NoteColumns, sex_of
from crit.engine.notes.reader import BadRow, Note, NoteReader
from crit.engine.notes.shards import Shard
from crit.engine.sql import WRITE_ERRORS, rollback
from crit.engine.store import AnswerTables, RunInfo, Store
from crit.engine.store.schema import ANSWER_ARROW, PASSAGE_ARROW
from crit.engine.workers import Answered, Answerers, default_workers
from crit.grammar.errors import CritError
from crit.grammar.plan import Plan


class Terminated(KeyboardInterrupt):
    """SIGTERM during a run, raised as an interrupt so that the run is marked and its batches kept."""


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[list[bool]]:
    """While a run goes, SIGTERM (a scheduler's stop, `kill`) ends it as Ctrl-C does: marked 'interrupted',
    not left 'running' until the next write. Only the main thread can take signals."""
    received: list[bool] = []  # set once the signal came: DuckDB, interrupted mid-query, raises its own error
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def stop(signum: int, frame: object) -> None:
        received.append(True)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


class Progress(BaseModel):
    """Where a run stands, passed to `on_progress` after each committed batch."""

    notes_done: int
    notes_total: int
    questions_asked: int  # answered by this process (gate, rules or model)
    questions_cached: int  # found in the store, not asked
    bad_rows: int
    model_seconds: float  # wall time answering (model loading included)
    by_method: dict[str, int] = {}  # answers written by this process: gate / rules / model
    model_questions: int = 0  # questions sent to the model (kept or not)


class RunSummary(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_id: str
    status: str
    db: str
    notes_total: int  # rows in the source (after --limit), good and bad
    notes_done: int
    bad_rows: list[BadRow]
    notes_changed: int  # stored notes whose text changed: their answers were asked again
    answers_new: int
    answers_cached: int
    errors: int  # error rows among the answers the evaluation used
    ungrounded: int  # answers with a quote that is not verbatim in the note
    backend_calls: int  # notes sent to a model
    backend_identity: str  # the run's identity: model, evidence, policy and gate mode
    by_method: dict[str, int]  # new answers by how they were reached: gate / rules / model
    model_questions: int  # questions sent to the model; its answer replaced the rules' in by_method["model"]
    evaluation: EvaluationSummary  # over every note in the store
    this_run: dict[str, int]  # eligible / ineligible / unknown over the notes this run read
    model_use: str  # where the model was asked and why, in a sentence for the summary
    seconds: float


def answer_keys(plan: Plan, factory: BackendFactory, *, gate: bool = True, policy: Policy = DEFAULT_POLICY,
                trust: TrustProfile | None = None, infer: bool = False) -> dict[str, str]:
    """Question name -> the key its answers are stored under in this run (the one place keys are made)."""
    identity = engine_identity(factory.identity(), gate=gate, policy=policy, trust=trust, infer=infer)
    return {q.name: answer_key(q.fingerprint, identity) for q in plan.model_questions}


# A run no model can touch answers a note in milliseconds and a commit costs about as much as a few
# hundred notes, so it commits in large batches: every RULES_BATCH_NOTES notes, or sooner once
# RULES_BATCH_SECONDS have passed, so that progress shows and an interruption keeps recent work. Model
# answers cost seconds each, so a run that may ask a model commits every --batch-size notes: a crash
# loses at most one such batch.
RULES_BATCH_NOTES = 2000
RULES_BATCH_SECONDS = 5.0
PIECE_NOTES = 100  # notes handed to a worker process at once
# What the store's DuckDB may keep in memory during a run: by default it keeps the pages it wrote, up to most
# of the machine's memory, and a run over a million notes writes gigabytes. Eligibility is decided in slices
# of notes that fit under it (crit.engine.eligibility.evaluate.SLICE_CELLS).
STORE_MEMORY = "512MB"


def asks_model(factory: BackendFactory, policy: Policy, trust: TrustProfile | None) -> bool:
    """Whether a run may ask its model anything (otherwise the gate and the rules answer every question)."""
    return not (factory.name == "rules" or policy == "rules" or (trust is not None and policy == "rules-then-model"
                                                                and not trust.ever_trusted))


def _has_sex(note: Note) -> bool:
    return sex_of(note.sex) is not None


def run(
    plan: Plan,
    notes_source: str | Path | object,
    db_path: str | Path,
    backend_factory: BackendFactory,
    *,
    limit: int | None = None,
    batch_notes: int = 4,
    columns: NoteColumns | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    shard: Shard | None = None,
    gate: bool = True,
    policy: Policy = DEFAULT_POLICY,
    trust: TrustProfile | None = None,
    infer: bool = False,
    workers: int | None = None,
    memory: str | None = None,
) -> RunSummary:
    """Answer every question of `plan` over the notes, store it in `db_path`, evaluate the rules.

    `batch_notes` is the commit size of a run that may ask a model; a run the rules answer whole commits
    in larger batches (RULES_BATCH_NOTES) and reads its notes in `workers` processes (default: every core).
    `memory` caps what the store's DuckDB holds in memory, writing and deciding (default STORE_MEMORY).
    Raises CritError for bad input (notes, store, model); KeyboardInterrupt passes
    through after the run is marked 'interrupted'.
    """
    started = time.perf_counter()
    if batch_notes < 1:
        raise CritError("--batch-size must be at least 1")
    if limit is not None and limit < 1:
        raise CritError("--limit must be at least 1")
    if workers is not None and workers < 1:
        raise CritError("--workers must be at least 1")
    require(backend_factory)  # a backend that cannot start here is said before any note is read
    reader = NoteReader(notes_source, columns)
    total = reader.count()
    if limit is not None:
        total = min(total, limit)

    identity = engine_identity(backend_factory.identity(), gate=gate, policy=policy, trust=trust, infer=infer)
    questions = plan.model_questions
    keys = answer_keys(plan, backend_factory, gate=gate, policy=policy, trust=trust, infer=infer)

    store = Store.open(db_path)
    run_id = store.begin_run(
        RunInfo(
            crit_file=plan.source,
            crit_hash=plan.source_hash,
            crit_source=plan.source_text or None,
            rules_fingerprint=plan.rules_fingerprint,
            trial_id=plan.trial_id,
            notes_source=reader.source,
            model=backend_factory.parameters().get("model"),
            adapter=backend_factory.parameters().get("adapter"),
            backend=backend_factory.name,
            backend_identity=identity,
            parameters={**backend_factory.parameters(), "batch_notes": batch_notes, "limit": limit, "workers": workers,
                        "gate": gate, "policy": policy, "infer": infer, "trust": trust.describe() if trust is not None else None},
            notes_total=total,
        ),
        questions,
        keys,
    )
    rows = store.row_builder(run_id, keys)
    model_may_answer = asks_model(backend_factory, policy, trust)
    # With a model, one process (the model's); without, as many as asked, each reading PIECE_NOTES at a time.
    # (No more processes than pieces of work: forking one for a handful of notes costs more than it saves.)
    n_workers = 1 if model_may_answer else max(1, min(workers or default_workers(), -(-total // PIECE_NOTES)))
    commit_notes = batch_notes if model_may_answer else max(batch_notes, RULES_BATCH_NOTES)
    piece_notes = batch_notes if model_may_answer else min(PIECE_NOTES, commit_notes)
    look_ahead = commit_notes // piece_notes + 2 * n_workers if n_workers > 1 else 0  # pieces handed out, unsettled
    engine: EvidenceEngine | None = None
    answerers: Answerers | None = None
    progress = Progress(notes_done=0, notes_total=total, questions_asked=0, questions_cached=0, bad_rows=0, model_seconds=0.0)
    answers_new = notes_changed = calls = 0
    # Pieces read and handed out, in order: (notes, answers found cached, notes whose text changed, the
    # answering, or None).
    in_flight: deque[tuple[list[Note], int, set[str], Future[Answered] | None]] = deque()
    pending = _Pending()  # answered, not yet committed

    def commit() -> None:
        nonlocal answers_new, notes_changed
        result = store.write_tables(run_id, pending.notes, pending.tables(), answers_cached=pending.cached,
                                    changed=pending.changed)
        store.remember_run_notes([n.note_id for n in pending.notes])
        answers_new += result.answers_new
        notes_changed += result.notes_changed
        progress.notes_done += len(pending.notes)
        progress.questions_cached += pending.cached
        progress.bad_rows = len(reader.bad_rows)
        pending.clear()
        if on_progress:
            on_progress(progress.model_copy())

    def settle(oldest: tuple[list[Note], int, set[str], Future[Answered] | None]) -> None:
        nonlocal calls
        notes, cached, changed, answering = oldest
        answered = None
        if answering is not None:
            t0 = time.perf_counter()
            answered = answering.result()
            progress.model_seconds += time.perf_counter() - t0
            progress.questions_asked += answered.questions
            for method, n in answered.by_method.items():
                progress.by_method[method] = progress.by_method.get(method, 0) + n
            assert engine is not None  # made with the answerers
            progress.model_questions = engine.model_questions
        pending.add(notes, cached, changed, answered)
        if len(pending.notes) >= commit_notes or pending.age() >= RULES_BATCH_SECONDS:
            commit()

    with _sigterm_interrupts() as terminated:
        try:
            try:
                store.limit_memory(memory or STORE_MEMORY)
            except duckdb.Error as e:
                raise CritError(f"--memory {memory!r} is not a size DuckDB reads ({str(e).splitlines()[0]}); "
                                "write it like 512MB or 4GB") from None
            held = store.held_answers(keys.values())
            # A shard (crit.engine.notes.shards) reads only its slice of the corpus; --limit counts in that slice.
            for batch in reader.batches(piece_notes, limit, keep=shard.holds if shard is not None else None):
                changed = held.changed(batch)
                stored = held.missing([n.note_id for n in batch if n.note_id not in changed])
                todo = {n.note_id: set(keys.values()) if n.note_id in changed else stored.get(n.note_id, set()) for n in batch}
                requests = to_ask(plan, batch, keys, todo)
                cached = len(batch) * len(questions) - sum(len(r.questions) for r in requests)
                answering = None
                if requests:
                    t0 = time.perf_counter()
                    if engine is None or answerers is None:
                        start = None if backend_factory.name == "rules" else (lambda: _start(backend_factory))
                        engine = EvidenceEngine(start_model=start, gate=gate, policy=policy, trust=trust, infer=infer)
                        answerers = Answerers(engine, rows, questions, n_workers)
                    before = engine.model_calls
                    answering = answerers.submit(requests)
                    calls += engine.model_calls - before
                    progress.model_seconds += time.perf_counter() - t0
                in_flight.append((batch, cached, changed, answering))
                # Worker processes: keep each busy while this process reads and writes, with a commit's worth of
                # pieces waiting (a commit of 2,000 notes into a large store takes seconds, and workers left
                # without work meanwhile sat idle a fifth of the time). In this process (a model's run) a
                # piece is answered when handed out, and committed at once.
                while len(in_flight) > look_ahead:
                    settle(in_flight.popleft())
            while in_flight:
                settle(in_flight.popleft())
            if pending.notes:
                commit()
            progress.bad_rows = len(reader.bad_rows)
            if progress.notes_done == 0:
                raise CritError(
                    f"no note in {_named(reader.source)} can run ({len(reader.bad_rows)} bad row(s))"
                    + (": " + reader.bad_rows[0].describe() if reader.bad_rows else "")
                )
            if answerers is not None:  # their memory is the decision's now
                answerers.close()
            evaluation = evaluate(store.con, plan, keys)
            this_run = store.run_eligibility()
            errors, ungrounded = store.answer_counts(keys.values())
            store.finish_run(run_id, "done", bad_rows=progress.bad_rows, errors=errors)
        except KeyboardInterrupt as e:
            why = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted by the user (Ctrl-C)"
            rollback(store.con)  # the interrupt may have come inside a write: its transaction goes first
            store.finish_run(run_id, "interrupted", why, bad_rows=len(reader.bad_rows))
            raise
        except BrokenProcessPool:
            # A worker process was killed: by the system out of memory, by a signal sent to it alone, or by a
            # SIGTERM to the whole process group, which ends the workers at once and reaches this process a
            # moment later. Its handler raises at the next call: let it, here (the first call of this block),
            # rather than at some later line, from which the exception would leave the run marked 'running'.
            try:
                time.sleep(0.2)
            except Terminated:
                pass
            bad = len(reader.bad_rows)
            if terminated:
                store.finish_run(run_id, "interrupted", "terminated (SIGTERM)", bad_rows=bad)
                raise Terminated() from None
            store.finish_run(run_id, "failed", "a worker process ended unexpectedly", bad_rows=bad)
            raise CritError("a worker process ended unexpectedly (killed, or out of memory?); the batches committed "
                            "before it are kept: run the same command to resume, with --workers 1 to use one "
                            "process") from None
        except duckdb.OutOfMemoryException as e:
            bad = len(reader.bad_rows)
            reason = str(e).splitlines()[0]
            with contextlib.suppress(Exception):
                store.finish_run(run_id, "failed", reason, bad_rows=bad)
            raise CritError(f"the store '{db_path}' ran out of memory under its cap of {memory or STORE_MEMORY} "
                            f"({reason}); the batches committed before it are kept: run the same command with a larger "
                            "--memory (such as 4GB) to resume") from None
        except Exception as e:
            bad = len(reader.bad_rows)
            if terminated:  # the signal reached a DuckDB call, which ended with an error of its own
                rollback(store.con)
                store.finish_run(run_id, "interrupted", "terminated (SIGTERM)", bad_rows=bad)
                raise Terminated() from None
            if isinstance(e, CritError):
                store.finish_run(run_id, "failed", str(e), bad_rows=bad)
                raise
            if isinstance(e, WRITE_ERRORS):
                # A full disk, a store on a removed drive: the OS's own words, in the run record where the disk
                # still lets it be written, and on the command line in one line.
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                with contextlib.suppress(Exception):
                    store.finish_run(run_id, "failed", f"cannot write the store: {reason}", bad_rows=bad)
                raise CritError(f"cannot write the store '{db_path}': {reason}; the batches committed before it are "
                                "kept (free some space and run the same command to resume)") from None
            store.finish_run(run_id, "failed", f"{type(e).__name__}: {e}", bad_rows=bad)
            raise
        finally:
            if answerers is not None:
                answerers.close()
            if engine is not None:
                engine.close()
            store.close()
            reader.close()
    return RunSummary(
        run_id=run_id,
        status="done",
        db=str(db_path),
        notes_total=total,
        notes_done=progress.notes_done,
        bad_rows=reader.bad_rows,
        notes_changed=notes_changed,
        answers_new=answers_new,
        answers_cached=progress.questions_cached,
        errors=errors,
        ungrounded=ungrounded,
        backend_calls=calls,
        backend_identity=identity,
        by_method=progress.by_method,
        model_questions=progress.model_questions,
        evaluation=evaluation,
        this_run=this_run,
        model_use=model_use(backend_factory, policy, trust),
        seconds=round(time.perf_counter() - started, 3),
    )


def model_use(factory: BackendFactory, policy: Policy, trust: TrustProfile | None) -> str:
    """Where a run asks its model, and why: what the summary says about the model."""
    if factory.name == "rules" or policy == "rules":
        return "no model: the rules answer every question"
    if policy == "model":
        return "the model answers every question a passage mentions (--policy model)"
    if trust is None:
        return ("the model is asked where the rules are unsure, and its answer is kept only where the rules read its "
                "quote the same way (no trust profile measured for this model: `crit calibrate` makes one)")
    if not trust.ever_trusted:
        return ("the model was not loaded: its trust profile shows it never beats the rules "
                f"({trust.measured()}); the rules answer every question")
    return trust.describe()


def _named(source: str) -> str:
    """A source as messages name it: a path quoted, in-memory notes as described."""
    return source if source.startswith("the notes passed") else f"'{source}'"


def to_ask(plan: Plan, notes: Sequence[Note], keys: dict[str, str], todo: dict[str, set[str]]) -> list[Request]:
    """What to ask: per note, the plan's questions whose answer key is in `todo[note_id]` (what the store
    lacks), less the built-in sex question where the corpus gives the sex. Pure: no store, no model."""
    requests = []
    for note in notes:
        asked = [q for q in plan.model_questions if keys[q.name] in todo.get(note.note_id, set())
                 and not (q.name == "sex" and plan.needs_sex and _has_sex(note))]
        if asked:
            requests.append(Request(note.note_id, note.text, asked))
    return requests


class _Pending:
    """Answered notes not yet committed, in source order."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.notes: list[Note] = []
        self._tables: list[AnswerTables] = []
        self.cached = 0
        self.changed: set[str] = set()  # notes whose stored text differs: their old answers go first
        self.since = time.perf_counter()

    def add(self, notes: list[Note], cached: int, changed: set[str], answered: Answered | None) -> None:
        self.notes.extend(notes)
        self.cached += cached
        self.changed |= changed
        if answered is not None:
            self._tables.append(answered.tables)

    def tables(self) -> AnswerTables:
        """The answers and passages of every piece, each as one table."""
        if not self._tables:
            return AnswerTables(ANSWER_ARROW.empty_table(), PASSAGE_ARROW.empty_table())
        return AnswerTables(pa.concat_tables(t.answers for t in self._tables),
                            pa.concat_tables(t.passages for t in self._tables))

    def age(self) -> float:
        return time.perf_counter() - self.since


def _start(factory: BackendFactory) -> Backend:
    """Start the run's model backend (called the first time a question needs the model)."""
    backend = factory.create()
    if backend.identity != factory.identity():
        raise RuntimeError(f"backend reports identity {backend.identity!r} but its factory promised {factory.identity()!r}")
    return backend
