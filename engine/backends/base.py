"""The backend protocol: what every way of asking a model (transformers, vLLM, an OpenAI server) provides.

A backend answers all questions of one note in one call, so it can share the
note's prefix between them (a KV cache, or a server's prefix caching). It
returns one Answer per question, in the order given: a valid answer or an error
row, never an exception for a bad generation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from crit.engine.answers import Answer
from crit.engine.questions import Question


def answer_key(question_fp: str, backend_identity: str) -> str:
    """The fingerprint stored with an answer: question fingerprint and model/adapter identity together,
    so a different model or adapter never reuses another's answers."""
    return hashlib.sha256(f"{question_fp}\x00{backend_identity}".encode()).hexdigest()[:16]


@runtime_checkable
class Backend(Protocol):
    identity: str  # model (and adapter) identity, part of every answer fingerprint

    def answer(self, note_id: str, note_text: str, questions: Sequence[Question]) -> list[Answer]:
        """Answer every question over one note; one Answer per question, same order."""
        ...

    def close(self) -> None:
        """Release resources (a server connection, GPU memory). May do nothing."""
        ...
