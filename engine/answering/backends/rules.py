"""The rules backend (`--backend rules`): the reader's answers alone, with no model.

crit.engine.reading.reader decides each answer from the note's passages; this file turns
its decisions into Answer rows, as any backend does, so a run, the gold benchmark and the
trainer can use the reader where they would use a model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crit.engine.answering.backend import Backend, OneNoteAtATime, answer_key
from crit.engine.answers import Answer
from crit.engine.reading.passages import EVIDENCE_VERSION, Passage, find_passages
from crit.engine.reading.reader import READER_VERSION, decide
from crit.grammar.questions import Question


class RulesBackend(OneNoteAtATime):
    """Deterministic answers from evidence passages; `identity` names the reader's version."""

    identity = f"{READER_VERSION}+{EVIDENCE_VERSION}"

    def answer(
        self,
        note_id: str,
        note_text: str,
        questions: Sequence[Question],
        evidence: Mapping[str, Sequence[Passage]] | None = None,
    ) -> list[Answer]:
        """One Answer per question, in order; `evidence` defaults to crit.engine.reading.passages's passages."""
        out = []
        for q in questions:
            t0 = time.perf_counter()
            passages = list(evidence[q.name]) if evidence is not None else find_passages(note_text, q)
            fields = decide(q, note_text, passages)
            out.append(
                Answer(
                    note_id=note_id,
                    question=q.name,
                    fingerprint=answer_key(q.fingerprint, self.identity),
                    raw=json.dumps({"answer": fields["label"], "source": fields.get("source") or ""}),
                    latency_s=round(time.perf_counter() - t0, 6),
                    prompt_tokens=0,
                    output_tokens=0,
                    method="rules",
                    **{k: v for k, v in fields.items() if k != "label"},
                )
            )
        return out

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class RulesFactory:
    """rules = no model at all, the rules reader alone (instant; the baseline every model must beat)."""

    name: str = field(default="rules", init=False)

    def identity(self) -> str:
        return RulesBackend.identity

    def parameters(self) -> dict[str, Any]:
        return {"model": None, "adapter": None}

    def create(self) -> Backend:
        return RulesBackend()


FACTORY = RulesFactory
