"""The backend protocol: what every way of answering (rules, transformers, vLLM, an OpenAI server) provides.

Batch first: `answer_batch` takes many requests, each one note's text (as the model is
to read it: its passages, crit.engine.answering.policy) with the questions to ask of it, so a
server or vLLM backend keeps many requests in flight across notes, and a local model
shares each note's prefix between its questions. `answer` is the one-request form.
Either returns one Answer per question, in the order given: a valid answer or an
error row, never an exception for a bad generation. Answer keys are not the
backend's business: crit.engine.run.answer_keys makes them, and run sets them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from crit.engine.answers import Answer
from crit.grammar.questions import Question


def answer_key(question_fp: str, backend_identity: str) -> str:
    """The fingerprint stored with an answer: question fingerprint and model/adapter identity together,
    so a different model or adapter never reuses another's answers."""
    return hashlib.sha256(f"{question_fp}\x00{backend_identity}".encode()).hexdigest()[:16]


class Request(NamedTuple):
    """One note's text as the model reads it, and the questions to ask of it."""

    note_id: str
    text: str
    questions: Sequence[Question]


@runtime_checkable
class Backend(Protocol):
    identity: str  # model (and adapter) identity, part of every answer fingerprint

    def answer(self, note_id: str, note_text: str, questions: Sequence[Question]) -> list[Answer]:
        """Answer every question over one note; one Answer per question, same order."""
        ...

    def answer_batch(self, requests: Sequence[Request]) -> list[list[Answer]]:
        """Answer many requests; one list of answers per request, each in its questions' order."""
        ...

    def close(self) -> None:
        """Release resources (a server connection, GPU memory). May do nothing."""
        ...


class OneNoteAtATime:
    """`answer_batch` for a backend whose unit of work is one note (its questions share its prefix)."""

    def answer_batch(self, requests: Sequence[Request]) -> list[list[Answer]]:
        return [self.answer(r.note_id, r.text, r.questions) for r in requests]  # type: ignore[attr-defined]
