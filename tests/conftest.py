"""Shared test parts: a scripted model backend, so run's plumbing is tested without a model."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from crit.engine.answers import Answer, parse_answer
from crit.engine.backends.base import OneNoteAtATime, answer_key
from crit.engine.questions import Question

# (note text the backend was shown, question) -> the JSON the "model" writes
Script = Callable[[str, Question], str]


def not_mentioned(text: str, q: Question) -> str:
    if q.kind == "boolean":
        return json.dumps({"answer": "not mentioned", "source": ""})
    return json.dumps({"status": "not stated", "answer": None, "unit": None, "source": ""})


class ScriptedBackend(OneNoteAtATime):
    """A model backend whose answers come from a function: every call and question is recorded."""

    def __init__(self, script: Script, identity: str = "scripted-1"):
        self.script = script
        self.identity = identity
        self.calls: list[tuple[str, str, list[str]]] = []  # (note_id, text shown, question names)

    def answer(self, note_id: str, note_text: str, questions: Sequence[Question]) -> list[Answer]:
        self.calls.append((note_id, note_text, [q.name for q in questions]))
        out = []
        for q in questions:
            raw = self.script(note_text, q)
            parsed = parse_answer(raw, q, note_text)
            out.append(Answer(note_id=note_id, question=q.name, fingerprint=answer_key(q.fingerprint, self.identity),
                              raw=raw, latency_s=0.0, prompt_tokens=0, output_tokens=0, **parsed.model_dump()))
        return out

    def close(self) -> None:
        pass


@dataclass
class ScriptedFactory:
    """A BackendFactory for ScriptedBackend; `backends` holds every backend it created."""

    script: Script = not_mentioned
    identity_text: str = "scripted-1"
    name: str = "scripted"
    backends: list[ScriptedBackend] = field(default_factory=list)

    def identity(self) -> str:
        return self.identity_text

    def parameters(self) -> dict[str, Any]:
        return {"model": "scripted"}

    def create(self) -> ScriptedBackend:
        backend = ScriptedBackend(self.script, self.identity_text)
        self.backends.append(backend)
        return backend

    def asked(self) -> list[str]:
        """Every question name asked of any backend, in order."""
        return [name for b in self.backends for _, _, names in b.calls for name in names]
