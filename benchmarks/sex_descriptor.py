"""What rules-2's sex descriptor changes: the rules' answer to the built-in sex question over every
MTSamples note, with the descriptor ("a 62-year-old male", crit.engine.reading.reader._DESCRIBED) on
and switched off.

    python benchmarks/sex_descriptor.py [../shared/data/mtsamples.jsonl]

Prints how many answers differ in label or in certainty, and each label that changed (note id,
title, both answers, the descriptor that decided); no other note text.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import crit.engine.reading.reader as rules
from crit.engine.eligibility import load_plan
from crit.engine.reading.passages import find_passages

ROOT = Path(__file__).resolve().parent.parent


def sex_answers(rows: list[dict]) -> dict[str, dict]:
    question = load_plan(str(ROOT / "criteria" / "aristotle.crit")).question("sex")
    return {r["note_id"]: rules.decide(question, r["text"], find_passages(r["text"], question)) for r in rows}


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "mtsamples.jsonl"
    rows = [json.loads(line) for line in path.open()]
    with_descriptor = sex_answers(rows)
    described = rules._DESCRIBED
    rules._DESCRIBED = re.compile(r"(?!)")  # rules-1: passages counted, whatever they describe
    try:
        counted = sex_answers(rows)
    finally:
        rules._DESCRIBED = described
    mentioned = [k for k in counted if counted[k]["label"] != "not mentioned"]
    unsure = [k for k in mentioned if not counted[k]["confident"]]
    relabelled = [k for k in mentioned if counted[k]["label"] != with_descriptor[k]["label"]]
    now_sure = [k for k in unsure if with_descriptor[k]["confident"]]
    print(f"{len(rows)} notes, {len(mentioned)} with a sex word; the passages disagree in {len(unsure)}; "
          f"the descriptor decides {len(now_sure)} of those and changes the label of {len(relabelled)}")
    titles = {r["note_id"]: r.get("title", "") for r in rows}
    for k in relabelled:
        a, b = with_descriptor[k], counted[k]
        print(f"  {k} ({titles[k]}): {b['label']} -> {a['label']}, "
              f"by {described.search(a['source']).group(0)!r}")


if __name__ == "__main__":
    main()
