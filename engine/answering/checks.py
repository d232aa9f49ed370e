"""Whether a model's answer may stand: its quote, its number, its unit, and the reader's objections.

A model's answer is kept only when it is grounded in the note and agrees with what the reader
(crit.engine.reading.reader) reads in the passage the model quoted. `objection` is also the
trainer's check of a teacher's label (crit.trainer.verify).
"""

from __future__ import annotations

from collections.abc import Sequence

from crit.engine.answering.view import to_note
from crit.engine.answers import Answer
from crit.engine.reading.passages import Passage
from crit.engine.reading.reader import PLAIN_READINGS, decide, number_in
from crit.grammar.questions import SEX_PHRASE, Question

# How far after its term a number of a model's quote may be written: wider than the rules' own
# reach (crit.engine.reading.reader._VALUE_REACH), because a quote the model chose is checked,
# not searched, and a number in the term's clause is one a reader would take.
QUOTE_REACH = 60
# A model's "absent" where the rules found the finding present in the note: the rules' answer stands.
NOTE_AFFIRMS = "note_affirms"
OBJECTIONS = ("off_question", "quote_not_about_patient", "quote_not_a_denial", "quote_denies", "quote_affirms",
              "quote_names_both_sexes", "number_not_read", "not_the_order")


def value_in_quote(a: Answer, q: Question) -> bool:
    """A numeric answer must be a number its quote writes ("Hgb 9.8" for 9.8); a boolean has no number."""
    if q.kind == "boolean" or a.value is None:
        return True
    return number_in(a.value, a.source or "")


def checked(a: Answer, q: Question, pieces: list[tuple[int, int, int]], note_text: str) -> Answer:
    """A model answer with its span in the note, and an error when its number is not in its quote."""
    a = to_note(a, pieces, note_text).model_copy(update={"method": "model"})
    if a.error is None and not value_in_quote(a, q):
        # The schema allows any number of the passages; one its own quote does not write is no evidence.
        a = a.model_copy(update={"error": f"not_in_quote: {a.value:g} is not written in the quote", "value": None})
    if a.error is None and not unit_fits(a, q):
        # "Hgb A1c 6.4 %" for hemoglobin in g/dL: a number of another quantity, never a reading of this one.
        a = a.model_copy(update={"error": f"unit: {a.unit} is not a unit of {q.unit}", "value": None})
    return a


def unit_fits(a: Answer, q: Question) -> bool:
    """A numeric answer's unit must convert to the question's (no unit written is the question's own)."""
    if q.kind == "boolean" or a.value is None or not a.unit or not q.unit:
        return True
    from crit.grammar import units

    return units.convert(a.value, a.unit, q.unit, units.analyte_of(q.phrase, q.aka)) is not None


def objection(q: Question, label: str | None, value: float | None, span: tuple[int, int], note_text: str,
              passages: Sequence[Passage]) -> str | None:
    """Why the rules, reading only the passage(s) a quote lies in, do not support this answer; None when
    they do. `label` is a boolean's answer ("present"/"absent"), `value` a numeric's; `span` the
    quote's place in the note. One check for the engine (a model answer replacing the rules') and
    the trainer (a teacher's label, crit.trainer.verify)."""
    quoted = [p for p in passages if p.start <= span[0] and span[1] <= p.end]
    if not quoted:
        return "off_question"
    reading = decide(q, note_text, quoted, reach=QUOTE_REACH)
    if q.kind == "boolean":
        if reading["label"] == "not mentioned":
            # Only family history, a hypothetical or a hedge ("It is unknown whether ... diabetes").
            return "quote_not_about_patient" if label == "present" else "quote_not_a_denial"
        if q.phrase == SEX_PHRASE and not reading["confident"]:
            # "He comes in today with his daughter", "his mother says she ...": the passage is about two
            # people, and nothing in it says which one is the patient.
            return "quote_names_both_sexes"
        plain = reading["reading"] in PLAIN_READINGS
        if label == "present" and reading["label"] == "absent" and plain:
            return "quote_denies"
        if label == "absent" and reading["label"] == "present" and plain:
            return "quote_affirms"
        return None
    if value is None or not any(abs(c.value - value) < 1e-9 for c in reading.get("candidates") or ()):
        return "number_not_read"  # "BUN was 22, creatinine normal" writes no creatinine
    if q.order in ("highest", "lowest") and abs(reading["value"] - value) > 1e-9:
        return "not_the_order"  # "decreased from 8.1 to 2.3": the highest the quote writes is 8.1
    return None
