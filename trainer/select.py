"""Select training data from the synthetic pairs and export it in the engine's own chat format.

Data programming as in the paper: the hardest N pairs of each type by the teacher's
difficulty (ties broken by a hash, so the choice is deterministic), the same N for every
type so the types stay balanced. The split is 90/10 BY NOTE: every pair of a note goes
to the same side, chosen by a hash of the note id (the released code split by question
and leaked notes across the split).

Each example is the exact prompt the engine sends (crit.engine.prompts.messages) and,
as the assistant turn, the answer in the exact JSON the engine's schema asks for
(crit.engine.questions), so the student learns the format it is later constrained to.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from crit.grammar.errors import CritError
from crit.trainer.synth import PAIR_TYPES, PairType
from pydantic import BaseModel, ConfigDict, Field


class SelectConfig(BaseModel):
    """Settings of `select`."""

    model_config = ConfigDict(extra="forbid")

    db: str = Field(default="synth.duckdb", description="DuckDB file written by `crit synth`")
    out: str = Field(description="folder for train.jsonl, val.jsonl and select.json")
    per_type: int = Field(default=1000, ge=1, description="hardest N pairs kept per type")
    val_fraction: float = Field(default=0.1, gt=0, lt=1, description="share of NOTES held out for validation")
    types: tuple[PairType, ...] = PAIR_TYPES


class SelectSummary(BaseModel):
    train: int
    val: int
    per_type: dict[str, int]
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
    from crit.engine.questions import Question, boolean_schema, fingerprint, numeric_schema

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
    from crit.engine.prompts import messages

    q = pair_question(row["type"], row["question"], row["unit"])
    msgs = messages(note_text, q)
    msgs.append({"role": "assistant", "content": target_json(row["type"], row["answer"], row["unit"], row["source"])})
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
        cur = con.execute(
            "SELECT p.note_id, p.type, p.question, p.answer, p.unit, p.source, p.difficulty, n.text"
            " FROM pairs p JOIN notes n USING (note_id)"
        )
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    except duckdb.CatalogException:
        raise CritError(f"{cfg.db}: has no pairs/notes tables; is it a database written by `crit synth`?") from None
    finally:
        con.close()

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
    with (out / "train.jsonl").open("w", encoding="utf-8") as ftrain, (out / "val.jsonl").open("w", encoding="utf-8") as fval:
        for r in sorted(chosen, key=lambda r: (r["note_id"], r["type"], r["question"])):
            side = "val" if r["note_id"] in val_ids else "train"
            (fval if side == "val" else ftrain).write(json.dumps(example(r["text"], r), ensure_ascii=False) + "\n")
            counts[side] += 1
    summary = SelectSummary(
        train=counts["train"], val=counts["val"], per_type=per_type,
        train_notes=len(train_ids), val_notes=len(val_ids), out=str(out),
    )
    (out / "select.json").write_text(json.dumps({"config": cfg.model_dump(), "summary": summary.model_dump()}, indent=2))
    if counts["train"] == 0:
        raise CritError(f"{cfg.db}: no pairs to train on (the teacher's pairs were all dropped, or the db is empty)")
    return summary
