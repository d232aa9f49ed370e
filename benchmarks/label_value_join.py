"""What evidence-2's label/value join changes: the rules' answers over every MTSamples note, with the
join (crit.engine.reading.passages._join_label_values) on and switched off, for criteria/aristotle.crit.

    python benchmarks/label_value_join.py [../shared/data/mtsamples.jsonl]

Prints how many answers differ and each one (note id, question, both answers); no note text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import crit.engine.reading.passages as evidence
from crit.engine.answering.backends.rules import RulesBackend
from crit.engine.eligibility import load_plan

ROOT = Path(__file__).resolve().parent.parent


def rules_answers(rows: list[dict], questions: list) -> dict[tuple[str, str], tuple[bool, float | None]]:
    backend = RulesBackend()
    out = {}
    for r in rows:
        found = evidence.evidence_for(r["text"], questions)
        for a in backend.answer(r["note_id"], r["text"], questions, found):
            out[(r["note_id"], a.question)] = (a.na, a.value)
    return out


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "mtsamples.jsonl"
    rows = [json.loads(line) for line in path.open()]
    questions = load_plan(str(ROOT / "criteria" / "aristotle.crit")).questions
    joined = rules_answers(rows, questions)
    join = evidence._join_label_values
    evidence._join_label_values = lambda text, spans: spans  # evidence-1: every line apart
    try:
        apart = rules_answers(rows, questions)
    finally:
        evidence._join_label_values = join
    changed = sorted(k for k in joined if joined[k] != apart[k])
    print(f"{len(rows)} notes, {len(joined)} rules answers; {len(changed)} differ with the join")
    for k in changed:
        print(f"  {k[0]} {k[1]}: apart {apart[k]} -> joined {joined[k]}")


if __name__ == "__main__":
    main()
