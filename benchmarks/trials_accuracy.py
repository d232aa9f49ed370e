"""Accuracy on the many-trials benchmark (tests/trials), per trial and per split, with bootstrap CIs.

    python benchmarks/trials_accuracy.py                           # the rules alone, dev trials only
    python benchmarks/trials_accuracy.py --split dev --misses      # what to look at while tuning
    python benchmarks/trials_accuracy.py --split test              # report only: never tune on it
    python benchmarks/trials_accuracy.py --answerers rules,default --split both
    python benchmarks/trials_accuracy.py --backend llamacpp --policy model --split both

The split is by trial and fixed in tests/trials/README.md: copd, oncology and stroke are test. The
default split is dev, and --misses refuses the test split, so a tuning session never sees a test
miss by accident.

Answerers (--answerers, as benchmarks/gold_accuracy.py): rules (the reader alone), engine,
gate+model, default (the embedded model under `crit run`'s default policy). --backend NAME
[--policy P] instead runs any registered backend under any policy, as `crit run` would.

Columns, per trial and pooled per split:
- answer accuracy: booleans exact, numerics within 5 % in the label's unit, NA included;
- boolean BA: balanced accuracy over present / absent / not mentioned;
- numeric within 5 %: over numeric questions, null labels included (null must be answered null);
- NA recall: of the labels "not mentioned" / null, the share answered so;
- stated precision: of the answers that state something (present, absent, a number), the share
  right; and the same for the stated answers the answerer marked sure.
CIs are 95 % percentile bootstrap intervals that resample whole notes (1,000 draws, seed 0), since
one note's answers are not independent of one another.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from gold_accuracy import ENGINES, answerers, label_of, right

from crit.engine.answers import Answer
from crit.engine.eligibility import load_plan
from crit.grammar.questions import BOOLEAN_CHOICES
from crit.trainer import metrics

ROOT = Path(__file__).resolve().parent.parent
TRIALS = ROOT / "tests" / "trials"
TEST_TRIALS = ("copd", "oncology", "stroke")  # fixed in tests/trials/README.md before labelling
NA = (None, "not mentioned")
Row = dict


def split_of(trial: str) -> str:
    return "test" if trial in TEST_TRIALS else "dev"


def trial_names() -> list[str]:
    return sorted(p.parent.name for p in TRIALS.glob("*/labels.jsonl"))


def _stated(p: object) -> bool:
    return p not in NA and p != "error" and p != float("inf")


def metric_fns() -> dict[str, Callable[[list[Row]], float | None]]:
    def mean(xs: list[bool]) -> float | None:
        return sum(xs) / len(xs) if xs else None

    def boolean_ba(rows: list[Row]) -> float | None:
        b = [r for r in rows if r["kind"] == "boolean"]
        return metrics.balanced_accuracy([r["gold"] for r in b], [r["pred"] for r in b], labels=BOOLEAN_CHOICES) if b else None

    return {
        "answer accuracy": lambda rows: mean([right(r["gold"], r["pred"]) for r in rows]),
        "boolean BA": boolean_ba,
        "numeric within 5%": lambda rows: mean([right(r["gold"], r["pred"]) for r in rows if r["kind"] == "numeric"]),
        "NA recall": lambda rows: mean([r["pred"] in NA for r in rows if r["gold"] in NA]),
        "stated precision": lambda rows: mean([right(r["gold"], r["pred"]) for r in rows if _stated(r["pred"])]),
        "sure precision": lambda rows: mean([right(r["gold"], r["pred"]) for r in rows if _stated(r["pred"]) and r["sure"]]),
    }


def cell(fn: Callable[[list[Row]], float | None], rows: list[Row], n: int = 1000) -> str:
    value = fn(rows)
    if value is None:
        return "-"
    by_note: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        by_note.setdefault((r["trial"], r["note_id"]), []).append(r)
    groups = list(by_note.values())
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(n):
        picked = [row for i in rng.integers(0, len(groups), len(groups)) for row in groups[i]]
        v = fn(picked)
        if v is not None:
            draws.append(v)
    lo, hi = (np.percentile(draws, [2.5, 97.5]) if draws else (value, value))
    return f"{value:.3f} [{lo:.2f}-{hi:.2f}]"


def counts(rows: list[Row]) -> str:
    stated = [r for r in rows if _stated(r["pred"])]
    return f"{len(rows)} / {len(stated)} / {sum(r['sure'] for r in stated)}"


def load_trial(name: str) -> tuple[object, dict[str, str], list[dict]]:
    folder = TRIALS / name
    plan = load_plan(str(folder / "trial.crit"))
    notes = {json.loads(x)["note_id"]: json.loads(x)["text"] for x in (folder / "notes.jsonl").open()}
    labels = [json.loads(x) for x in (folder / "labels.jsonl").open()]
    return plan, notes, labels


def backend_answerer(name: str, policy: str | None, model: str | None = None, trust: str | None = None) -> Callable:
    """A backend under a policy, as `crit run` would answer (with `trust`: that trust profile file, "none", or
    None for the profile crit ships for the model); the model starts only if a question needs it."""
    from crit.engine.answering import DEFAULT_POLICY
    from crit.engine.answering.policy import EvidenceEngine
    from crit.engine.answering.registry import factory_for, require
    from crit.engine.answering.trust import profile_for

    factory = factory_for(name, **({"model": model} if model else {}))
    require(factory)
    profile = None if name == "rules" else profile_for(factory.identity(), trust)
    engine = EvidenceEngine(start_model=None if name == "rules" else factory.create, policy=policy or DEFAULT_POLICY,
                            trust=profile)
    ENGINES[f"{name}/{policy or 'default'}"] = engine
    return lambda nid, text, qs: engine.answer(nid, text, qs)[0]


def scored(trial: str, split: Callable[[str], str], labels: list[dict], questions: dict,
           by_key: dict[tuple[str, str], Answer]) -> list[Row]:
    """One row per label: the gold answer, the answer given (as the label writes it) and how it was reached."""
    rows = []
    for g in labels:
        q = questions[g["question"]]
        a = by_key.get((g["note_id"], g["question"]))
        gold = g["answer"] if q.kind == "boolean" or g["answer"] is None else float(g["answer"])
        rows.append({"trial": trial, "split": split(g["note_id"]), "note_id": g["note_id"], "question": q.name,
                     "kind": q.kind, "gold": gold, "pred": label_of(a, q, g["unit"]),
                     "sure": bool(a and a.confident and a.method in ("rules", "gate")),
                     "method": a.method if a else None, "reading": a.reading if a else None,
                     "source": (a.source or "")[:100] if a else "",
                     "gold_source": (g.get("source") or "")[:100]})
    return rows


def compare(backend: str, adapter: str | None, trust_files: list[str], trials: dict, with_gold: bool,
            infer: bool = False, model: str | None = None, split: str = "both") -> dict[str, list[Row]]:
    """One pass of a model beside the rules (EvidenceEngine.compare_batch), scored as several answerers: the rules
    alone, the model alone (it answers every question a passage mentions, as --policy model), and the model
    under each trust profile (it decides only in the cells the profile trusts; elsewhere the rules do)."""
    from crit.engine.answering.backend import Request
    from crit.engine.answering.policy import EvidenceEngine, decided
    from crit.engine.answering.registry import factory_for, require
    from crit.engine.answering.trust import load_profile
    from crit.trainer.evaluate import gold_split

    factory = factory_for(backend, **({"adapter": adapter} if adapter else {}), **({"model": model} if model else {}))
    require(factory)
    model_name = f"{backend}{'+' + Path(adapter).name if adapter else ''}{' ' + Path(model).stem if model else ''}"
    profiles = {f"{model_name} + trust ({Path(f).name})": load_profile(f) for f in trust_files}
    engine = EvidenceEngine(start_model=factory.create, policy="model", infer=infer)
    sets = [(t, (lambda nid, t=t: split_of(t)), *trials[t]) for t in trials]
    if with_gold:
        gold = ROOT / "tests" / "gold"
        plan = load_plan(str(ROOT / "criteria" / "aristotle.crit"))
        notes = {json.loads(x)["note_id"]: json.loads(x)["text"] for x in (gold / "notes.jsonl").open()}
        labels = [g for g in (json.loads(x) for x in (gold / "aristotle_gold.jsonl").open())
                  if split == "both" or gold_split(g["note_id"]) == split]
        sets.append(("gold", gold_split, plan, notes, labels))
    rows: dict[str, list[Row]] = {"rules": [], f"{model_name} alone": [], **{who: [] for who in profiles}}
    t0 = time.perf_counter()
    for trial, split, plan, notes, labels in sets:
        questions = {q.name: q for q in plan.questions}
        wanted = {g["note_id"] for g in labels}
        keyed: dict[str, dict[tuple[str, str], Answer]] = {who: {} for who in rows}
        for nid, text in notes.items():
            if nid not in wanted:
                continue
            (pairs,) = engine.compare_batch([Request(nid, text, list(questions.values()))])
            for name, (rules, model) in pairs.items():
                q = questions[name]
                keyed["rules"][(nid, name)] = rules
                # Alone, as --policy model: the model's answer, even an error; an inference only as a run takes it.
                alone = rules if model is None else decided(model, rules) if model.method == "model-inferred" else model
                keyed[f"{model_name} alone"][(nid, name)] = alone
                for who, profile in profiles.items():
                    decides = model is not None and profile.decides(q.kind, rules.reading) and (
                        model.method != "model-inferred" or q.infer or infer)
                    keyed[who][(nid, name)] = decided(model, rules) if decides else rules  # type: ignore[arg-type]
        for who in rows:
            rows[who] += scored(trial, split, labels, questions, keyed[who])
        print(f"{trial}: done at {time.perf_counter() - t0:.0f} s ({engine.model_questions} questions asked so far)",
              file=sys.stderr)
    engine.close()
    return rows


def print_by_reading(who: str, rows: list[Row]) -> None:
    """Per split and reading class: answers, stated answers, and the precision of the stated ones, with CIs.
    A class the reader marks sure must be measured at least 0.97 precise on dev (SURE_READINGS)."""
    from crit.engine.reading.reader import SURE_READINGS

    stated_precision = metric_fns()["stated precision"]
    print("\n| answerer | split | reading class | sure | answers | stated | stated precision |")
    print("|---|---|---|---|---|---|---|")
    for split in ("dev", "test"):
        part = [r for r in rows if r["split"] == split]
        for reading in sorted({r["reading"] for r in part}, key=lambda x: (x is None, str(x))):
            cls = [r for r in part if r["reading"] == reading]
            stated = sum(_stated(r["pred"]) for r in cls)
            sure = "yes" if reading in SURE_READINGS else "no"
            print(f"| {who} | {split} | {reading} | {sure} | {len(cls)} | {stated} | {cell(stated_precision, cls)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--answerers", default="rules")
    ap.add_argument("--backend", help="run this registered backend (crit run --backend) instead of --answerers")
    ap.add_argument("--policy", help="with --backend: the answering policy (crit run --policy)")
    ap.add_argument("--split", choices=["dev", "test", "both"], default="dev")
    ap.add_argument("--trials", help="comma-separated trial names (default: every labelled trial of the split)")
    ap.add_argument("--misses", action="store_true", help="list every wrong answer (dev trials only)")
    ap.add_argument("--save", help="write every scored answer to this JSONL file")
    ap.add_argument("--compare", metavar="BACKEND",
                    help="one pass of BACKEND beside the rules, scored as the rules, the model alone and the model "
                         "under each --trust profile")
    ap.add_argument("--adapter", help="with --compare: a LoRA adapter ('student' for the shipped student)")
    ap.add_argument("--model", help="with --compare or --backend: the backend's model (a .gguf file for llamacpp)")
    ap.add_argument("--trust", action="append", default=[],
                    help="with --compare: a trust profile file (repeatable); with --backend: the one profile to run under")
    ap.add_argument("--gold", action="store_true", help="with --compare: tests/gold too, split by note as always")
    ap.add_argument("--infer", action="store_true", help="with --compare: the model also reads whole notes for the "
                    "boolean questions no passage names (crit run --infer)")
    ap.add_argument("--by-reading", action="store_true",
                    help="the precision of each reading class of the rules (how crit.engine.reading.reader read it)")
    args = ap.parse_args()
    if args.misses and args.split != "dev":
        sys.exit("--misses lists dev misses only: the test trials are never read while tuning")

    names = args.trials.split(",") if args.trials else trial_names()
    names = [n for n in names if args.split == "both" or split_of(n) == args.split]
    if not names:
        sys.exit(f"no labelled trial in split {args.split} (tests/trials/*/labels.jsonl)")
    trials = {n: load_trial(n) for n in names}
    fns = metric_fns()
    table: list[tuple[str, str, str, dict[str, str]]] = []
    saved: list[Row] = []
    if args.compare:
        for who, rows in compare(args.compare, args.adapter, args.trust, trials, args.gold, args.infer, args.model,
                                 args.split).items():
            saved.extend({"answerer": who, **r} for r in rows)
            for place, split in (("trials", "dev"), ("trials", "test"), ("gold", "dev"), ("gold", "test")):
                part = [r for r in rows if r["split"] == split and (r["trial"] == "gold") == (place == "gold")]
                if part:
                    table.append((who, split, f"**{place} {split}**", {"labels / stated / sure": counts(part)}
                                  | {k: cell(f, part) for k, f in fns.items()}))
            if args.by_reading:
                print_by_reading(who, rows)
        _print_table(table)
        if args.save:
            Path(args.save).write_text("".join(json.dumps(r) + "\n" for r in saved))
        return
    trust_file = args.trust[0] if args.trust else None
    chosen = ({f"{args.backend}/{args.policy or 'default'}": backend_answerer(args.backend, args.policy, args.model,
                                                                            trust_file)}
              if args.backend else answerers(args.answerers.split(",")))
    for who, answer in chosen.items():
        rows: list[Row] = []
        t0 = time.perf_counter()
        n_notes = 0
        for trial, (plan, notes, labels) in trials.items():
            questions = {q.name: q for q in plan.questions}
            by_key: dict[tuple[str, str], Answer] = {}
            for nid, text in notes.items():
                n_notes += 1
                for a in answer(nid, text, list(questions.values())):
                    by_key[(nid, a.question)] = a
            rows += scored(trial, lambda nid, trial=trial: split_of(trial), labels, questions, by_key)
        seconds = time.perf_counter() - t0
        print(f"{who}: {seconds:.1f} s over {n_notes} notes ({n_notes / seconds:.1f} notes/s)", file=sys.stderr)
        if who in ENGINES:
            print(f"{who}: {ENGINES[who].model_questions} questions asked of the model", file=sys.stderr)
        saved.extend({"answerer": who, **r} for r in rows)
        for trial in names:
            part = [r for r in rows if r["trial"] == trial]
            table.append((who, split_of(trial), trial, {"labels / stated / sure": counts(part)}
                          | {k: cell(f, part) for k, f in fns.items()}))
        for split in ("dev", "test"):
            part = [r for r in rows if r["split"] == split]
            if part:
                table.append((who, split, f"**all {split}**", {"labels / stated / sure": counts(part)}
                              | {k: cell(f, part) for k, f in fns.items()}))
        if args.by_reading:
            print_by_reading(who, rows)
        if args.misses:
            for r in rows:
                if not right(r["gold"], r["pred"]):
                    how = f"{r['method']}, {'sure' if r['sure'] else 'unsure'}"
                    print(f"  miss {r['trial']} {r['note_id']} {r['question']}: gold {r['gold']!r} "
                          f"{r['gold_source']!r}, answered {r['pred']!r} ({how}) {r['source']!r}")

    _print_table(table)
    if args.save:
        Path(args.save).write_text("".join(json.dumps(r) + "\n" for r in saved))


def _print_table(table: list[tuple[str, str, str, dict[str, str]]]) -> None:
    cols = list(table[0][3])
    print("\n| answerer | split | trial | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for who, split, trial, cells in table:
        print(f"| {who} | {split} | {trial} | " + " | ".join(cells[c] for c in cols) + " |")


if __name__ == "__main__":
    main()
