"""The many-trials benchmark's files are well formed: every pair labelled once, spans verbatim, notes disjoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crit.engine.eligibility import load_plan

TRIALS = Path(__file__).parent / "trials"
LABELLED = sorted(p.parent for p in TRIALS.glob("*/labels.jsonl"))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_eight_trials_three_held_out() -> None:
    assert len(LABELLED) >= 8
    readme = (TRIALS / "README.md").read_text()
    assert "`copd`, `oncology`, `stroke`" in readme  # the test split, fixed before labelling


@pytest.mark.parametrize("folder", LABELLED, ids=lambda p: p.name)
def test_every_pair_labelled_once_with_a_verbatim_span(folder: Path) -> None:
    plan = load_plan(str(folder / "trial.crit"))
    kinds = {q.name: q.kind for q in plan.questions if q.name != "sex"}
    booleans = sum(k == "boolean" for k in kinds.values())
    assert 8 <= len(kinds) <= 12 and 0.3 <= booleans / len(kinds) <= 0.7
    notes = {n["note_id"]: n["text"] for n in _jsonl(folder / "notes.jsonl")}
    assert len(notes) >= 40
    labels = _jsonl(folder / "labels.jsonl")
    assert sorted((g["note_id"], g["question"]) for g in labels) == sorted((n, q) for n in notes for q in kinds)
    for g in labels:
        assert g["kind"] == kinds[g["question"]]
        if g["source"] is None:
            assert g["answer"] in ("not mentioned", None) and g["span_start"] is None
            continue
        assert notes[g["note_id"]][g["span_start"]:g["span_end"]] == g["source"]
        assert g["answer"] in ("present", "absent") if g["kind"] == "boolean" else isinstance(g["answer"], int | float)


def test_no_note_in_two_trials_or_in_the_gold_sets() -> None:
    seen: dict[str, str] = {}
    for folder in sorted(p for p in TRIALS.iterdir() if (p / "notes.jsonl").exists()):
        for n in _jsonl(folder / "notes.jsonl"):
            assert n["text"].strip() not in seen, f"{n['note_id']} of {folder.name} repeats {seen.get(n['text'].strip())}"
            seen[n["text"].strip()] = f"{folder.name}/{n['note_id']}"
    gold = TRIALS.parent / "gold"
    for path in [gold / "notes.jsonl", gold / "fresh" / "notes.jsonl"]:
        for n in _jsonl(path):
            assert n["text"].strip() not in seen
