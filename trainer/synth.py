"""Synthetic training data: a teacher model writes question/answer pairs about each note.

For every note the teacher writes pairs of four types, one constrained generation per
type (outlines, a JSON schema with bounded strings):

- ``boolean``: a yes/no question the note answers ("present" or "absent");
- ``numeric``: a question whose answer is a number the note states (with its unit);
- ``na-boolean`` / ``na-numeric``: a question of that kind the note does NOT answer
  (answer null, empty source), so the student learns to say "not mentioned".

Each pair carries the section it comes from, a verbatim source quote, an explanation
and a difficulty from 1 to 10. Pairs are checked before they are stored; a pair is
dropped, and counted by reason, when its source is not verbatim in the note, its answer
does not fit its type, or its question repeats another question of the same note.
Everything goes to DuckDB (``pairs``, ``dropped``, ``notes``); a note already done is
skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crit.engine.options import CommandOptions
from crit.engine.reading.reader import number_in
from crit.grammar.questions import SOURCE_MAX_CHARS, UNIT_MAX_CHARS  # the engine's own answer bounds

PairType = Literal["boolean", "numeric", "na-boolean", "na-numeric"]
PAIR_TYPES: tuple[PairType, ...] = ("boolean", "numeric", "na-boolean", "na-numeric")

# Bump when the teacher's instructions or the pair schema change: stored with every pair.
SYNTH_PROMPT_VERSION = "crit-synth-1"

QUESTION_MAX_CHARS = 120
SECTION_MAX_CHARS = 40
EXPLANATION_MAX_CHARS = 160

TEACHER_SYSTEM = (
    "You write exam questions that test whether a reader understood one clinical note.\n"
    "Write one question of the kind asked, its answer from the note, the note section it comes from, "
    "a short quote copied word for word from the note that supports the answer, a one-sentence "
    "explanation, and a difficulty from 1 (trivial) to 10 (needs careful reading)."
)

TYPE_INSTRUCTIONS: dict[PairType, str] = {
    "boolean": 'Kind: a yes/no question about a condition, finding or treatment. Answer "present" if the note '
    'documents it, "absent" if the note says it is absent or denied.',
    "numeric": "Kind: a question whose answer is one number stated in the note (a lab value, vital sign, age, "
    "dose or score). Give the number and its unit as written.",
    "na-boolean": "Kind: a yes/no question about a condition that this note does NOT mention at all. "
    "The answer is null and the source is empty.",
    "na-numeric": "Kind: a question about a number (a lab value or measurement) that this note does NOT state. "
    "The answer is null and the source is empty.",
}


class SynthConfig(CommandOptions):
    """Settings of `synth`; defaults follow the paper's recipe scaled to the embedded model."""

    model_config = ConfigDict(extra="forbid")

    notes: str = Field(description="notes: JSONL/CSV/Parquet with note_id and text, or a folder of .txt (crit.engine.notes)")
    db: str = Field(default="synth.duckdb", description="DuckDB file the pairs are stored in")
    teacher: str | None = Field(default=None, description="teacher model folder; None = embedded SmolLM2-135M")
    device: str = "auto"
    limit: int | None = Field(default=None, description="at most this many notes (in file order)")
    types: tuple[PairType, ...] = PAIR_TYPES
    max_new_tokens: int = Field(default=256, description="generation limit per pair; the schema bounds keep pairs below it")
    max_note_chars: int = Field(default=6000, description="longer notes are skipped (counted), not cut")
    columns: dict[str, str] = Field(default_factory=dict, description="id_column / text_column of the notes table")


class Pair(BaseModel):
    """One validated question/answer pair, as stored."""

    model_config = ConfigDict(extra="forbid")

    note_id: str
    type: PairType
    question: str
    answer: str | None  # "present"/"absent", a number as text, or None for na-* types
    unit: str | None
    source: str
    span_start: int | None
    span_end: int | None
    section: str
    explanation: str
    difficulty: int
    teacher: str
    prompt_version: str
    created_at: datetime
    # The engine Question the pair asks, when the teacher asked one from a .crit file: the
    # trainer then writes the example exactly as the engine asks it (crit.trainer.select).
    question_json: str | None = None


class SynthSummary(BaseModel):
    """What a `synth` run did."""

    notes_seen: int
    notes_done: int  # newly processed in this run
    notes_skipped: int  # already in the db (resumed) or too long
    pairs_kept: int
    pairs_dropped: dict[str, int]
    seconds: float


def pair_schema(kind: PairType) -> dict[str, Any]:
    """JSON schema the teacher generates under for one pair of `kind`.

    The answer's JSON type is constrained per kind where the schema can say it; the same
    checks run again in `check_pair`, which also guards teachers without constrained
    decoding. Every field is required so the key order is fixed (NOTES-engine.md).
    """
    answer: dict[str, Any]
    if kind == "boolean":
        answer = {"type": "string", "enum": ["present", "absent"]}
    elif kind == "numeric":
        answer = {"type": "number"}
    else:
        answer = {"type": "null"}
    props: dict[str, Any] = {
        "section": {"type": "string", "maxLength": SECTION_MAX_CHARS},
        "question": {"type": "string", "minLength": 8, "maxLength": QUESTION_MAX_CHARS},
        "answer": answer,
    }
    if kind == "numeric":
        props["unit"] = {"anyOf": [{"type": "string", "maxLength": UNIT_MAX_CHARS}, {"type": "null"}]}
    props["source"] = {"type": "string", "maxLength": SOURCE_MAX_CHARS}
    props["explanation"] = {"type": "string", "maxLength": EXPLANATION_MAX_CHARS}
    # An enum of integers, not minimum/maximum: outlines does not enforce numeric bounds.
    props["difficulty"] = {"type": "integer", "enum": list(range(1, 11))}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def teacher_messages(note_text: str, kind: PairType) -> list[dict[str, str]]:
    """Chat messages asking the teacher for one pair of `kind` about the note."""
    return [
        {"role": "system", "content": TEACHER_SYSTEM},
        {"role": "user", "content": f"NOTE:\n{note_text}\n\n{TYPE_INSTRUCTIONS[kind]}"},
    ]


def normalise_question(text: str) -> str:
    """Question text folded for duplicate detection: lower case, letters and digits only."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def check_pair(data: Any, kind: PairType, note_text: str) -> tuple[dict[str, Any] | None, str | None]:
    """Validate one generated pair. Returns (fields, None) when kept, (None, reason) when dropped.

    Reasons: invalid_json, schema, answer_type, source_not_verbatim, na_with_source,
    numeric_not_in_source, empty_question. (Duplicates are found by the caller, per note.)
    """
    if not isinstance(data, dict):
        return None, "invalid_json"
    import jsonschema

    try:
        jsonschema.validate(data, pair_schema(kind))
    except jsonschema.ValidationError:
        # Tell a wrongly typed answer from any other schema break: it is its own reason.
        if "answer" in data and not answer_fits(data["answer"], kind):
            return None, "answer_type"
        return None, "schema"
    if not answer_fits(data["answer"], kind):
        return None, "answer_type"
    question = data["question"].strip()
    if not normalise_question(question):
        return None, "empty_question"
    source = data["source"]
    span_start = span_end = None
    if kind.startswith("na-"):
        # Nothing in the note supports an unanswerable question, so nothing may be quoted.
        if source.strip():
            return None, "na_with_source"
        source = ""
    else:
        start = note_text.find(source) if source.strip() else -1
        if start < 0:
            return None, "source_not_verbatim"
        span_start, span_end = start, start + len(source)
        if kind == "numeric" and not number_in(float(data["answer"]), source):
            return None, "numeric_not_in_source"
    answer = data["answer"]
    if kind == "numeric":
        answer = answer_text(float(answer))
    unit = data.get("unit")
    unit = unit.strip() or None if isinstance(unit, str) else None
    return {
        "question": question,
        "answer": answer,
        "unit": unit,
        "source": source,
        "span_start": span_start,
        "span_end": span_end,
        "section": data["section"].strip(),
        "explanation": data["explanation"].strip(),
        "difficulty": int(data["difficulty"]),
    }, None


def answer_text(value: float) -> str:
    """A numeric answer as the pairs table stores it: "12" for 12.0, "1.4" for 1.4."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def answer_fits(answer: Any, kind: PairType) -> bool:
    if kind == "boolean":
        return answer in ("present", "absent")
    if kind == "numeric":
        import math

        return isinstance(answer, (int, float)) and not isinstance(answer, bool) and math.isfinite(answer)
    return answer is None


def note_pairs(path: str, columns: dict[str, str] | None = None) -> tuple[list[tuple[str, str]], int]:
    """(note_id, text) pairs of every good note (any source crit.engine.notes reads, with the columns
    named in `columns`, crit.engine.notes.NoteColumns' fields), and the bad-row count."""
    from crit.engine.notes.columns import NoteColumns
    from crit.engine.notes.reader import read_notes

    notes, bad = read_notes(path, NoteColumns(**(columns or {})))
    return [(n.note_id, n.text) for n in notes], len(bad)


def synth(cfg: SynthConfig) -> SynthSummary:
    """Have the teacher write pairs for every note not yet in `cfg.db`; return what was done.

    Example (shell): ``crit synth notes.jsonl --db synth.duckdb --limit 20``
    """
    import outlines
    import torch
    from rich.progress import Progress

    from crit.engine.answering.constraints import generation_regex
    from crit.engine.answering.model import load_model
    from crit.engine.store.trainer import open_db, store_note

    t0 = time.perf_counter()
    notes, bad_rows = note_pairs(cfg.notes, cfg.columns)
    if cfg.limit is not None:
        notes = notes[: cfg.limit]
    loaded = load_model(cfg.teacher, None, cfg.device)
    om = outlines.from_transformers(loaded.model, loaded.tokenizer)
    # generation_regex bounds numbers to 7 digits (the model otherwise writes runaway digits).
    generators = {k: outlines.Generator(om, outlines.regex(generation_regex(pair_schema(k)))) for k in cfg.types}

    con = open_db(cfg.db)
    done = {r[0] for r in con.execute("SELECT note_id FROM notes").fetchall()}
    kept = 0
    dropped: Counter[str] = Counter({"bad_row": bad_rows} if bad_rows else {})
    new = skipped = 0
    with Progress(transient=True) as progress:
        task = progress.add_task("synth", total=len(notes))
        for note_id, text in notes:
            progress.advance(task)
            if note_id in done:
                skipped += 1
                continue
            if len(text) > cfg.max_note_chars:
                skipped += 1
                dropped["note_too_long"] += 1
                continue
            now = datetime.now(timezone.utc)
            rows: list[dict[str, Any]] = []
            drops: list[tuple[str, str, str]] = []
            seen: set[str] = set()
            for kind in cfg.types:
                with torch.inference_mode():
                    raw = generators[kind](
                        outlines.inputs.Chat(teacher_messages(text, kind)),
                        max_new_tokens=cfg.max_new_tokens,
                        do_sample=False,
                    )
                try:
                    data = json.loads(raw)
                except json.JSONDecodeError:
                    data = None
                fields, reason = check_pair(data, kind, text)
                if fields is not None:
                    key = normalise_question(fields["question"])
                    if key in seen:
                        fields, reason = None, "duplicate_question"
                    seen.add(key)
                if fields is None:
                    drops.append((kind, reason or "unknown", raw))
                    continue
                rows.append(
                    Pair(
                        note_id=note_id, type=kind, teacher=loaded.identity,
                        prompt_version=SYNTH_PROMPT_VERSION, created_at=now, **fields,
                    ).model_dump()
                )
            store_note(con, note_id, text, rows, drops, loaded.identity, now, SYNTH_PROMPT_VERSION)
            kept += len(rows)
            dropped.update(reason for _, reason, _ in drops)
            new += 1
    con.close()
    return SynthSummary(
        notes_seen=len(notes),
        notes_done=new,
        notes_skipped=skipped,
        pairs_kept=kept,
        pairs_dropped=dict(dropped),
        seconds=round(time.perf_counter() - t0, 2),
    )
