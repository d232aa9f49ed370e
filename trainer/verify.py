"""The label check before training: a pair whose quote does not support its answer is dropped.

As in the label-correction step of 2403.19511, every teacher's pairs are checked by an
independent reader before a student learns from them. The reader here is the engine's own
rules answerer (crit.engine.reading.reader, with NegEx and the context cues), run over the
pair's quote alone and over the whole note. Reasons, in the order they are tried:

- ``quote_not_verbatim``: the quote is not the note's text at the pair's span;
- ``number_not_in_quote``: a numeric answer its quote does not write;
- ``na_contradicted``: an NA answer, where the rules are sure the note answers it;
- then crit.engine.answering.policy.objection, the check the engine makes of a model's answer:
  ``off_question`` (the quote is no passage of the question), ``quote_denies`` (answer
  "present", the quote a sure denial: "denies CP"), ``quote_not_about_patient`` (answer
  "present", the quote only family history or a hypothetical: "mother w/ DM", "r/o MI"),
  ``quote_not_a_denial`` (answer "absent", the quote the same, or a hedge),
  ``quote_affirms`` (answer "absent", the quote affirms it and denies nothing),
  ``number_not_read`` (a number the rules do not read after a term of the question:
  "BUN 22, creatinine normal"), ``not_the_order`` (a highest or lowest the quote's own numbers
  contradict: 2.3 as the highest creatinine of "decreased from 8.1 to 2.3");
- for a pair with no engine question, ``off_question`` means the quote has no word of it.

The rules only speak where they are sure (`confident`), so an unsure reading never drops a
pair. Pairs from a teacher that did not ask an engine question (no question_json) get the
checks that need no terms: verbatim, number and off_question by the question's words.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from crit.engine.answering.checks import objection
from crit.engine.reading.passages import find_passages
from crit.engine.reading.reader import PLAIN_READINGS, decide, number_in
from crit.grammar.questions import Question

_STOP = frozenset("the a an of in on is are was does did what note document documents patient any which how".split())


def question_of(row: dict[str, Any]) -> Question | None:
    raw = row.get("question_json")
    return Question.model_validate_json(raw) if raw else None


def check_label(row: dict[str, Any], note_text: str) -> str | None:
    """Why the pair's label is not supported by its quote, or None when it is (module docstring)."""
    q = question_of(row)
    na = row["type"].startswith("na-")
    source = row.get("source") or ""
    if not na:
        start, end = row.get("span_start"), row.get("span_end")
        if not source or start is None or note_text[start:end] != source:
            return "quote_not_verbatim"
        if row["type"] == "numeric" and row.get("answer") is not None:
            value = float(row["answer"])
            if not number_in(value, source):
                return "number_not_in_quote"
    if q is None:
        words = {w for w in re.findall(r"[a-z0-9]+", row["question"].lower()) if w not in _STOP and len(w) > 2}
        if not na and words and not words & set(re.findall(r"[a-z0-9]+", source.lower())):
            return "off_question"
        return None
    passages = find_passages(note_text, q)
    if na:
        whole = decide(q, note_text, passages)
        plain = whole.get("confident") or whole.get("reading") in PLAIN_READINGS
        return "na_contradicted" if plain and whole["label"] != "not mentioned" else None
    # The engine's own check of a model answer against its quote: one reading for both.
    label = row["answer"] if q.kind == "boolean" else None
    value = float(row["answer"]) if q.kind == "numeric" else None
    return objection(q, label, value, (row["span_start"], row["span_end"]), note_text, passages)


def verify(rows: list[dict[str, Any]], texts: dict[str, str]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """(the pairs kept, counts of those dropped by reason); `texts` maps note_id to its text."""
    kept: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    for r in rows:
        reason = check_label(r, texts[r["note_id"]])
        if reason is None:
            kept.append(r)
        else:
            dropped[reason] += 1
    return kept, dropped

