"""Where the default with the student differs from the rules alone, on MTSamples notes outside the gold sets.

The default (crit.engine.answering.policy, policy rules-then-model) keeps a model answer only where the
rules are unsure and the model's quote passes their check; everywhere else its answer *is* the
rules'. So on any set of notes, the default beats the rules exactly when its kept model answers
are right more often than the rules' answers they replace. This script finds those answers;
a person then labels each one (tests/gold/overrides), and `--score` counts who was right.

    python benchmarks/student_overrides.py --notes 80 --out build/overrides.jsonl  # runs the student
    python benchmarks/student_overrides.py --score tests/gold/overrides/labels.jsonl --out build/overrides.jsonl

Notes: ../shared/data/mtsamples.jsonl less every note of tests/gold and tests/gold/fresh, kept
where the rules are unsure of at least one of the questions asked (--questions: the gold set's
ten by default), in order of a stable hash of note_id (sha256), the first --notes of them.
With --notes 5000 that is every such note: 180 of the 2,339 for the gold questions. The output
holds each kept model answer, the rules' answer it replaced, and the text around the model's
quote (for the person labelling it; MTSamples is public CC0 sample text).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from crit.engine.answers import Answer
from crit.engine.eligibility import load_plan
from crit.grammar.questions import Question

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from gold_accuracy import label_of, right  # noqa: E402  (a sibling script, not a package)

SHARED = ROOT.parent / "shared" / "data" / "mtsamples.jsonl"
GOLD = ROOT / "tests" / "gold"
# The gold set's ten questions, in its order.
QUESTIONS = tuple(dict.fromkeys(json.loads(x)["question"] for x in (GOLD / "aristotle_gold.jsonl").open()))


def questions(which: str = "gold") -> list[Question]:
    """The gold set's ten questions ("gold"), the file's other ones ("rest"), or every one ("all")."""
    plan = load_plan(str(ROOT / "criteria" / "aristotle.crit"))
    if which == "gold":
        return [plan.question(n) for n in QUESTIONS]
    return [q for q in plan.questions if which == "all" or q.name not in QUESTIONS]


def candidates(limit: int, asked: list[Question]) -> list[tuple[dict, dict[str, Answer]]]:
    """The notes to run, each with the rules' answers (by question) that made it one."""
    from crit.engine.answering.backends.rules import RulesBackend

    held = {json.loads(x)["note_id"] for f in (GOLD / "notes.jsonl", GOLD / "fresh" / "notes.jsonl") for x in f.open()}
    notes = [json.loads(x) for x in SHARED.open()]
    notes = sorted((n for n in notes if n["note_id"] not in held),
                   key=lambda n: hashlib.sha256(n["note_id"].encode()).hexdigest())
    rules, picked = RulesBackend(), []
    for n in notes:
        answers = rules.answer(n["note_id"], n["text"], asked)
        if any(not a.confident for a in answers):
            picked.append((n, {a.question: a for a in answers}))
            if len(picked) == limit:
                break
    return picked


def run(limit: int, out: Path, adapter: str, which: str) -> None:
    from crit.engine.answering.backends.transformers import TransformersFactory
    from crit.engine.answering.policy import EvidenceEngine

    asked = questions(which)
    notes = candidates(limit, asked)
    engine = EvidenceEngine(TransformersFactory(adapter=adapter).create())
    rows = []
    for n, by_rules in notes:
        final, _ = engine.answer(n["note_id"], n["text"], asked)
        for q, a in zip(asked, final):
            if a.method != "model":
                continue
            r = by_rules[q.name]
            lo, hi = max(0, (a.span_start or 0) - 300), (a.span_end or 0) + 300
            rows.append({"note_id": n["note_id"], "question": q.name, "kind": q.kind,
                         "student": label_of(a, q, None), "student_unit": a.unit, "quote": a.source,
                         "span_start": a.span_start, "span_end": a.span_end,
                         "rules": label_of(r, q, None), "rules_unit": r.unit, "rules_quote": r.source,
                         "context": n["text"][lo:hi]})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(notes)} notes where the rules are unsure; {engine.model_questions} questions asked of the model; "
          f"{len(rows)} model answers kept over the rules'; refused by the check: {dict(engine.overruled)}", file=sys.stderr)


def score(labels: Path, run_file: Path) -> None:
    """The kept model answers of a run, against the labels: who was right, the student or the rules.
    A kept answer equal to the rules' changes nothing either way, so only those that differ need a label."""
    gold = {(g["note_id"], g["question"]): g["answer"] for g in map(json.loads, labels.open())}
    kept = [json.loads(x) for x in run_file.open()]
    differ = [r for r in kept if r["rules"] != r["student"]]
    unlabelled = [r for r in differ if (r["note_id"], r["question"]) not in gold]
    rows = [r for r in differ if (r["note_id"], r["question"]) in gold]
    student = sum(right(gold[r["note_id"], r["question"]], r["student"]) for r in rows)
    rules = sum(right(gold[r["note_id"], r["question"]], r["rules"]) for r in rows)
    print(f"{len(kept)} kept model answers, {len(kept) - len(differ)} the same as the rules'; of the {len(rows)} "
          f"labelled that differ, the model right in {student}, the rules right in {rules}: the default "
          f"against the rules alone, {student - rules:+d} answers")
    for r in rows:
        g = gold[r["note_id"], r["question"]]
        s, u = right(g, r["student"]), right(g, r["rules"])
        print(f"  {r['note_id']} {r['question']}: gold {g!r}; student {r['student']!r} "
              f"{'right' if s else 'WRONG'}; rules {r['rules']!r} {'right' if u else 'wrong'}")
    for r in unlabelled:
        print(f"  unlabelled: {r['note_id']} {r['question']} (student {r['student']!r}, rules {r['rules']!r})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notes", type=int, default=80)
    ap.add_argument("--out", type=Path, default=Path("build/overrides.jsonl"))
    ap.add_argument("--adapter", default="student")
    ap.add_argument("--questions", choices=["gold", "rest", "all"], default="gold",
                    help="the gold set's ten ARISTOTLE questions, the other ones of criteria/aristotle.crit, or all")
    ap.add_argument("--score", type=Path, help="a labels file (tests/gold/overrides/labels.jsonl): count who was "
                    "right among the kept answers of --out, without running anything")
    args = ap.parse_args()
    if args.score:
        score(args.score, args.out)
    else:
        run(args.notes, args.out, args.adapter, args.questions)


if __name__ == "__main__":
    main()
