"""Answers: turn a model's generated JSON into a validated answer row, and ground its quote in the note.

Every output becomes either a valid answer or an error row that says why
(`invalid_json: ...`, `schema: ...`, `truncated: ...`, `inconsistent: ...`,
`not_finite: ...`). Nothing is salvaged with regular expressions and nothing is
retried: a wrong-looking answer is data for the evaluation, not something to hide.

Decisions, so they are written down once:
- Booleans: "present" -> value 1.0, "absent" -> 0.0, "not mentioned" -> na.
- Numerics: the status is decided before the value (the schema puts it first), so
  status "not stated" -> na, whatever number follows (the number stays in `raw`).
  Status "stated" with a null answer is an error row `inconsistent`: the model
  claimed a value and gave none, and guessing which half it meant would hide that.
- `cap` is not applied here; the rules layer clips values.
- `grounded` is true only when the quote occurs verbatim in the note. A quote found
  after folding case and whitespace still gets its span, with match="normalised",
  but grounded=False.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any, Iterator, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict

from crit.grammar.questions import Question

Match = Literal["exact", "normalised"]
# How an answer was reached: no passage mentions the question (the gate), the rules
# answerer alone, or a model (crit.engine.answering.policy decides which, per answer).
# model-inferred: a trusted model's answer from the whole note, where no passage named the finding (`infer`)
Method = Literal["gate", "rules", "model", "model-inferred"]


class Candidate(BaseModel):
    """One value found for a numeric question, with the unit written after it and its span in the note."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    unit: str | None = None
    span_start: int
    span_end: int


class ParsedAnswer(BaseModel):
    """What the generated text says, validated; the backend adds timing and identity to make an Answer."""

    model_config = ConfigDict(extra="forbid")

    value: float | None = None
    unit: str | None = None
    na: bool = False
    source: str | None = None
    span_start: int | None = None
    span_end: int | None = None
    grounded: bool = False
    match: Match | None = None
    error: str | None = None
    # Every value found, for a numeric answer the rules read (the order picked `value` among them).
    candidates: list[Candidate] | None = None


class Answer(ParsedAnswer):
    """One question answered over one note: the row the store keeps."""

    note_id: str
    question: str  # the question's name
    fingerprint: str  # answer_key(question fingerprint, backend identity)
    raw: str  # the generated JSON text, as generated
    latency_s: float  # wall time attributed to this answer (shared prefill split evenly)
    prompt_tokens: int
    output_tokens: int
    chunk: int | None = None  # index of the long note's chunk the answer came from (answering.chunks); None = whole note
    method: Method = "model"
    # The rules answerer's own view of its answer: False sends it to the model (crit.engine.answering.policy).
    confident: bool | None = None
    # How the reader read it (crit.engine.reading.reader: "named", "denied", "pressure-pair", ...); None for a model.
    reading: str | None = None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _normalise(text: str) -> tuple[str, list[int]]:
    """Lower-case `text` and collapse whitespace runs to one space; also return, per output
    character, the offset of the input character it came from."""
    out: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        if ch.isspace():
            if out and out[-1] != " ":
                out.append(" ")
                where.append(i)
            continue
        for low in ch.lower():  # some characters lower-case to two
            out.append(low)
            where.append(i)
    return "".join(out), where


def locate_source(source: str | None, note_text: str) -> tuple[int | None, int | None, Match | None]:
    """Character span [start, end) of `source` in `note_text`, and how it matched.

    Exact substring first; then a case- and whitespace-folded match mapped back to
    offsets in the original note; else (None, None, None). A quote that begins or
    ends with a letter or digit must not cut a word of the note: "no" is not found
    inside "colonoscopy", since a fragment of a word is no evidence.
    """
    if source is None or not source.strip():
        return None, None, None
    for start in _occurrences(note_text, source):
        if _whole_words(note_text, start, start + len(source)):
            return start, start + len(source), "exact"
    needle, _ = _normalise(source.strip())
    if not needle:
        return None, None, None
    hay, where = _normalise(note_text)
    for found in _occurrences(hay, needle):
        start, end = where[found], where[found + len(needle) - 1] + 1
        if _whole_words(note_text, start, end):
            return start, end, "normalised"
    return None, None, None


def _occurrences(hay: str, needle: str) -> Iterator[int]:
    start = hay.find(needle)
    while start >= 0:
        yield start
        start = hay.find(needle, start + 1)


def _whole_words(text: str, start: int, end: int) -> bool:
    cuts_left = start > 0 and text[start].isalnum() and text[start - 1].isalnum()
    cuts_right = end < len(text) and text[end - 1].isalnum() and text[end].isalnum()
    return not (cuts_left or cuts_right)


@functools.lru_cache(maxsize=256)
def _validator(schema_text: str) -> Any:
    """A checked validator per schema, built once: jsonschema.validate re-checks the schema against its
    metaschema on every call (about 40 ms), which would dominate at thousands of answers a second."""
    schema = json.loads(schema_text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _validate(data: Any, schema: dict[str, Any]) -> None:
    """jsonschema.validate(data, schema), with the validator cached: raises the same best-match error."""
    error = jsonschema.exceptions.best_match(_validator(json.dumps(schema)).iter_errors(data))
    if error is not None:
        raise error


def parse_answer(raw: str, question: Question, note_text: str, *, truncated: bool = False) -> ParsedAnswer:
    """Validate generated JSON against the question's schema and ground its source in `note_text`.

    `truncated` is set by a backend when generation stopped at its token limit; an
    output that is then not valid JSON is reported as `truncated` rather than
    `invalid_json`. Span offsets index `note_text`.
    """
    try:
        data: Any = json.loads(raw, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        if truncated:
            return ParsedAnswer(error=f"truncated: generation reached the token limit after {len(raw)} characters")
        return ParsedAnswer(error=f"invalid_json: {exc}")
    try:
        _validate(data, question.answer_schema)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        return ParsedAnswer(error=f"schema: {exc.message} at {path}")

    source = data["source"]
    start, end, match = locate_source(source, note_text)
    grounding = dict(source=source, span_start=start, span_end=end, match=match, grounded=match == "exact")

    if question.kind == "boolean":
        choice = data["answer"]
        if choice == "not mentioned":
            return ParsedAnswer(na=True, **grounding)
        return ParsedAnswer(value=1.0 if choice == "present" else 0.0, **grounding)

    unit = data["unit"].strip() if isinstance(data["unit"], str) and data["unit"].strip() else None
    if data["status"] == "not stated":
        return ParsedAnswer(na=True, **grounding)
    value = data["answer"]
    if value is None:
        return ParsedAnswer(error='inconsistent: status "stated" but answer is null', **grounding)
    try:
        number = float(value)  # a 400-digit integer overflows here
    except (OverflowError, ValueError, TypeError):
        number = math.inf
    if isinstance(value, bool) or not math.isfinite(number):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        return ParsedAnswer(error=f"not_finite: answer {shown} is not a finite number", **grounding)
    return ParsedAnswer(value=number, unit=unit, **grounding)
