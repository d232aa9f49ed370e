"""What a model reads of one note: its questions' passages, joined into one view, and the way back.

The model never sees the whole note when its questions have passages: it reads their
union, one passage a line, so all the note's questions share that prefix. Each question's
answer schema is made over its own passages (a quote is one of them word for word, a
number one they write), and a span the model quotes in the view maps back to the note.
"""

from __future__ import annotations

from collections.abc import Sequence

from crit.engine.answers import Answer
from crit.engine.reading.passages import Passage
from crit.engine.reading.reader import numbers_written
from crit.grammar.questions import Question, evidence_schema


def evidence_view(note_text: str, passages: Sequence[Passage]) -> tuple[str, list[tuple[int, int, int]]]:
    """The passages joined one per line (in note order; overlapping ones as their union, so every
    passage is whole in the view), and (view start, note start, length) for each piece, so a span
    in the view maps back to the note."""
    spans: list[list[int]] = []
    for start, end in sorted({(p.start, p.end) for p in passages}):
        if spans and start < spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    parts, pieces, at = [], [], 0
    for start, end in spans:
        parts.append(note_text[start:end])
        pieces.append((at, start, end - start))
        at += end - start + 1
    return "\n".join(parts), pieces


def to_note(answer: Answer, pieces: list[tuple[int, int, int]], note_text: str) -> Answer:
    """Map an answer's span from the evidence view to the note; a quote across two passages is not grounded."""
    if answer.span_start is None or answer.span_end is None:
        return answer
    for view_start, note_start, length in pieces:
        if view_start <= answer.span_start and answer.span_end <= view_start + length:
            shift = note_start - view_start
            start, end = answer.span_start + shift, answer.span_end + shift
            exact = answer.match == "exact" and note_text[start:end] == answer.source
            return answer.model_copy(update={"span_start": start, "span_end": end, "grounded": exact})
    return answer.model_copy(update={"span_start": None, "span_end": None, "grounded": False, "match": None})


MAX_QUOTES = 12  # passages a model may choose among for one question (the first ones, in note order)


def over_passages(q: Question, quotes: Sequence[str]) -> Question:
    """The question with its answer schema over these passages' texts (questions.evidence_schema): the
    quote is one of them, word for word, and a number is one they write. Its fingerprint is unchanged:
    the schema follows from the note and the question. (The trainer writes its examples with it too.)"""
    numbers = [n for t in quotes for n in numbers_written(t)] if q.kind == "numeric" else []
    return q.model_copy(update={"answer_schema": evidence_schema(q.kind, list(quotes), numbers)})


def model_request(note_text: str, ask: Sequence[Question], evidence: dict[str, list[Passage]]
                   ) -> tuple[str, list[tuple[int, int, int]], list[Question]]:
    """What the model reads for these questions of one note: one view of all their passages (so they
    share its prefix), with each question's schema over its own passages; a `gate off` question
    with no passage makes it the whole note."""
    if all(evidence[q.name] for q in ask):
        view, pieces = evidence_view(note_text, [p for q in ask for p in evidence[q.name]])
        asked = [over_passages(q, [p.text(note_text) for p in evidence[q.name][:MAX_QUOTES]]) for q in ask]
        return view, pieces, asked
    return note_text, [(0, 0, len(note_text))], list(ask)
