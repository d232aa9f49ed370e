"""Synthetic pairs are validated before they are stored; select balances types, splits by note and
writes the engine's own prompt and answer JSON. No model needed."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import duckdb
import jsonschema
import pytest

from crit.engine.answering.prompts import messages
from crit.engine.store.trainer import SYNTH_SCHEMA
from crit.grammar.errors import CritError
from crit.trainer.select import SelectConfig, pair_question, select, split_notes
from crit.trainer.synth import check_pair, normalise_question, pair_schema

NOTE = "HISTORY: Hypertension. Denies diabetes.\nLABS: Creatinine 1.4 mg/dL, hemoglobin 11.2."


def pair(**overrides):
    base = {"section": "LABS", "question": "What is the creatinine?", "answer": 1.4, "unit": "mg/dL",
            "source": "Creatinine 1.4 mg/dL", "explanation": "Stated in the labs.", "difficulty": 3}
    return {**base, **overrides}


def test_valid_numeric_pair_is_kept_with_its_span():
    fields, reason = check_pair(pair(), "numeric", NOTE)
    assert reason is None
    assert NOTE[fields["span_start"] : fields["span_end"]] == "Creatinine 1.4 mg/dL"
    assert fields["answer"] == "1.4"


@pytest.mark.parametrize(
    ("data", "kind", "reason"),
    [
        (pair(source="creatinine was 1.4"), "numeric", "source_not_verbatim"),
        (pair(answer="high"), "numeric", "answer_type"),
        (pair(answer=2.0), "numeric", "numeric_not_in_source"),
        ({**pair(answer="present", source="Hypertension"), "unit": None}, "boolean", "schema"),
        ({k: v for k, v in pair(answer="yes", source="Hypertension").items() if k != "unit"}, "boolean", "answer_type"),
        ({k: v for k, v in pair(answer="absent", source="").items() if k != "unit"}, "boolean", "source_not_verbatim"),
        ({k: v for k, v in pair(answer="absent").items() if k != "unit"}, "na-boolean", "answer_type"),
        ({k: v for k, v in pair(answer=None).items() if k != "unit"}, "na-boolean", "na_with_source"),
        (pair(difficulty=11), "numeric", "schema"),
        ("not an object", "numeric", "invalid_json"),
    ],
)
def test_bad_pairs_are_dropped_with_a_reason(data, kind, reason):
    fields, got = check_pair(data, kind, NOTE)
    assert fields is None and got == reason


def test_na_pair_keeps_an_empty_source():
    data = {k: v for k, v in pair(answer=None, source="", question="Is there atrial fibrillation?").items() if k != "unit"}
    fields, reason = check_pair(data, "na-boolean", NOTE)
    assert reason is None and fields["source"] == "" and fields["span_start"] is None


def test_schemas_bound_every_string():
    for kind in ("boolean", "numeric", "na-boolean", "na-numeric"):
        props = pair_schema(kind)["properties"]
        for name in ("question", "section", "source", "explanation"):
            assert props[name]["maxLength"] <= 160
        assert props["difficulty"]["enum"] == list(range(1, 11))


def test_duplicate_questions_normalise_equal():
    assert normalise_question("What is the  Creatinine?") == normalise_question("what is the creatinine")


def test_split_by_note_is_deterministic_and_disjoint():
    ids = [f"n{i}" for i in range(40)]
    train, val = split_notes(ids, 0.1)
    assert not train & val and train | val == set(ids) and len(val) == 4
    assert split_notes(list(reversed(ids)), 0.1) == (train, val)
    assert split_notes(["only"], 0.1) == ({"only"}, set())


def _synth_db(path, n_notes=12):
    con = duckdb.connect(str(path))
    con.execute(SYNTH_SCHEMA)
    now = datetime.now(timezone.utc)
    for i in range(n_notes):
        nid = f"note-{i}"
        con.execute("INSERT INTO notes VALUES (?, ?, 'h', 't', 'v', ?)", [nid, NOTE, now])
        rows = [
            ("boolean", f"Is hypertension documented ({i})?", "present", None, "Hypertension", i % 8 + 1),
            ("numeric", f"What is the creatinine ({i})?", "1.4", "mg/dL", "Creatinine 1.4 mg/dL", (i * 3) % 10 + 1),
            ("na-boolean", f"Is there atrial fibrillation ({i})?", None, None, "", 5),
            ("na-numeric", f"What is the platelet count ({i})?", None, None, "", 2),
        ]
        if i % 2:  # a second boolean on odd notes: more booleans than other types
            rows.append(("boolean", f"Is diabetes documented ({i})?", "absent", None, "Denies diabetes", 9))
        for kind, q, a, unit, src, diff in rows:
            start = NOTE.find(src) if src else None
            con.execute(
                "INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'S', 'e', ?, 't', 'v', ?, NULL)",
                [nid, kind, q, a, unit, src, start, None if start is None else start + len(src), diff, now],
            )
    con.close()


def test_select_balances_types_splits_by_note_and_speaks_the_engine_format(tmp_path):
    db = tmp_path / "synth.duckdb"
    _synth_db(db)
    s = select(SelectConfig(db=str(db), out=str(tmp_path / "data"), per_type=5, layout="note"))
    assert s.per_type == {"boolean": 5, "numeric": 5, "na-boolean": 5, "na-numeric": 5}
    lines = {side: [json.loads(x) for x in (tmp_path / "data" / f"{side}.jsonl").read_text().splitlines()]
             for side in ("train", "val")}
    assert len(lines["train"]) + len(lines["val"]) == 20 and lines["val"]
    train_notes = {x["note_id"] for x in lines["train"]}
    val_notes = {x["note_id"] for x in lines["val"]}
    assert not train_notes & val_notes
    # The hardest booleans: both difficulty-9 "diabetes" pairs outrank every difficulty < 9.
    booleans = [x for side in lines.values() for x in side if x["type"] == "boolean"]
    assert sum("diabetes" in x["messages"][1]["content"] for x in booleans) == 5
    for x in lines["train"] + lines["val"]:
        system, user, assistant = x["messages"]
        q_text = user["content"].split("QUESTION: ", 1)[1].split("\n")[0]
        unit = "mg/dL" if x["type"] == "numeric" else None
        q = pair_question(x["type"], q_text, unit)
        assert [system, user] == messages(NOTE, q)  # the engine's prompt, word for word
        answer = json.loads(assistant["content"])
        jsonschema.validate(answer, q.answer_schema)  # the engine's answer schema
        if x["type"].startswith("na-"):
            assert answer["source"] == "" and answer["answer"] in (None, "not mentioned")
        else:
            assert answer["source"] in NOTE


def test_select_without_synth_db_is_a_crit_error(tmp_path):
    with pytest.raises(CritError, match="crit synth"):
        select(SelectConfig(db=str(tmp_path / "missing.duckdb"), out=str(tmp_path / "o")))


def test_the_evidence_layout_is_what_crit_run_asks(tmp_path):
    """The default layout: a few sentences of the note, the one holding the quote among them, and the
    answer quoting that whole sentence first; an NA pair quotes nothing. Valid under evidence_schema."""
    db = tmp_path / "synth.duckdb"
    _synth_db(db)
    select(SelectConfig(db=str(db), out=str(tmp_path / "data"), per_type=5))
    examples = [json.loads(x) for side in ("train", "val")
                for x in (tmp_path / "data" / f"{side}.jsonl").read_text().splitlines()]
    assert examples
    for x in examples:
        system, user, assistant = x["messages"]
        assert user["content"].startswith("PASSAGES:\n") and "atrial" not in system  # the evidence prompt
        shown = user["content"].split("PASSAGES:\n", 1)[1].split("\n\nQUESTION: ", 1)[0].split("\n")
        assert all(line in NOTE for line in shown) and len(shown) <= 4  # sentences of the note only
        answer = json.loads(assistant["content"])
        assert list(answer)[0] == "source"  # the quote first
        if x["type"].startswith("na-"):
            assert answer["source"] == ""
        else:
            assert answer["source"] in shown
