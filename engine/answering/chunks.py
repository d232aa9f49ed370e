"""Long notes: split a note into overlapping chunks, pick the chunks a question needs, merge their answers.

A note whose prompt would not fit the model (or a chosen token budget: prefill
cost grows with length) is cut into chunks on line boundaries, each overlapping
the previous one by a few lines. A question is asked only of the chunks that
mention its phrase or aliases (or of the first chunk when none do), and the
per-chunk answers are merged by the question's order:

- highest / lowest: max / min over the chunks that stated a value, among values
  whose unit is the most common unit (case-folded; ties go to the unit of the
  earliest chunk), because comparing 2.1 mg/dL with 180 umol/L is meaningless;
- first: the earliest chunk that stated a value; last: the latest;
  any other order ("value" or none): the earliest;
- booleans: present beats absent beats not mentioned; ties go to the earliest chunk.

Chunks whose answer is an error are ignored when another chunk gave a valid
answer; if all failed, the first error is kept. Token counts and latencies of all
chunks are summed into the merged answer. These are pure functions, so a backend
without a tokenizer can use them with any `count_tokens`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crit.engine.answers import Answer
from crit.grammar.questions import Question

# Words too common to locate a finding ("history of", "in the", ...).
_STOPWORDS = frozenset(
    "a an and any are as at be by for from has have history in is it no not of on or the to with without".split()
)


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int  # character offsets into the full note, end exclusive
    end: int


def _lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line, the newline kept with its line so chunks tile the text."""
    spans, start = [], 0
    for m in re.finditer(r"\n", text):
        spans.append((start, m.end()))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def _pieces(text: str, count_tokens: Callable[[str], int], budget: int) -> list[tuple[int, int, int]]:
    """Line spans with their token counts; a line longer than the budget is cut at spaces
    (transcribed notes are often one long paragraph)."""
    out = []
    for start, end in _lines(text):
        n = count_tokens(text[start:end])
        if n <= budget:
            out.append((start, end, n))
            continue
        words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+\s*", text[start:end])]
        if not words:
            out.append((start, end, n))
            continue
        per_word = n / len(words)
        step = max(1, int(budget * 0.9 / per_word))
        for i in range(0, len(words), step):
            chunk = words[i : i + step]
            s, e = chunk[0][0], chunk[-1][1]
            if i == 0:
                s = start
            out.append((s, e, count_tokens(text[s:e])))
        # keep trailing characters (none expected: \S+\s* covers the line after its first word)
        if out[-1][1] < end:
            s, _, _ = out[-1]
            out[-1] = (s, end, count_tokens(text[s:end]))
    return out


def split_chunks(
    text: str, count_tokens: Callable[[str], int], max_tokens: int, overlap_tokens: int = 64
) -> list[Chunk]:
    """Overlapping chunks of at most about `max_tokens` tokens each, cut on line boundaries.

    Chunks cover the whole text; each starts some lines (about `overlap_tokens`)
    before the previous one ended, so a value split over a chunk edge is seen whole.
    """
    if max_tokens <= 0:
        raise ValueError("max_tokens must be positive")
    pieces = _pieces(text, count_tokens, max_tokens)
    if not pieces:
        return [Chunk(0, 0, len(text))]
    chunks: list[Chunk] = []
    i = 0
    while i < len(pieces):
        j, used = i, 0
        while j < len(pieces) and (j == i or used + pieces[j][2] <= max_tokens):
            used += pieces[j][2]
            j += 1
        chunks.append(Chunk(len(chunks), pieces[i][0], pieces[j - 1][1]))
        if j >= len(pieces):
            break
        # step back over up to overlap_tokens of lines, but always move forward
        k, back = j, 0
        while k - 1 > i and back + pieces[k - 1][2] <= overlap_tokens:
            k -= 1
            back += pieces[k][2]
        i = k
    return chunks


def _content_words(phrase: str) -> list[str]:
    return [w for w in re.findall(r"[A-Za-z0-9]+", phrase.lower()) if len(w) > 2 and w not in _STOPWORDS]


def select_chunks(question: Question, text: str, chunks: Sequence[Chunk]) -> list[Chunk]:
    """The chunks to ask `question` of: those containing its phrase or an alias (case-insensitive);
    else those containing any content word of them; else the first chunk."""
    if len(chunks) <= 1:
        return list(chunks)
    lowered = [text[w.start : w.end].lower() for w in chunks]
    whole = [w for w, t in zip(chunks, lowered) if any(k.lower() in t for k in question.keywords if k.strip())]
    if whole:
        return whole
    words = {w for k in question.keywords for w in _content_words(k)}
    some = [w for w, t in zip(chunks, lowered) if any(re.search(rf"\b{re.escape(x)}\b", t) for x in words)]
    return some or [chunks[0]]


def _merged(chosen: Answer, answers: Sequence[Answer]) -> Answer:
    return chosen.model_copy(
        update={
            "latency_s": sum(a.latency_s for a in answers),
            "prompt_tokens": sum(a.prompt_tokens for a in answers),
            "output_tokens": sum(a.output_tokens for a in answers),
        }
    )


def _unit(answer: Answer) -> str:
    return (answer.unit or "").strip().lower()


def merge_answers(question: Question, answers: Sequence[Answer]) -> Answer:
    """One answer from per-chunk answers (given in chunk order), by the rules in the module docstring."""
    if not answers:
        raise ValueError("merge_answers needs at least one answer")
    if len(answers) == 1:
        return answers[0]
    ok = [a for a in answers if a.error is None]
    if not ok:
        return _merged(answers[0], answers)
    if question.kind == "boolean":
        rank = {1.0: 0, 0.0: 1}
        best = min(ok, key=lambda a: (2 if a.na else rank[a.value], a.chunk or 0))
        return _merged(best, answers)
    stated = [a for a in ok if not a.na and a.value is not None]
    if not stated:
        return _merged(ok[0], answers)
    by_chunk = sorted(stated, key=lambda a: a.chunk or 0)
    if question.order == "first":
        return _merged(by_chunk[0], answers)
    if question.order == "last":
        return _merged(by_chunk[-1], answers)
    if question.order not in ("highest", "lowest"):
        return _merged(by_chunk[0], answers)
    units = Counter(_unit(a) for a in by_chunk)
    top = max(units.values())
    unit = next(_unit(a) for a in by_chunk if units[_unit(a)] == top)  # ties: the unit seen first
    same = [a for a in by_chunk if _unit(a) == unit]
    # max/min return the first of equal values, i.e. the earliest chunk
    chosen = max(same, key=lambda a: a.value) if question.order == "highest" else min(same, key=lambda a: a.value)
    return _merged(chosen, answers)
