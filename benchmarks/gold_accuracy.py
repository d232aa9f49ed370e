"""Accuracy on tests/gold, one row per answerer, dev and test splits apart, with bootstrap 95% CIs.

    python benchmarks/gold_accuracy.py                       # rules only (no model: seconds)
    python benchmarks/gold_accuracy.py --answerers rules,engine,gate+model,default
    python benchmarks/gold_accuracy.py --split dev --misses  # what to look at while tuning

Answerers:
- rules:      crit's rules backend alone (crit.engine.reading.reader);
- engine:     the embedded model over the whole note, every question asked (the engine
              before evidence-first, as `crit run --no-gate --backend transformers`);
- gate+model: no passage -> "not mentioned"; else the model over the passages only;
- default:    what `crit run` does by default (crit.engine.answering.policy).

Columns: answer accuracy (booleans exact, numerics within 5%, "not mentioned" and null
included), boolean balanced accuracy (present / absent / not mentioned, pooled), numeric
within 5%, recall of "not mentioned" / null gold answers, and the share of non-NA answers
whose quote is verbatim in the note. Numeric answers are compared in the gold label's unit
(or the question's), converted by crit's unit table. The split is crit.trainer.evaluate.gold_split
(a third of the notes by a stable hash of note_id): tune on dev only.
Also prints gate recall: the share of gold answers with a quote whose span lies inside one of
the question's passages, and every miss.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from crit.engine.answers import Answer
from crit.engine.eligibility import load_plan
from crit.engine.reading.passages import evidence_for
from crit.grammar.questions import BOOLEAN_CHOICES, Question
from crit.trainer import metrics
from crit.trainer.evaluate import gold_split
from crit.trainer.labels import label_of, right  # noqa: F401  (trials_accuracy and student_overrides take them from here)

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "tests" / "gold"

Answerer = Callable[[str, str, Sequence[Question]], list[Answer]]


def _ci(fn: Callable[[list, list], float | None], g: list, p: list) -> str:
    value = fn(g, p)
    if value is None:
        return "-"
    ci = metrics.bootstrap_ci(fn, g, p, n=1000, seed=0)
    return f"{value:.3f} [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else f"{value:.3f}"


def score(rows: list[dict]) -> dict[str, str]:
    """The table's cells for one answerer over one split."""
    acc = [(r["gold"], r["pred"]) for r in rows]
    boo = [(r["gold"], r["pred"]) for r in rows if r["kind"] == "boolean"]
    num = [(r["gold"], r["pred"]) for r in rows if r["kind"] == "numeric"]
    na = [(r["gold"], r["pred"]) for r in rows if r["gold"] in (None, "not mentioned")]
    stated = [(r["grounded"], True) for r in rows if r["pred"] not in (None, "not mentioned", "error", float("inf"))]

    def accuracy(g: list, p: list) -> float | None:
        return sum(right(a, b) for a, b in zip(g, p)) / len(g) if g else None

    def balanced(g: list, p: list) -> float | None:
        return metrics.balanced_accuracy(g, p, labels=BOOLEAN_CHOICES)

    def within(g: list, p: list) -> float | None:
        return accuracy(g, p)

    def na_recall(g: list, p: list) -> float | None:
        return sum(b in (None, "not mentioned") for b in p) / len(p) if p else None

    def grounded(g: list, p: list) -> float | None:
        return sum(bool(a) for a in g) / len(g) if g else None

    def cols(pairs: list[tuple]) -> tuple[list, list]:
        return [a for a, _ in pairs], [b for _, b in pairs]

    return {
        "answers": str(len(rows)),
        "answer accuracy": _ci(accuracy, *cols(acc)),
        "boolean BA": _ci(balanced, *cols(boo)),
        "numeric within 5%": _ci(within, *cols(num)),
        "NA recall": _ci(na_recall, *cols(na)),
        "grounded (non-NA)": _ci(grounded, *cols(stated)),
    }


def gate_recall(notes: dict[str, str], gold: list[dict], questions: dict[str, Question], split: str,
                split_of: Callable[[str], str] = gold_split) -> None:
    with_quote = [g for g in gold if g["span_start"] is not None and (split == "both" or split_of(g["note_id"]) == split)]
    misses = []
    for g in with_quote:
        passages = evidence_for(notes[g["note_id"]], [questions[g["question"]]])[g["question"]]
        if not any(p.start <= g["span_start"] and g["span_end"] <= p.end for p in passages):
            inside_any = any(p.start < g["span_end"] and g["span_start"] < p.end for p in passages)
            misses.append((g["note_id"], g["question"], g["source"], "overlaps a passage" if inside_any else "no passage"))
    n = len(with_quote)
    print(f"\ngate recall ({split}): {n - len(misses)}/{n} = {(n - len(misses)) / n:.3f} of gold quotes lie inside a passage")
    for m in misses:
        print("  miss:", *m)


_MODEL = None
ADAPTER: str | None = None  # --adapter: a LoRA adapter on the embedded model (None: the raw model, crit run's default)


def _model():
    """The embedded model's transformers backend (with --adapter), loaded once."""
    global _MODEL
    if _MODEL is None:
        from crit.engine.answering.backends.transformers import TransformersFactory

        _MODEL = TransformersFactory(adapter=ADAPTER).create()
    return _MODEL


ENGINES: dict = {}  # answerer name -> its EvidenceEngine, for what it asked and what was overruled


def answerers(names: list[str]) -> dict[str, Answerer]:
    from crit.engine.answering.backends.rules import RulesBackend

    out: dict[str, Answerer] = {}
    for name in names:
        if name == "rules":
            out[name] = RulesBackend().answer
        elif name == "engine":
            out[name] = _model().answer
        elif name in ("gate+model", "default"):
            from crit.engine.answering.policy import EvidenceEngine

            engine = EvidenceEngine(_model(), policy="model" if name == "gate+model" else "rules-then-model")
            ENGINES[name] = engine
            out[name] = lambda nid, text, qs, engine=engine: engine.answer(nid, text, qs)[0]
        else:
            sys.exit(f"unknown answerer {name!r}: rules, engine, gate+model, default")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--answerers", default="rules")
    ap.add_argument("--split", choices=["dev", "test", "both"], default="both")
    ap.add_argument("--misses", action="store_true", help="list every wrong answer with its note id")
    ap.add_argument("--save", help="write every answer of every answerer to this JSONL file")
    ap.add_argument("--gold", type=Path, default=GOLD,
                    help="a folder with notes.jsonl and aristotle_gold.jsonl; other than tests/gold, every note "
                         "counts as split 'fresh' (tests/gold/fresh: labelled after tuning was frozen)")
    ap.add_argument("--adapter", help="run the model answerers with this LoRA adapter: 'student' (the shipped "
                    "student) or a folder (e.g. build/ablation/all); default the raw model, as crit run")
    args = ap.parse_args()
    global ADAPTER
    ADAPTER = args.adapter
    fresh = args.gold.resolve() != GOLD.resolve()
    split_of = (lambda nid: "fresh") if fresh else gold_split
    if fresh:
        args.split = "fresh"

    plan = load_plan(str(ROOT / "criteria" / "aristotle.crit"))
    notes = {json.loads(x)["note_id"]: json.loads(x)["text"] for x in (args.gold / "notes.jsonl").open()}
    gold = [json.loads(x) for x in (args.gold / "aristotle_gold.jsonl").open()]
    names = list(dict.fromkeys(g["question"] for g in gold))
    questions = {n: plan.question(n) for n in names}
    splits = ["dev", "test"] if args.split == "both" else [args.split]
    wanted = {nid for nid in notes if args.split == "both" or split_of(nid) == args.split}

    table: list[tuple[str, str, dict[str, str]]] = []
    saved = []
    for name, answer in answerers(args.answerers.split(",")).items():
        t0 = time.perf_counter()
        by_key: dict[tuple[str, str], Answer] = {}
        for nid in sorted(wanted):
            for a in answer(nid, notes[nid], [questions[n] for n in names]):
                by_key[(nid, a.question)] = a
        seconds = time.perf_counter() - t0
        rows = []
        for g in gold:
            if g["note_id"] not in wanted:
                continue
            q = questions[g["question"]]
            a = by_key.get((g["note_id"], g["question"]))
            pred = label_of(a, q, g["unit"])
            gval = g["answer"] if q.kind == "boolean" or g["answer"] is None else float(g["answer"])
            rows.append({"split": split_of(g["note_id"]), "kind": q.kind, "gold": gval, "pred": pred,
                         "grounded": bool(a and a.grounded), "note_id": g["note_id"], "question": q.name,
                         "method": a.method if a else None, "sure": bool(a and a.confident),
                         "source": (a.source or "")[:90] if a else ""})
        saved.extend({"answerer": name, **r} for r in rows)
        methods = {m: sum(r["method"] == m for r in rows) for m in ("gate", "rules", "model")}
        print(f"{name}: {seconds:.1f} s over {len(wanted)} notes; answers by method {methods}", file=sys.stderr)
        if name in ENGINES:
            e = ENGINES[name]
            print(f"{name}: {e.model_questions} questions asked of the model; its answers the rules' reading of "
                  f"their quote refused: {dict(e.overruled)}", file=sys.stderr)
        for split in splits:
            table.append((name, split, score([r for r in rows if r["split"] == split])))
        if args.misses:
            for r in rows:
                if not right(r["gold"], r["pred"]):
                    # The default asks its model only where the rules are unsure: a sure rules miss is one
                    # no model behind them can mend.
                    how = f"rules, {'sure' if r['sure'] else 'unsure'}" if r["method"] == "rules" else r["method"]
                    print(f"  {name} miss [{r['split']}] {r['note_id']} {r['question']}: gold {r['gold']!r}, "
                          f"answered {r['pred']!r} ({how}) {r['source']!r}")

    cols = list(table[0][2])
    print("\n| answerer | split | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for name, split, cells in table:
        print(f"| {name} | {split} | " + " | ".join(cells[c] for c in cols) + " |")
    for split in splits:
        gate_recall(notes, gold, questions, split, split_of)
    if args.save:
        Path(args.save).write_text("".join(json.dumps(r) + "\n" for r in saved))


if __name__ == "__main__":
    main()
