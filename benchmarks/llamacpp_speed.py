"""The embedded model through llama.cpp (GGUF, quantised) against the transformers backend, in one run.

Both backends answer the same questions over the same whole notes (no passages, no gate: every
question is asked of the model), greedy and constrained to each question's schema. Reported per
backend: seconds per question (model loading excluded, every prefill and compilation included),
generated tokens per second, and how many answers agree between the two. Not a test; run nothing
else meanwhile (2 cores):

    python benchmarks/llamacpp_speed.py --notes 2 --questions 8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crit.engine.answering.backends.llamacpp import LlamaCppFactory
from crit.engine.answering.backends.transformers import TransformersFactory
from crit.engine.answers import Answer
from crit.engine.eligibility import load_plan

ROOT = Path(__file__).resolve().parents[1]
NOTES = ROOT / ".." / "shared" / "data" / "mtsamples.jsonl"
NOTE_IDS = ("mts-2626", "mts-2231", "mts-2286")  # the notes of engine_speed.py: 1,050-1,450 prompt tokens


def read_notes(path: Path, n: int) -> list[tuple[str, str]]:
    wanted = NOTE_IDS[:n]
    found: dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["note_id"] in wanted:
                found[row["note_id"]] = row["text"]
    return [(nid, found[nid]) for nid in wanted if nid in found]


def label(a: Answer) -> object:
    if a.error is not None:
        return "error"
    return "na" if a.na else a.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=2)
    parser.add_argument("--questions", type=int, default=8, help="the first N questions of criteria/aristotle.crit")
    args = parser.parse_args()
    notes = read_notes(NOTES, args.notes)
    questions = load_plan(ROOT / "criteria" / "aristotle.crit").questions[: args.questions]
    results: dict[str, list[Answer]] = {}
    rows = []
    for name, factory in (("transformers", TransformersFactory()), ("llamacpp", LlamaCppFactory())):
        t0 = time.perf_counter()
        backend = factory.create()
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        answers = [a for note_id, text in notes for a in backend.answer(note_id, text, questions)]
        seconds = time.perf_counter() - t0
        backend.close()
        tokens = sum(a.output_tokens for a in answers)
        results[name] = answers
        rows.append((name, load_s, seconds / len(answers), tokens / seconds if seconds else 0.0,
                     sum(a.error is None for a in answers), len(answers)))
    table = Table(title=f"{len(notes)} notes x {len(questions)} questions, embedded SmolLM2-135M-Instruct")
    for col in ("backend", "load s", "s/question", "generated tok/s", "valid", "answers"):
        table.add_column(col)
    for name, load_s, per_q, tps, valid, n in rows:
        table.add_row(name, f"{load_s:.1f}", f"{per_q:.2f}", f"{tps:.1f}", str(valid), str(n))
    Console().print(table)
    base = rows[0][2]
    same = sum(label(a) == label(b) for a, b in zip(results["transformers"], results["llamacpp"]))
    print(f"llamacpp / transformers, s/question: {rows[1][2] / base:.2f}x; answers that agree: {same}/{len(results['llamacpp'])}")


if __name__ == "__main__":
    main()
