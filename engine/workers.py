"""Workers: answer a run's notes by the gate and the rules in several processes, in order.

crit.engine.run reads the notes and owns the store; what costs CPU is reading each note (its
passages, then the rules). A run no model can touch hands its requests here, and `Answerers`
answers them in as many processes as asked, each with its own EvidenceEngine, and gives the
results back in the order the requests came, so the store gets exactly what one process would
have written. Worker processes are forked after the vocabularies and the negation pipeline are
loaded, so they start at once and share that memory. With one worker (or a model in the run)
everything runs in this process, as before.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import NamedTuple

from crit.engine.answering.backend import Request
from crit.engine.answering.policy import EvidenceEngine
from crit.engine.answers import Answer
from crit.engine.store import AnswerTables, PassageTuple, RowBuilder
from crit.grammar.questions import Question

# A note the warm-up reads, so that every lazily loaded part (vocabularies, the negation pipeline, the
# unit registry) is loaded in the parent before workers fork from it.
_WARM_UP_NOTE = ("A 70-year-old woman. No history of stroke or diabetes. Creatinine 1.2 mg/dL. "
                 "BP 140/90, pulse 80. Hemoglobin 12 g/dL. No medications.")


class Answered(NamedTuple):
    """A batch of requests answered: the rows to store, as the store's Arrow tables (built where they were
    answered, so a worker process hands back a few buffers, not thousands of objects), and what the run counts."""

    tables: AnswerTables
    by_method: Counter[str]  # answers by how they were reached: gate / rules / model / model-inferred
    questions: int  # questions answered


def answer_requests(engine: EvidenceEngine, requests: Sequence[Request], rows: RowBuilder) -> Answered:
    """Answer requests (one engine call: the model, where needed, gets them together) and key every
    answer and passage to the run."""
    keys = rows.answer_keys
    answers: list[Answer] = []
    passages: list[PassageTuple] = []
    by_method: Counter[str] = Counter()
    for r, (found, evidence) in zip(requests, engine.answer_batch(requests)):
        for a in found:
            a.fingerprint = keys[a.question]  # the engine's answers are new objects, keyed here to the run
            answers.append(a)
            by_method[a.method] += 1
        passages.extend((r.note_id, keys[q.name], q.name, i, p.start, p.end, p.term, p.section)
                        for q in r.questions for i, p in enumerate(evidence[q.name]))
    return Answered(rows.tables(answers, passages), by_method, sum(len(r.questions) for r in requests))


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# A worker's state, set once when it starts (module globals: a forked worker inherits nothing else).
_engine: EvidenceEngine | None = None
_rows: RowBuilder | None = None
_questions: dict[str, Question] = {}


def _end_with(parent: int) -> None:
    """Watch the run's process: killed with kill -9 (or out of memory), it never stops its pool, and its
    workers would wait for work forever, each holding hundreds of MB. A worker whose parent is gone ends."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _start_worker(engine: EvidenceEngine, rows: RowBuilder, questions: dict[str, Question], parent: int) -> None:
    global _engine, _rows, _questions
    threading.Thread(target=_end_with, args=(parent,), name="crit-parent-watch", daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    # A worker inherits the run's SIGTERM handler, which raises an interrupt wherever the worker is: inside
    # the pool's queue lock, that left the lock held and every process waiting on it. A worker sent SIGTERM
    # just ends, and the run, told by its pool, stops as it does for any worker lost.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _engine, _rows, _questions = engine, rows, questions


def _answer_in_worker(requests: list[tuple[str, str, list[str]]]) -> Answered:
    assert _engine is not None and _rows is not None
    return answer_requests(_engine, [Request(n, text, [_questions[q] for q in names]) for n, text, names in requests],
                           _rows)


class Answerers:
    """Answers batches of requests in `workers` processes (1: in this process), results in order."""

    def __init__(self, engine: EvidenceEngine, rows: RowBuilder, questions: Sequence[Question], workers: int):
        self.engine = engine
        self.rows = rows
        self._pool: ProcessPoolExecutor | None = None
        if workers > 1:
            if engine.model is not None or engine.policy != "rules":
                raise ValueError("only a run the rules answer whole can use worker processes")
            engine.answer("warm-up", _WARM_UP_NOTE, questions)
            context = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                             initargs=(engine, rows, {q.name: q for q in questions}, os.getpid()))

    def submit(self, requests: Sequence[Request]) -> Future[Answered]:
        """Start answering `requests`; the future's result is theirs, answered."""
        if self._pool is None:
            done: Future[Answered] = Future()
            done.set_result(answer_requests(self.engine, requests, self.rows))
            return done
        return self._pool.submit(_answer_in_worker, [(r.note_id, r.text, [q.name for q in r.questions])
                                                     for r in requests])

    def close(self) -> None:
        """Stop the workers: pieces not started are dropped, and one being answered (a fraction of a second
        of work) is waited for, so no process outlives the run."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
