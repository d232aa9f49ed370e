"""Select training data from the synthetic pairs and export it in the engine's own chat format.

Data programming as in the paper: the hardest N pairs of each type by the teacher's
difficulty (ties broken by a hash, so the choice is deterministic), the same N for every
type so the types stay balanced. The split is 90/10 BY NOTE: every pair of a note goes
to the same side, chosen by a hash of the note id (the released code split by question
and leaked notes across the split).

Each example is the exact prompt the engine sends (crit.engine.answering.prompts.messages) and,
as the assistant turn, the answer in the exact JSON the engine's schema asks for
(crit.grammar.questions), so the student learns the format it is later constrained to.

Two layouts (`layout`):
- "evidence" (the default: what `crit run` asks, crit.engine.answering.policy). A pair that carries its
  engine Question (the programmatic teacher's, or a backend teacher's: `question_json`) is
  written exactly as the engine asks it: the passages the engine finds, the schema over them,
  and as the answer the passage holding the pair's quote, then the label. Other pairs (a
  model teacher's free questions) read a few sentences of the note, one per line, the one
  holding the quote among them and the others distractors from the same note.
- "note": the whole note and the whole-note schema (the engine before evidence-first).

Before any choice, the label check (crit.trainer.verify) reads every pair's quote; `verify`
says whether its objections drop the pair (a model teacher's) or are only counted (the
programmatic teacher's, right by construction).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crit.engine.options import CommandOptions
from crit.grammar.errors import CritError
from crit.trainer.synth import PAIR_TYPES, PairType


class SelectConfig(CommandOptions):
    """Settings of `select`."""

    model_config = ConfigDict(extra="forbid")

    db: str = Field(default="synth.duckdb", description="DuckDB file written by `crit synth`")
    out: str = Field(description="folder for train.jsonl, val.jsonl and select.json")
    per_type: int = Field(default=1000, ge=1, description="hardest N pairs kept per type")
    val_fraction: float = Field(default=0.1, gt=0, lt=1, description="share of NOTES held out for validation")
    types: tuple[PairType, ...] = PAIR_TYPES
    layout: Literal["evidence", "note"] = Field(default="evidence", description="what the student reads (module docstring)")
    distractors: int = Field(default=3, ge=0, le=12, description="evidence layout: other sentences of the note shown")
    verify: Literal["auto", "on", "off"] = Field(
        default="auto", description="the label check (crit.trainer.verify): auto = on for a model teacher's pairs, "
        "off for the programmatic teacher's, whose labels hold by construction (its disagreements are still counted)")
    quote: bool = Field(default=True, description="False: targets carry no supporting quote (the paper's no-S ablation)")


class SelectSummary(BaseModel):
    train: int
    val: int
    per_type: dict[str, int]
    dropped: dict[str, int] = {}  # by the label check, by reason
    disagreements: dict[str, int] = {}  # the label check's objections to pairs kept by construction
    train_notes: int
    val_notes: int
    out: str


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def split_notes(note_ids: list[str], val_fraction: float) -> tuple[set[str], set[str]]:
    """(train, val) note ids: notes ranked by the hash of their id, the first share to val.

    Deterministic and independent of input order; with two or more notes, at least one is
    held out, and at least one is kept for training.
    """
    ranked = sorted(set(note_ids), key=_hash)
    if len(ranked) < 2:
        return set(ranked), set()
    n_val = min(max(1, round(val_fraction * len(ranked))), len(ranked) - 1)
    return set(ranked[n_val:]), set(ranked[:n_val])


def pair_question(kind: str, text: str, unit: str | None) -> Any:
    """The engine Question that asks a synthetic pair's question, with the engine's answer schema."""
    from crit.grammar.questions import Question, boolean_schema, fingerprint, numeric_schema

    numeric = kind in ("numeric", "na-numeric")
    schema = numeric_schema() if numeric else boolean_schema()
    return Question(
        name="synth",
        kind="numeric" if numeric else "boolean",
        phrase=text,
        text=text,
        unit=unit if numeric else None,
        answer_schema=schema,
        fingerprint=fingerprint(text, None, schema),
    )


def target_json(kind: str, answer: str | None, unit: str | None, source: str) -> str:
    """The assistant turn: the answer as the engine's schema writes it (keys in schema order)."""
    if kind == "boolean":
        obj: dict[str, Any] = {"answer": answer, "source": source}
    elif kind == "na-boolean":
        obj = {"answer": "not mentioned", "source": ""}
    elif kind == "numeric":
        value = float(answer) if answer is not None else None
        if value is not None and value.is_integer():
            value = int(value)
        obj = {"status": "stated", "answer": value, "unit": unit, "source": source}
    else:
        obj = {"status": "not stated", "answer": None, "unit": None, "source": ""}
    return json.dumps(obj, ensure_ascii=False)


def example(note_text: str, row: dict[str, Any]) -> dict[str, Any]:
    """One chat-format training example for a stored pair."""
    from crit.engine.answering.prompts import messages

    q = pair_question(row["type"], row["question"], row["unit"])
    msgs = messages(note_text, q)
    msgs.append({"role": "assistant", "content": target_json(row["type"], row["answer"], row["unit"], row["source"])})
    return {"messages": msgs, "note_id": row["note_id"], "type": row["type"]}


def evidence_example(note_text: str, row: dict[str, Any], distractors: int = 3) -> dict[str, Any]:
    """One training example in the engine's evidence layout (module docstring). Deterministic: the
    distractor sentences are chosen by a hash of the note and question."""
    import random

    from crit.engine.answering.prompts import messages
    from crit.engine.answering.view import evidence_view, over_passages
    from crit.engine.reading.passages import Passage, sentences

    spans = sentences(note_text)
    source = row["source"] or ""
    start = note_text.find(source) if source else -1
    holding = [s for s in spans if start >= 0 and s[0] <= start and start + len(source) <= s[1]]
    rng = random.Random(_hash(row["note_id"] + "\x00" + row["question"]))
    others = [s for s in spans if s not in holding]
    shown = sorted(holding[:1] + rng.sample(others, min(distractors, len(others))))
    passages = [Passage(start=a, end=b, term="", term_start=a, term_end=a) for a, b in shown]
    view, _ = evidence_view(note_text, passages)
    quotes = [note_text[a:b] for a, b in shown]
    q = over_passages(pair_question(row["type"], row["question"], row["unit"]), quotes)
    quote = note_text[holding[0][0]:holding[0][1]] if holding and row["type"] in ("boolean", "numeric") else ""
    target = json.loads(target_json(row["type"], row["answer"], row["unit"], quote))
    target = {"source": target.pop("source"), **target}  # the quote first, as evidence_schema orders it
    msgs = messages(view, q)
    msgs.append({"role": "assistant", "content": json.dumps(target, ensure_ascii=False)})
    return {"messages": msgs, "note_id": row["note_id"], "type": row["type"]}


def engine_example(note_text: str, row: dict[str, Any], quote: bool = True) -> dict[str, Any] | None:
    """One example exactly as `crit run` asks the pair's engine question (row["question_json"]): the
    passages the engine finds, the schema over them (crit.engine.answering.policy.model_request), and as the
    answer the passage holding the pair's quote, then the label. None when the engine could not
    answer it this way (the quote is not among the passages the schema offers)."""
    from crit.engine.answering.prompts import messages
    from crit.engine.answering.view import model_request
    from crit.engine.reading.passages import find_passages
    from crit.trainer.verify import question_of

    q = question_of(row)
    assert q is not None
    passages = find_passages(note_text, q)
    if not passages:
        return None
    view, _, asked = model_request(note_text, [q], {q.name: passages})
    schema = asked[0].answer_schema["properties"]
    source = ""
    if row["span_start"] is not None:
        holding = [p for p in passages if p.start <= row["span_start"] and row["span_end"] <= p.end]
        if not holding:
            return None
        source = holding[0].text(note_text)
    target = json.loads(target_json(row["type"], row["answer"], row["unit"], source if quote else ""))
    if source not in schema["source"]["enum"] or ("answer" in schema and "enum" in schema["answer"]
                                                   and target["answer"] not in schema["answer"]["enum"]):
        return None
    ordered = {k: target[k] for k in schema}
    msgs = messages(view, asked[0])
    msgs.append({"role": "assistant", "content": json.dumps(ordered, ensure_ascii=False)})
    return {"messages": msgs, "note_id": row["note_id"], "type": row["type"]}


def select(cfg: SelectConfig) -> SelectSummary:
    """Pick the hardest pairs per type, split by note, write train.jsonl and val.jsonl.

    Example (shell): ``crit select --db synth.duckdb --out data/ --per-type 500``
    """
    import duckdb

    if not Path(cfg.db).is_file():
        raise CritError(f"{cfg.db}: no such synth database; run `crit synth` first")
    con = duckdb.connect(cfg.db, read_only=True)
    try:
        has_question = "question_json" in {r[0] for r in con.execute("DESCRIBE pairs").fetchall()}
        cur = con.execute(
            "SELECT p.note_id, p.type, p.question, p.answer, p.unit, p.source, p.span_start, p.span_end,"
            f" p.difficulty, p.teacher, {'p.question_json' if has_question else 'NULL AS question_json'}, n.text"
            " FROM pairs p JOIN notes n USING (note_id)"
        )
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    except duckdb.CatalogException:
        raise CritError(f"{cfg.db}: has no pairs/notes tables; is it a database written by `crit synth`?") from None
    finally:
        con.close()

    # The label check, before any choice, so a dropped pair never takes a place.
    from crit.trainer.verify import check_label

    dropped: dict[str, int] = {}
    disagreements: dict[str, int] = {}
    checked = []
    for r in rows:
        reason = check_label(r, r["text"]) if cfg.verify != "off" else None
        by_construction = str(r["teacher"]).startswith("programmatic@")
        if reason is not None and (cfg.verify == "on" or not by_construction):
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        if reason is not None:
            disagreements[reason] = disagreements.get(reason, 0) + 1
        checked.append(r)
    rows = checked

    chosen: list[dict[str, Any]] = []
    per_type: dict[str, int] = {}
    available = {t: [r for r in rows if r["type"] == t] for t in cfg.types}
    # Balanced: every type gets the same count, bounded by the scarcest non-empty type.
    nonempty = [len(v) for v in available.values() if v]
    n = min([cfg.per_type, *nonempty]) if nonempty else 0
    for t, items in available.items():
        items.sort(key=lambda r: (-r["difficulty"], _hash(r["note_id"] + "\x00" + r["question"])))
        per_type[t] = len(items[:n])
        chosen.extend(items[:n])

    train_ids, val_ids = split_notes([r["note_id"] for r in chosen], cfg.val_fraction)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "val": 0}
    unfit = 0
    with (out / "train.jsonl").open("w", encoding="utf-8") as ftrain, (out / "val.jsonl").open("w", encoding="utf-8") as fval:
        for r in sorted(chosen, key=lambda r: (r["note_id"], r["type"], r["question"])):
            side = "val" if r["note_id"] in val_ids else "train"
            if cfg.layout == "note":
                ex = example(r["text"], r)
            elif r["question_json"]:
                ex = engine_example(r["text"], r, cfg.quote)
            else:
                ex = evidence_example(r["text"], r, cfg.distractors)
            if ex is None:
                unfit += 1
                continue
            (fval if side == "val" else ftrain).write(json.dumps(ex, ensure_ascii=False) + "\n")
            counts[side] += 1
    summary = SelectSummary(
        train=counts["train"], val=counts["val"], per_type=per_type,
        train_notes=len(train_ids), val_notes=len(val_ids), out=str(out),
        dropped={**dropped, **({"not_in_engine_schema": unfit} if unfit else {})}, disagreements=disagreements,
    )
    (out / "select.json").write_text(json.dumps({"config": cfg.model_dump(), "summary": summary.model_dump()}, indent=2))
    if counts["train"] == 0:
        raise CritError(f"{cfg.db}: no pairs to train on (the teacher's pairs were all dropped, or the db is empty)")
    return summary
