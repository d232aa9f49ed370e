"""Calibrate: measure, on labelled notes, where a model is right more often than the rules, and write the
trust profile `crit run` reads (crit.engine.answering.trust).

Each labelled set is a .crit file, its notes and labels in tests/gold's format (the trials benchmark's
labels.jsonl, tests/gold's aristotle_gold.jsonl, or the labels a reviewer exported from `crit report`).
Every labelled (note, question) pair with a passage is answered twice: by the rules, and by the model
over the same passages (what `crit run` would show it). The model's answer counts as `crit run` would
take it where it decides (crit.engine.answering.policy.decided: else the rules' stands). Both are
scored against the label, and each cell (question kind x the rules' reading class) counts its wins and
losses. Pairs no passage mentions are the gate's, which no model is asked, and are not counted.

Calibrate on dev data only: tests/gold's dev notes and the trials benchmark's dev trials by default
(`default_sets`). Its test data stays for reporting what the profile does.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from crit.engine.answering.backend import Request
from crit.engine.answering.policy import EvidenceEngine, decided
from crit.engine.answering.registry import BackendFactory, require
from crit.engine.answering.trust import ALPHA, TrustProfile, cell
from crit.engine.eligibility import load_plan
from crit.engine.notes.reader import read_notes
from crit.engine.reading.passages import EVIDENCE_VERSION
from crit.engine.reading.reader import READER_VERSION
from crit.grammar.errors import CritError
from crit.trainer.evaluate import gold_split, read_gold
from crit.trainer.labels import label_of, right

# The trials benchmark's test trials (tests/trials/README.md): never calibrated on.
TEST_TRIALS = ("copd", "oncology", "stroke")


class LabelledSet(BaseModel):
    """A .crit file, its notes and its labels; `note_ids` keeps only those notes (a split)."""

    model_config = ConfigDict(frozen=True)

    name: str
    criteria: Path
    notes: str  # any source `crit run` reads
    labels: Path
    note_ids: frozenset[str] | None = None


class Outcome(BaseModel):
    """One labelled pair the model was asked: who was right, and the cell it counts in."""

    set: str
    note_id: str
    question: str
    kind: str
    reading: str
    gold: str | float | None
    rules: str | float | None
    model: str | float | None  # the model's answer as the run would take it (the rules' where it may not decide)
    model_right: bool
    rules_right: bool


def default_sets(root: Path) -> list[LabelledSet]:
    """tests/gold's dev notes and the trials benchmark's dev trials, from crit's repository at `root`."""
    gold, trials = root / "tests" / "gold", root / "tests" / "trials"
    if not (gold / "aristotle_gold.jsonl").is_file() or not trials.is_dir():
        raise CritError(f"no tests/gold or tests/trials under '{root}': run crit calibrate in crit's repository, or "
                        "name labelled sets with --set CRITERIA NOTES LABELS")
    dev_notes = frozenset(label.note_id for label in read_gold(str(gold / "aristotle_gold.jsonl"))
                          if gold_split(label.note_id) == "dev")
    sets = [LabelledSet(name="tests/gold dev", criteria=root / "criteria" / "aristotle.crit",
                        notes=str(gold / "notes.jsonl"), labels=gold / "aristotle_gold.jsonl", note_ids=dev_notes)]
    for folder in sorted(p for p in trials.iterdir() if (p / "labels.jsonl").is_file()):
        if folder.name not in TEST_TRIALS:
            sets.append(LabelledSet(name=f"tests/trials {folder.name}", criteria=folder / "trial.crit",
                                    notes=str(folder / "notes.jsonl"), labels=folder / "labels.jsonl"))
    return sets


def calibrate(factory: BackendFactory, sets: list[LabelledSet], *, alpha: float = ALPHA, batch_notes: int = 4,
              infer: bool = False, on_note: Callable[[str, int, int], None] | None = None) -> tuple[TrustProfile, list[Outcome]]:
    """The trust profile of the backend `factory` makes, measured over `sets`, and every outcome behind it.
    `infer`: also ask the model, over the whole note, every labelled boolean pair no passage names (the
    gate's, cell boolean/no-mention), as `crit run --infer` would."""
    require(factory)
    outcomes: list[Outcome] = []
    measured_on: list[str] = []
    engine = EvidenceEngine(start_model=factory.create, policy="model", infer=infer)
    try:
        for labelled in sets:
            found = _outcomes(engine, labelled, batch_notes, on_note)
            outcomes += found
            notes = len({o.note_id for o in found})
            measured_on.append(f"{labelled.name}: {len(found)} pairs a passage mentions, in {notes} notes")
    finally:
        engine.close()
    by_cell: dict[tuple[str, str], list[tuple[bool, bool]]] = defaultdict(list)
    for o in outcomes:
        by_cell[(o.kind, o.reading)].append((o.model_right, o.rules_right))
    cells = [cell(kind, reading, pairs, alpha) for (kind, reading), pairs in sorted(by_cell.items())]
    profile = TrustProfile(backend_identity=factory.identity(), reader=READER_VERSION, evidence=EVIDENCE_VERSION,
                           measured_on=measured_on, alpha=alpha, cells=cells)
    return profile, outcomes


def _outcomes(engine: EvidenceEngine, labelled: LabelledSet, batch_notes: int,
              on_note: Callable[[str, int, int], None] | None) -> list[Outcome]:
    questions = {q.name: q for q in load_plan(str(labelled.criteria)).model_questions}
    labels = [g for g in read_gold(str(labelled.labels))
              if labelled.note_ids is None or g.note_id in labelled.note_ids]
    by_note: dict[str, dict[str, object]] = defaultdict(dict)
    for g in labels:
        by_note[g.note_id][g.question] = g
    notes, _bad = read_notes(labelled.notes)
    notes = [n for n in notes if n.note_id in by_note]
    if not notes:
        raise CritError(f"{labelled.name}: none of the labelled notes is in '{labelled.notes}'")
    out: list[Outcome] = []
    for start in range(0, len(notes), batch_notes):
        batch = notes[start:start + batch_notes]
        requests = []
        for n in batch:
            missing = [name for name in by_note[n.note_id] if name not in questions]
            if missing:
                raise CritError(f"{labelled.labels}: question '{missing[0]}' is not in {labelled.criteria}")
            requests.append(Request(n.note_id, n.text, [questions[name] for name in by_note[n.note_id]]))
        for n, request, compared in zip(batch, requests, engine.compare_batch(requests)):
            for q in request.questions:
                rules, model = compared[q.name]
                if model is None:
                    continue  # the gate's: no passage, so no model was asked (unless it inferred)
                g = by_note[n.note_id][q.name]
                taken = decided(model, rules)
                gold_value = g.answer  # type: ignore[attr-defined]
                unit = g.unit  # type: ignore[attr-defined]
                r_label, m_label = label_of(rules, q, unit), label_of(taken, q, unit)
                out.append(Outcome(set=labelled.name, note_id=n.note_id, question=q.name, kind=q.kind,
                                   reading=rules.reading or "none", gold=gold_value, rules=r_label, model=m_label,
                                   model_right=right(gold_value, m_label), rules_right=right(gold_value, r_label)))
            if on_note is not None:
                on_note(labelled.name, start + batch.index(n) + 1, len(notes))
    return out


def write_profile(profile: TrustProfile, outcomes: list[Outcome], out: Path) -> None:
    """The profile as JSON at `out`, and every outcome beside it (`out` with .outcomes.jsonl) for review."""
    out.write_text(profile.model_dump_json(indent=2) + "\n", encoding="utf-8")
    beside = out.with_suffix(".outcomes.jsonl")
    beside.write_text("".join(json.dumps(o.model_dump()) + "\n" for o in outcomes), encoding="utf-8")
