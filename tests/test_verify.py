"""The label check before training (crit.trainer.verify) and where select applies it."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from crit.engine.eligibility import load_plan
from crit.engine.store.trainer import open_db, store_note
from crit.trainer.select import SelectConfig, select
from crit.trainer.verify import check_label

ROOT = Path(__file__).resolve().parent.parent
PLAN = load_plan(ROOT / "criteria" / "aristotle.crit")
NOTE = ("PMH: Patient denies diabetes mellitus. Hypertension, on lisinopril.\n"
        "FAMILY HISTORY: Mother with atrial fibrillation.\nLABS: Creatinine 1.4 mg/dL.")


def row(question: str, kind: str, answer: str | None, source: str, teacher: str = "some-model") -> dict:
    start = NOTE.find(source) if source else None
    return {"note_id": "n1", "type": kind, "question": PLAN.question(question).text, "answer": answer,
            "unit": None, "source": source, "span_start": start, "span_end": start + len(source) if source else None,
            "difficulty": 5, "teacher": teacher, "question_json": PLAN.question(question).model_dump_json()}


def test_a_supported_pair_passes():
    assert check_label(row("diabetes", "boolean", "absent", "Patient denies diabetes mellitus."), NOTE) is None
    assert check_label(row("htn", "boolean", "present", "Hypertension, on lisinopril."), NOTE) is None
    assert check_label(row("creat", "numeric", "1.4", "Creatinine 1.4 mg/dL."), NOTE) is None
    assert check_label(row("hgb", "na-numeric", None, ""), NOTE) is None


def test_bad_pairs_are_named_by_what_is_wrong():
    assert check_label(row("diabetes", "boolean", "present", "Patient denies diabetes mellitus."), NOTE) == "quote_denies"
    assert check_label(row("af", "boolean", "present", "Mother with atrial fibrillation."), NOTE) == "quote_not_about_patient"
    assert check_label(row("creat", "numeric", "2.1", "Creatinine 1.4 mg/dL."), NOTE) == "number_not_in_quote"
    assert check_label(row("htn", "na-boolean", None, ""), NOTE) == "na_contradicted"
    bad_span = {**row("htn", "boolean", "present", "Hypertension, on lisinopril."), "span_start": 0}
    assert check_label(bad_span, NOTE) == "quote_not_verbatim"
    # A pair from a teacher that asked no engine question: its quote must at least name the question.
    free = {**row("htn", "boolean", "present", "Creatinine 1.4 mg/dL."), "question_json": None,
            "question": "Does the patient have hypertension?"}
    assert check_label(free, NOTE) == "off_question"


def _db(path: Path, teacher: str) -> str:
    db = str(path / "synth.duckdb")
    con = open_db(db)
    now = datetime.now(timezone.utc)
    for i in range(10):
        good = row("htn", "boolean", "present", "Hypertension, on lisinopril.", teacher)
        bad = row("diabetes", "boolean", "present", "Patient denies diabetes mellitus.", teacher)
        rows = [{**r, "note_id": f"n{i}", "section": "", "explanation": "", "prompt_version": "v", "created_at": now}
                for r in (good, bad)]
        store_note(con, f"n{i}", NOTE, rows, [], teacher, now, "test")
    con.close()
    return db


def test_select_drops_a_model_teachers_bad_pair_and_counts_it(tmp_path):
    s = select(SelectConfig(db=_db(tmp_path, "some-model"), out=str(tmp_path / "data"), types=("boolean",)))
    assert s.dropped == {"quote_denies": 10}
    examples = [json.loads(x) for f in ("train.jsonl", "val.jsonl") for x in (tmp_path / "data" / f).open()]
    assert len(examples) == 10
    assert all(json.loads(e["messages"][-1]["content"])["answer"] == "present" for e in examples)
    assert all("hypertension" in e["messages"][1]["content"] for e in examples)


def test_the_programmatic_teachers_pairs_are_only_counted_unless_asked(tmp_path):
    db = _db(tmp_path, "programmatic@crit-gen-1#x")
    s = select(SelectConfig(db=db, out=str(tmp_path / "a"), types=("boolean",)))
    assert s.dropped == {} and s.disagreements == {"quote_denies": 10} and s.train + s.val == 20
    s = select(SelectConfig(db=db, out=str(tmp_path / "b"), types=("boolean",), verify="on"))
    assert s.dropped == {"quote_denies": 10} and s.train + s.val == 10


def test_the_engine_example_is_what_the_engine_asks(tmp_path):
    from crit.engine.answering.prompts import messages
    from crit.engine.answering.view import model_request
    from crit.engine.reading.passages import find_passages

    select(SelectConfig(db=_db(tmp_path, "some-model"), out=str(tmp_path / "data"), types=("boolean",)))
    ex = json.loads((tmp_path / "data" / "train.jsonl").open().readline())
    q = PLAN.question("htn")
    view, _, asked = model_request(NOTE, [q], {"htn": find_passages(NOTE, q)})
    assert ex["messages"][:2] == messages(view, asked[0])
    target = json.loads(ex["messages"][2]["content"])
    assert list(target) == ["source", "answer"] and target["source"] in asked[0].answer_schema["properties"]["source"]["enum"]
