"""Speed of crit's engines against the naive way, on the same notes and questions, in one run.

naive: a fresh outlines Generator per question (its constraint compiled anew), the full
       prompt prefilled every time, no cache: `model.generate` under outlines' processor.
crit:  TransformersBackend: constraints compiled once per process, the note prefix prefilled
       once and its KV cache reused, a note's questions decoded together in batches, the
       JSON layout's literals fed as whole tokens and only the values decoded.
evidence: the default engine of `crit run` (crit.engine.answering.policy): passages found per question,
       the gate answers what no passage mentions, the rules answer the rest, and the same
       transformers backend is asked only where the rules are not sure, over the passages.
naive and crit use the embedded model, greedy decoding, the same prompts and the same constraint
(crit.engine.answering.constraints.generation_regex). The answers can differ: naive decodes
the literals too, and a small model picks other tokens for them, so the script reports how
many parsed answers agree. Timings are wall clock, in seconds per question, including every
prefill and compilation (amortised).

Run (not part of the test suite; run nothing else meanwhile, the machine has 2 cores):

    python benchmarks/engine_speed.py --notes 3 --questions 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crit.engine.answering.constraints import generation_regex
from crit.engine.answers import ParsedAnswer, parse_answer
from crit.grammar.questions import Question, make_question

DEFAULT_NOTES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mtsamples.jsonl"
# Notes measured in NOTES-engine.md, prompts 1050-1450 tokens.
DEFAULT_NOTE_IDS = ("mts-2626", "mts-2231", "mts-2286")

QUESTION_POOL = [
    make_question("hgb", "numeric", "hemoglobin", order="lowest", unit="g/dL", aka=("Hb", "Hgb")),
    make_question("af", "boolean", "atrial fibrillation or atrial flutter"),
    make_question("creat", "numeric", "creatinine", order="highest", unit="mg/dL", aka=("Cr",)),
    make_question("dm", "boolean", "diabetes mellitus", aka=("diabetes",)),
    make_question("age", "numeric", "age", unit="years"),
    make_question("htn", "boolean", "hypertension"),
    make_question("hr", "numeric", "heart rate", order="highest", unit="beats per minute", aka=("pulse",)),
    make_question("stroke", "boolean", "a prior stroke or transient ischemic attack"),
    make_question("wt", "numeric", "weight", order="last", unit="kg"),
    make_question("smoke", "boolean", "current tobacco smoking"),
    make_question("plt", "numeric", "platelet count", order="lowest", unit="10^3/uL"),
    make_question("hf", "boolean", "heart failure"),
]


def read_notes(path: Path, n: int) -> list[tuple[str, str]]:
    rows = {}
    with path.open() as f:
        for line in f:
            row = json.loads(line)
            rows[row["note_id"]] = row["text"]
    ids = [i for i in DEFAULT_NOTE_IDS if i in rows] + [i for i in rows if i not in DEFAULT_NOTE_IDS]
    return [(i, rows[i]) for i in ids[:n]]


def verdict(a: ParsedAnswer) -> tuple:
    """What an answer decides: its value, unit and NA flag (not the quote)."""
    return (a.value, a.unit, a.na, a.error is None)


def run_naive(loaded, notes, questions: list[Question], max_new_tokens: int) -> tuple[float, list[tuple], int]:
    import outlines

    from crit.engine.answering.prompts import messages

    om = outlines.from_transformers(loaded.model, loaded.tokenizer)
    raws, valid = [], 0
    t = time.perf_counter()
    for _, text in notes:
        for q in questions:
            gen = outlines.Generator(om, outlines.regex(generation_regex(q.answer_schema)))
            raw = gen(outlines.inputs.Chat(messages(text, q)), max_new_tokens=max_new_tokens)
            parsed = parse_answer(raw, q, text)
            raws.append(verdict(parsed))
            valid += parsed.error is None
    return time.perf_counter() - t, raws, valid


def run_crit(loaded, notes, questions, max_new_tokens: int, batch_size: int) -> tuple[float, list[tuple], int]:
    from crit.engine.answering.backends.transformers import TransformersBackend

    backend = TransformersBackend(loaded, batch_size=batch_size, max_new_tokens=max_new_tokens)
    raws, valid = [], 0
    t = time.perf_counter()
    for note_id, text in notes:
        for a in backend.answer(note_id, text, questions):
            raws.append(verdict(a))
            valid += a.error is None
    return time.perf_counter() - t, raws, valid


def run_evidence(loaded, notes, questions, max_new_tokens: int, batch_size: int) -> tuple[float, list[tuple], int, dict]:
    from crit.engine.answering.backends.transformers import TransformersBackend
    from crit.engine.answering.policy import EvidenceEngine

    engine = EvidenceEngine(TransformersBackend(loaded, batch_size=batch_size, max_new_tokens=max_new_tokens))
    raws, valid, methods = [], 0, {}
    t = time.perf_counter()
    for note_id, text in notes:
        answers, _ = engine.answer(note_id, text, questions)
        for a in answers:
            raws.append(verdict(a))
            valid += a.error is None
            methods[a.method] = methods.get(a.method, 0) + 1
    return time.perf_counter() - t, raws, valid, methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=int, default=3, help="number of notes (default 3)")
    parser.add_argument("--questions", type=int, default=10, help="questions per note, half numeric (default 10)")
    parser.add_argument("--notes-file", type=Path, default=DEFAULT_NOTES, help="JSONL with note_id and text")
    parser.add_argument("--batch-size", type=int, default=10, help="crit's batch size (default 10)")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    args = parser.parse_args()

    from crit.engine.answering.model import load_model

    console = Console()
    notes = read_notes(args.notes_file, args.notes)
    questions = QUESTION_POOL[: args.questions]
    loaded = load_model()
    n = len(notes) * len(questions)
    console.print(f"{len(notes)} notes x {len(questions)} questions = {n} answers; model {loaded.identity}")

    naive_s, naive_raw, naive_ok = run_naive(loaded, notes, questions, args.max_new_tokens)
    crit_s, crit_raw, crit_ok = run_crit(loaded, notes, questions, args.max_new_tokens, args.batch_size)
    ev_s, ev_raw, ev_ok, methods = run_evidence(loaded, notes, questions, args.max_new_tokens, args.batch_size)

    table = Table(title="engine speed (wall clock, amortised over all answers)")
    for col in ("mode", "total s", "s/question", "valid answers", "speed-up"):
        table.add_column(col, justify="right" if col != "mode" else "left")
    table.add_row("naive: Generator per question", f"{naive_s:.1f}", f"{naive_s / n:.2f}", f"{naive_ok}/{n}", "1.0x")
    table.add_row(
        f"crit: cached, prefix KV, batch {args.batch_size}", f"{crit_s:.1f}", f"{crit_s / n:.2f}", f"{crit_ok}/{n}",
        f"{naive_s / crit_s:.1f}x",
    )
    table.add_row(
        "evidence: gate, rules, model where unsure", f"{ev_s:.2f}", f"{ev_s / n:.3f}", f"{ev_ok}/{n}",
        f"{naive_s / ev_s:.1f}x",
    )
    console.print(table)
    same = sum(a == b for a, b in zip(naive_raw, crit_raw))
    console.print(f"same answer (value, unit, NA, valid) from naive and crit: {same}/{n}")
    console.print(f"evidence engine answers by method: {methods}; {naive_s / ev_s:.1f}x naive, {crit_s / ev_s:.1f}x crit")


if __name__ == "__main__":
    main()
