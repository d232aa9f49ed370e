"""Any crit backend as teacher: it answers a `.crit` file's questions over notes, through the engine.

Task-targeted distillation. The teacher is asked exactly what the student will be asked:
the engine (crit.engine.answering.policy, policy "model") finds each question's passages, gates the
questions no passage mentions (the student never sees those), and sends the rest to the
teacher backend in the evidence layout. Each answer becomes a pair of the paper's four
types (a "not mentioned" or "not stated" answer is an NA pair), with the engine Question
stored beside it, so `crit select` writes the student's example in the same layout.

The teacher is any backend `crit run` takes: a local model folder (`--backend
transformers --model DIR`), a server that speaks the OpenAI API (`--backend openai
--base-url URL --model NAME`: vLLM, SGLang, llama.cpp), or vLLM in process. Answers that
failed validation or are not grounded in the note are dropped and counted, never stored.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from crit.engine.answering.backend import Request
from crit.engine.answering.policy import EvidenceEngine
from crit.engine.answers import Answer
from crit.grammar.questions import Question
from crit.trainer.synth import answer_text

TEACH_VERSION = "crit-teach-1"


def pair_of(a: Answer, q: Question, passages: int) -> tuple[dict[str, Any] | None, str | None]:
    """The pair fields of one teacher answer, or (None, why it is dropped)."""
    if a.error:
        return None, "invalid_answer"
    if a.na or a.value is None:
        kind, answer, source, start, end, unit = f"na-{q.kind}", None, "", None, None, None
    else:
        if not a.grounded or a.span_start is None:
            return None, "not_grounded"
        kind = q.kind
        if q.kind == "boolean":
            answer = "present" if a.value == 1.0 else "absent"
        else:
            answer = answer_text(a.value)
        source, start, end, unit = a.source or "", a.span_start, a.span_end, a.unit
    fields = {"type": kind, "question": q.text, "answer": answer, "unit": unit, "source": source,
              "span_start": start, "span_end": end, "section": "", "explanation": f"teacher answer over {passages} passage(s)",
              "difficulty": min(10, 2 + passages), "question_json": q.model_dump_json()}
    return fields, None


def synth_from_backend(criteria: str, notes_path: str, factory: Any, db: str, limit: int | None = None,
                       columns: dict[str, str] | None = None) -> Any:
    """Ask the teacher (a backend factory, crit.engine.answering.registry) every gated-in question of
    `criteria` over the notes; store pairs in `db`. Notes already in `db` are skipped (a rerun resumes).

    Example (shell): ``crit synth notes.jsonl --backend openai --base-url http://127.0.0.1:8000/v1 --model m``
    """
    from crit.engine.eligibility import load_plan
    from crit.engine.store.trainer import open_db, store_note
    from crit.trainer.synth import SynthSummary, note_pairs

    t0 = time.perf_counter()
    plan = load_plan(criteria)
    notes, bad_rows = note_pairs(notes_path, columns)
    if limit is not None:
        notes = notes[:limit]
    teacher = f"{factory.identity()}|{TEACH_VERSION}"
    engine = EvidenceEngine(start_model=factory.create, policy="model")
    con = open_db(db)
    kept = new = skipped = 0
    dropped: Counter[str] = Counter({"bad_row": bad_rows} if bad_rows else {})
    try:
        done = {r[0] for r in con.execute("SELECT note_id FROM notes").fetchall()}
        for note_id, text in notes:
            if note_id in done:
                skipped += 1
                continue
            [(answers, evidence)] = engine.answer_batch([Request(note_id, text, plan.questions)])
            now = datetime.now(timezone.utc)
            rows, drops = [], []
            for q, a in zip(plan.questions, answers):
                if a.method == "gate":
                    continue  # no passage: the student is never asked this one
                fields, reason = pair_of(a, q, len(evidence[q.name]))
                if fields is None:
                    drops.append((q.kind, reason or "unknown", a.raw))
                    continue
                rows.append({"note_id": note_id, **fields, "teacher": teacher, "prompt_version": TEACH_VERSION,
                             "created_at": now})
            store_note(con, note_id, text, rows, drops, teacher, now, TEACH_VERSION)
            kept += len(rows)
            dropped.update(r for _, r, _ in drops)
            new += 1
    finally:
        con.close()
        engine.close()
    return SynthSummary(notes_seen=len(notes), notes_done=new, notes_skipped=skipped, pairs_kept=kept,
                        pairs_dropped=dict(dropped), seconds=round(time.perf_counter() - t0, 2))
