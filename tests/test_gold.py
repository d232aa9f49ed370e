"""Checks that the hand-labelled gold set in tests/gold/ is well formed.

The labels themselves are a person's reading of the notes; these tests only make sure
the files can be trusted mechanically: 30 notes, one label per (note, question), valid
kinds and answers, and every quoted source found verbatim at its span.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crit.engine.eligibility import load_plan

GOLD = Path(__file__).parent / "gold"
BOOLEANS = ("af", "stroke", "hf", "htn", "diabetes")
NUMERICS = ("age", "creat", "hgb", "platelets", "lvef")
BOOLEAN_ANSWERS = {"present", "absent", "not mentioned"}
LABEL_KEYS = {"note_id", "question", "kind", "answer", "unit", "source", "span_start", "span_end"}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def notes() -> dict[str, dict]:
    rows = _read_jsonl(GOLD / "notes.jsonl")
    by_id = {r["note_id"]: r for r in rows}
    assert len(by_id) == len(rows), "duplicate note_id in notes.jsonl"
    return by_id


@pytest.fixture(scope="module")
def labels() -> list[dict]:
    return _read_jsonl(GOLD / "aristotle_gold.jsonl")


def test_thirty_short_notes(notes: dict[str, dict]) -> None:
    assert len(notes) == 30
    for note in notes.values():
        assert set(note) == {"note_id", "specialty", "title", "text"}
        assert note["note_id"].startswith("mts-")
        # Short enough for the embedded model on a CPU.
        assert 0 < len(note["text"]) < 6000


def test_every_pair_labelled_once(notes: dict[str, dict], labels: list[dict]) -> None:
    assert len(labels) == 300
    pairs = [(lab["note_id"], lab["question"]) for lab in labels]
    assert len(set(pairs)) == len(pairs), "duplicate (note, question)"
    expected = {(n, q) for n in notes for q in BOOLEANS + NUMERICS}
    assert set(pairs) == expected


def test_kinds_and_answers(labels: list[dict]) -> None:
    for lab in labels:
        assert set(lab) == LABEL_KEYS, lab
        where = f"{lab['note_id']}/{lab['question']}"
        if lab["question"] in BOOLEANS:
            assert lab["kind"] == "boolean", where
            assert lab["answer"] in BOOLEAN_ANSWERS, where
            assert lab["unit"] is None, where
            # A present/absent answer must be backed by a quote; silence must not be.
            assert (lab["source"] is None) == (lab["answer"] == "not mentioned"), where
        else:
            assert lab["kind"] == "numeric", where
            answer = lab["answer"]
            assert answer is None or (isinstance(answer, (int, float)) and not isinstance(answer, bool)), where
            assert answer is None or answer >= 0, where
            assert lab["unit"] is None or (isinstance(lab["unit"], str) and lab["unit"]), where
            assert (lab["source"] is None) == (answer is None), where
            if answer is None:
                assert lab["unit"] is None, where


def test_sources_verbatim_at_span(notes: dict[str, dict], labels: list[dict]) -> None:
    for lab in labels:
        where = f"{lab['note_id']}/{lab['question']}"
        if lab["source"] is None:
            assert lab["span_start"] is None and lab["span_end"] is None, where
            continue
        text = notes[lab["note_id"]]["text"]
        start, end = lab["span_start"], lab["span_end"]
        assert isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text), where
        assert text[start:end] == lab["source"], where


def test_numeric_answer_appears_in_its_source(labels: list[dict]) -> None:
    # Guards against a value typed wrongly: the number (as written, or as thousands
    # for platelet counts written in cells) must occur in the quoted source.
    for lab in labels:
        if lab["kind"] != "numeric" or lab["answer"] is None:
            continue
        source = lab["source"].replace(",", "")
        value = lab["answer"]
        candidates = {f"{value:g}", str(value)}
        if lab["question"] == "platelets":
            candidates.add(f"{value * 1000:g}")
        assert any(c in source for c in candidates), f"{lab['note_id']}/{lab['question']}"


def test_the_fresh_gold_set_is_well_formed():
    import json as _json
    from pathlib import Path as _Path

    fresh = _Path(__file__).resolve().parent / "gold" / "fresh"
    texts = {_json.loads(x)["note_id"]: _json.loads(x)["text"] for x in (fresh / "notes.jsonl").open()}
    labels = [_json.loads(x) for x in (fresh / "aristotle_gold.jsonl").open()]
    assert len(texts) == 8 and len(labels) == 80
    for g in labels:
        if g["source"] is not None:
            assert texts[g["note_id"]][g["span_start"]:g["span_end"]] == g["source"]


SHARED_NOTES = Path(__file__).resolve().parents[2] / "shared" / "data" / "mtsamples.jsonl"


@pytest.mark.skipif(not SHARED_NOTES.exists(), reason="needs ../shared/data/mtsamples.jsonl (CI has it)")
def test_the_override_labels_are_well_formed_and_outside_the_gold_sets() -> None:
    """tests/gold/overrides labels MTSamples notes it does not copy: each span indexes the shared text."""
    labels = _read_jsonl(GOLD / "overrides" / "labels.jsonl")
    held = {r["note_id"] for r in _read_jsonl(GOLD / "notes.jsonl") + _read_jsonl(GOLD / "fresh" / "notes.jsonl")}
    wanted = {g["note_id"] for g in labels}
    texts = {r["note_id"]: r["text"] for r in map(json.loads, SHARED_NOTES.open(encoding="utf-8"))
             if r["note_id"] in wanted}
    assert len(labels) == 58 and len({(g["note_id"], g["question"]) for g in labels}) == 58
    assert not wanted & held
    kinds = {q.name: q.kind for q in load_plan(str(GOLD.parent.parent / "criteria" / "aristotle.crit")).questions}
    for g in labels:
        assert LABEL_KEYS | {"student", "rules"} == set(g), g
        assert g["kind"] == kinds[g["question"]], g
        if g["kind"] == "boolean":
            assert g["answer"] in BOOLEAN_ANSWERS, g
        if g["answer"] in (None, "not mentioned"):
            assert g["source"] is None and g["span_start"] is None, g
        else:
            assert texts[g["note_id"]][g["span_start"]:g["span_end"]] == g["source"], g
