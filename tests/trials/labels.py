"""Check and complete a trial's hand labels: one line per (note, question), spans filled in.

    python tests/trials/labels.py tests/trials/ckd          # rewrites ckd/labels.jsonl in place

The labeller writes only the stated answers (present, absent, or a number), each with a verbatim
`source` quote, into `labels.jsonl`; any other line may be left out. This tool checks every line
(the note and the question exist, the answer fits the question's kind, the quote is in the note, a
numeric answer's digits are in its quote), fills `span_start`/`span_end` with the first occurrence
of the quote, adds a "not mentioned" / null line for every pair not stated, and writes the file
back sorted by note then question (in the trial file's order). It exits 1 listing every problem.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from crit.engine.eligibility import load_plan

KEYS = ("note_id", "question", "kind", "answer", "unit", "source", "span_start", "span_end", "reason")


def problems_and_rows(folder: Path) -> tuple[list[str], list[dict]]:
    plan = load_plan(str(folder / "trial.crit"))
    kinds = {q.name: q.kind for q in plan.questions}
    notes = {json.loads(x)["note_id"]: json.loads(x)["text"] for x in (folder / "notes.jsonl").open()}
    path = folder / "labels.jsonl"
    lines = [x for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    problems: list[str] = []
    stated: dict[tuple[str, str], dict] = {}
    for i, line in enumerate(lines, 1):
        where = f"{path}:{i}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{where}: not JSON ({e.msg})")
            continue
        nid, name, answer = row.get("note_id"), row.get("question"), row.get("answer")
        if nid not in notes:
            problems.append(f"{where}: no note {nid!r} in notes.jsonl")
            continue
        if name not in kinds:
            problems.append(f"{where}: no question {name!r} in trial.crit (has {', '.join(kinds)})")
            continue
        if answer in (None, "not mentioned"):
            continue
        kind = kinds[name]
        if kind == "boolean" and answer not in ("present", "absent"):
            problems.append(f"{where}: {name} is boolean: answer present, absent or not mentioned, not {answer!r}")
            continue
        if kind == "numeric" and (isinstance(answer, bool) or not isinstance(answer, int | float)):
            problems.append(f"{where}: {name} is numeric: answer a number or null, not {answer!r}")
            continue
        source = row.get("source") or ""
        start = notes[nid].find(source) if source else -1
        if start < 0:
            problems.append(f"{where}: the quote is not verbatim in {nid}: {source[:80]!r}")
            continue
        if kind == "numeric" and not _digits_in(answer, source) and not row.get("reason"):
            problems.append(f"{where}: {answer} is not written in its quote; give a `reason` if it is read "
                            f"(e.g. 126,000 platelets as 126)")
            continue
        if (nid, name) in stated:
            problems.append(f"{where}: a second label for {nid} {name}")
            continue
        stated[(nid, name)] = {"note_id": nid, "question": name, "kind": kind, "answer": answer,
                               "unit": row.get("unit"), "source": source, "span_start": start,
                               "span_end": start + len(source), "reason": row.get("reason")}
    rows = []
    for nid in notes:
        for name, kind in kinds.items():
            rows.append(stated.get((nid, name)) or {
                "note_id": nid, "question": name, "kind": kind,
                "answer": "not mentioned" if kind == "boolean" else None, "unit": None, "source": None,
                "span_start": None, "span_end": None, "reason": None})
    return problems, rows


def _digits_in(answer: float, source: str) -> bool:
    written = {float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*(?:\.\d+)?", source)}
    return float(answer) in written


def main(folder: str) -> int:
    problems, rows = problems_and_rows(Path(folder))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"{len(problems)} problem(s): labels.jsonl left as it is", file=sys.stderr)
        return 1
    text = "".join(json.dumps({k: r[k] for k in KEYS if r[k] is not None or k != "reason"}) + "\n" for r in rows)
    (Path(folder) / "labels.jsonl").write_text(text)
    stated = sum(r["source"] is not None for r in rows)
    print(f"{folder}: {len(rows)} labels, {stated} stated, {len(rows) - stated} not mentioned")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
