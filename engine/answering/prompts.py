"""Prompts: the chat messages that ask one question of one note.

The note comes first and the question last, and the system message is the same
for every question, so all questions of a note share one token prefix: a backend
computes that prefix once (KV cache) and reuses it. Any change of wording here
must bump PROMPT_VERSION in crit.grammar.questions, which is part of every
question fingerprint, so stored answers to the old wording are not reused.
"""

from __future__ import annotations

from crit.grammar.questions import SOURCE_MAX_CHARS, Question, is_evidence_layout

SYSTEM = (
    "You read one clinical note and answer one question about it, in JSON.\n"
    "Answer only from what the note says; never guess and never use outside knowledge.\n"
    f"\"source\" is a short quote (at most {SOURCE_MAX_CHARS} characters) copied word for word from the note "
    "that supports the answer; leave it empty if the note says nothing about the question.\n"
    "Yes/no questions: \"present\" if the note documents it, \"absent\" if the note says it is absent "
    "or denied, \"not mentioned\" if the note does not say.\n"
    "Number questions: \"stated\" with the number and the unit exactly as the note writes them, "
    "even when the question names another unit (never convert), or "
    "\"not stated\" with answer null if the note gives no value."
)


# Evidence first (crit.engine.answering.policy): the model reads a note's passages, one per line, and
# its answer schema (questions.evidence_schema) lets it quote only one of them.
EVIDENCE_SYSTEM = (
    "You read passages from one clinical note, one per line, and answer one question about the patient, in JSON.\n"
    "First \"source\": copy word for word the one passage that answers the question, or \"\" if none does.\n"
    "Then answer from that passage only; never guess and never use outside knowledge.\n"
    "Yes/no questions: \"present\" if the passage documents it for the patient, \"absent\" if it says the "
    "patient does not have it or denies it, \"not mentioned\" if it does not say.\n"
    "Number questions: \"stated\" with the number and the unit exactly as the passage writes them, "
    "even when the question names another unit (never convert), or "
    "\"not stated\" with answer null if it gives no value."
)


def user_message(note_text: str, question: Question) -> str:
    """The note, then the question with its guide (last, so the note is a shared prefix).

    What every question needs to be told is in SYSTEM, not here: the text after the note
    is run through the model once per question, the text before it once per note."""
    label = "PASSAGES" if is_evidence_layout(question.answer_schema) else "NOTE"
    parts = [f"{label}:\n{note_text}\n\nQUESTION: {question.text}"]
    if question.guide:
        parts.append(question.guide)
    return "\n".join(parts)


def messages(note_text: str, question: Question) -> list[dict[str, str]]:
    """Chat messages (system, user) for one question about one note."""
    system = EVIDENCE_SYSTEM if is_evidence_layout(question.answer_schema) else SYSTEM
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": user_message(note_text, question)},
    ]
