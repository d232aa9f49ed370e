"""Questions: the single-order questions a plan asks of a model, and their answer schemas.

A Question is everything a backend needs to ask one thing of one note. It knows
nothing of rules or thresholds, which is why a threshold edit never changes a
question's fingerprint and never re-runs the model.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

QuestionKind = Literal["boolean", "numeric"]
Order = Literal["highest", "lowest", "first", "last", "most recent", "last written", "value"]

# Lengths bound the constrained generation: with them every output of the
# embedded model finished as valid JSON (NOTES-engine.md: 24/30 -> 30/30).
SOURCE_MAX_CHARS = 100
UNIT_MAX_CHARS = 16

# Booleans use an explicit three-way enum rather than true/false/null: small models
# collapse onto null (or onto false) with the nullable boolean (DESIGN.md).
BOOLEAN_CHOICES = ("present", "absent", "not mentioned")
NUMERIC_STATUS = ("stated", "not stated")

# 2: answers in json.dumps layout (constraints.py); the unit instruction moved to the system message.
# 3: evidence first (crit.engine.answering.policy): the model reads a note's passages, not the whole note.
PROMPT_VERSION = "crit-prompt-3"


def boolean_schema() -> dict[str, Any]:
    """JSON schema of a boolean answer. Every field is required, so the key order is fixed."""
    return {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "enum": list(BOOLEAN_CHOICES)},
            "source": {"type": "string", "maxLength": SOURCE_MAX_CHARS},
        },
        "required": ["answer", "source"],
        "additionalProperties": False,
    }


def numeric_schema() -> dict[str, Any]:
    """JSON schema of a numeric answer: whether it is stated comes before the value."""
    return {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": list(NUMERIC_STATUS)},
            "answer": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "unit": {"anyOf": [{"type": "string", "maxLength": UNIT_MAX_CHARS}, {"type": "null"}]},
            "source": {"type": "string", "maxLength": SOURCE_MAX_CHARS},
        },
        "required": ["status", "answer", "unit", "source"],
        "additionalProperties": False,
    }


def evidence_schema(kind: QuestionKind, quotes: list[str], numbers: list[float]) -> dict[str, Any]:
    """The answer schema over one note's passages: the quote first, one of `quotes` (the passages,
    verbatim) or "" for none, then the answer; a number must be one of `numbers` (those the
    passages write) or null. Built per (note, question) by crit.engine.answering.policy; keys in order."""
    source = {"type": "string", "enum": [*dict.fromkeys(quotes), ""]}
    if kind == "boolean":
        props: dict[str, Any] = {"source": source, "answer": {"type": "string", "enum": list(BOOLEAN_CHOICES)}}
    else:
        values = [*dict.fromkeys(int(n) if float(n).is_integer() else n for n in numbers), None]
        props = {
            "source": source,
            "status": {"type": "string", "enum": list(NUMERIC_STATUS)},
            "answer": {"enum": values},
            "unit": {"anyOf": [{"type": "string", "maxLength": UNIT_MAX_CHARS}, {"type": "null"}]},
        }
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def is_evidence_layout(schema: dict[str, Any]) -> bool:
    """Whether a schema is evidence_schema's (quote first) rather than a whole-note one."""
    return next(iter(schema.get("properties", {})), None) == "source"


# The phrase of the built-in sex question (crit.grammar.plan.SEX_QUESTION); evidence and the rules
# answerer read it by this phrase, as they read `age` by its own.
SEX_PHRASE = "that the patient is female"


class Question(BaseModel):
    """One single-order question, compiled from a `boolean` or `numeric` declaration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the name declared in the .crit file, e.g. 'creat'")
    kind: QuestionKind
    phrase: str = Field(description="the analyte or finding as written, e.g. 'creatinine'")
    text: str = Field(description="the question as the model reads it")
    order: Order | None = None
    unit: str | None = Field(default=None, description="declared unit (numeric only)")
    aka: tuple[str, ...] = ()
    not_aka: tuple[str, ...] = Field(default=(), description="terms never to look for (`not aka`), whatever gives them")
    guide: str | None = None
    cap: float | None = Field(default=None, description="values above cap are clipped to it")
    gate: bool = Field(default=True, description="False (`gate off`): ask even when no passage mentions the question")
    infer: bool = Field(default=False, description="`infer`: a trusted model may answer from the whole note where no "
                                                   "passage mentions the question")
    answer_schema: dict[str, Any]
    fingerprint: str = Field(description="hash of text, guide and schema: the answer-cache key (with model/adapter)")

    @property
    def keywords(self) -> tuple[str, ...]:
        """Words that locate this question's evidence in a long note (phrase and aliases)."""
        return (self.phrase, *self.aka)


def question_text(kind: QuestionKind, phrase: str, order: Order | None, unit: str | None) -> str:
    if kind == "boolean":
        return f"Does the note document {phrase}?"
    if order is None or order == "value":
        lead = f"What is the {phrase}"
    else:
        lead = f"What is the {order} {phrase}"
    return f"{lead} in the note, in {unit}?" if unit else f"{lead} in the note?"


def fingerprint(text: str, guide: str | None, schema: dict[str, Any], not_aka: tuple[str, ...] = (),
                infer: bool = False) -> str:
    content: dict[str, Any] = {"text": text, "guide": guide, "schema": schema, "prompt": PROMPT_VERSION}
    if not_aka:  # only when a file says it, so the fingerprints of files that do not are unchanged
        content["not_aka"] = sorted(t.lower() for t in not_aka)
    if infer:  # likewise: an inferable question may be answered where others are not mentioned
        content["infer"] = True
    payload = json.dumps(content, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def make_question(
    name: str,
    kind: QuestionKind,
    phrase: str,
    *,
    order: Order | None = None,
    unit: str | None = None,
    aka: tuple[str, ...] = (),
    not_aka: tuple[str, ...] = (),
    guide: str | None = None,
    cap: float | None = None,
    gate: bool = True,
    infer: bool = False,
) -> Question:
    text = question_text(kind, phrase, order, unit)
    schema = boolean_schema() if kind == "boolean" else numeric_schema()
    return Question(
        name=name,
        kind=kind,
        phrase=phrase,
        text=text,
        order=order,
        unit=unit,
        aka=aka,
        not_aka=not_aka,
        guide=guide,
        cap=cap,
        gate=gate,
        infer=infer,
        answer_schema=schema,
        fingerprint=fingerprint(text, guide, schema, not_aka, infer),
    )
