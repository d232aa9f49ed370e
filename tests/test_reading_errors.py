"""One regression test per error class the many-trials benchmark found in the rules (issue: answers that hold on
a trial nobody tuned for). Each note is our own, written in the style of MTSamples, with the exact answer expected."""

from __future__ import annotations

import pytest

from crit.engine.eligibility import check_source
from crit.engine.reading.passages import find_passages
from crit.engine.reading.reader import decide
from crit.grammar.questions import Question

CRIT = '''
boolean t2dm      "type 2 diabetes mellitus"
boolean t1dm      "type 1 diabetes mellitus"
boolean insulin   "insulin therapy"
boolean metformin "metformin therapy"
boolean betablocker "beta blocker therapy"  aka "Coreg", "metoprolol"
boolean warfarin  "warfarin therapy"  aka "Coumadin"
boolean pe        "pulmonary embolism"  aka "PE"
boolean dvt       "deep vein thrombosis"  aka "DVT"
boolean mi        "myocardial infarction"  aka "MI", "heart attack"
boolean pregnant  "current pregnancy"  aka "pregnant"
boolean smoker    "current smoking"  aka "smokes", "smoking"
numeric sbp   highest "systolic blood pressure" in mmHg
numeric dbp   lowest  "diastolic blood pressure" in mmHg
numeric creat highest "creatinine" in mg/dL assumed
numeric inr   highest "INR"
numeric age   value   "age" in years assumed
numeric ga    value   "gestational age" in weeks  aka "weeks gestation"
numeric hr    highest "heart rate" in beats/min
'''
PLAN = check_source(CRIT).plan


def q(name: str) -> Question:
    assert PLAN is not None
    return PLAN.question(name)


def read(name: str, note: str) -> dict:
    question = q(name)
    return decide(question, note, find_passages(note, question))


def label(name: str, note: str) -> str | float | None:
    fields = read(name, note)
    return fields["label"] if not fields.get("na") or q(name).kind == "boolean" else None


# Blood-pressure pairs: the systolic question reads the first of "151/102", never the diastolic.
@pytest.mark.parametrize("note, name, expected", [
    ("VITAL SIGNS: Blood pressure 151/102, pulse 88.", "sbp", 151.0),
    ("VITAL SIGNS: Blood pressure 151/102, pulse 88.", "dbp", 102.0),
    ("BP 128/70 then 142/86 on recheck.", "sbp", 142.0),
    ("B/P: 70/palpable. Pulse 120.", "dbp", None),
])
def test_pressure_pairs(note: str, name: str, expected: float | None) -> None:
    assert label(name, note) == expected
    if expected is not None:
        assert read(name, note)["reading"] == "pressure-pair" and read(name, note)["confident"]


# Medication status: a stopped or held drug is not current therapy; an allergy is not a drug taken.
@pytest.mark.parametrize("note, name, expected", [
    ("Metformin was discontinued last month because of diarrhea.", "metformin", "absent"),
    ("Coumadin has been on hold for 5 days before surgery.", "warfarin", "absent"),
    ("He has been off warfarin since his fall.", "warfarin", "absent"),
    ("ALLERGIES: Coreg (rash).", "betablocker", "not mentioned"),
    ("She is allergic to metoprolol.", "betablocker", "not mentioned"),
    ("MEDICATIONS: Metoprolol 25 mg b.i.d., aspirin.", "betablocker", "present"),
    ("He quit smoking in 1990.", "smoker", "absent"),
])
def test_medication_status(note: str, name: str, expected: str) -> None:
    assert label(name, note) == expected


def test_words_inside_other_words_are_not_the_term() -> None:
    assert label("insulin", "History of non-insulin-dependent diabetes mellitus.") == "not mentioned"
    assert label("creat", "Creatinine clearance 41.7 mL/min.") is None
    assert label("creat", "Urine albumin to creatinine ratio 59.8.") is None


# Negated, planned or hypothetical tests and risks, and other people, are not the patient's finding.
@pytest.mark.parametrize("note, name, expected", [
    ("CT angiogram of the chest was negative for pulmonary embolism.", "pe", "absent"),
    ("Lower extremity Dopplers: no obvious DVT.", "dvt", "absent"),
    ("CT chest, pulmonary embolism protocol, was ordered.", "pe", "not mentioned"),
    ("The risks including bleeding, infection, DVT and PE were discussed, and she consented.", "dvt", "not mentioned"),
    ("MI was ruled out with serial troponins.", "mi", "absent"),
    ("Two of his friends had heart attacks last year.", "mi", "not mentioned"),
])
def test_negated_planned_or_other_people(note: str, name: str, expected: str) -> None:
    assert label(name, note) == expected


def test_a_number_of_another_kind_is_not_the_value() -> None:
    assert label("inr", "Continue Coumadin with a goal INR of 2 to 3.") is None
    assert label("inr", "INR today 3.4; goal 2 to 3.") == 3.4
    assert label("age", "Her father died at age 86. She is a 54-year-old woman.") == 54.0
    assert label("ga", "She was born at 37 weeks gestation to a gravida 3 mother.") == 37.0
    assert label("hr", "Heart rate increased from 68 beats per minute to 178 beats per minute.") == 178.0


# Words the user did not list: word order and numerals, and a denial of the parent concept or of all drugs.
@pytest.mark.parametrize("note, name, expected", [
    ("ASSESSMENT: Diabetes mellitus, type II, uncontrolled.", "t2dm", "present"),
    ("PMH: Diabetes type 2 on glipizide.", "t2dm", "present"),
    ("Diabetes mellitus type 1 since childhood.", "t2dm", "not mentioned"),
    ("He denies any history of diabetes.", "t1dm", "absent"),
    ("No history of diabetes mellitus.", "t2dm", "absent"),
    ("MEDICATIONS:\nNone.", "metformin", "absent"),
    ("The patient takes no medications.", "insulin", "absent"),
])
def test_unlisted_wordings_and_denials(note: str, name: str, expected: str) -> None:
    assert label(name, note) == expected


def test_every_answer_names_its_reading_class_and_only_measured_classes_are_sure() -> None:
    from crit.engine.reading.reader import SURE_READINGS

    for note, name in [("Blood pressure 140/90.", "sbp"), ("Creatinine 1.4.", "creat"), ("Diabetes type 2.", "t2dm")]:
        fields = read(name, note)
        assert fields["reading"] and fields["confident"] == (fields["reading"] in SURE_READINGS)


def test_last_is_the_most_recent_measurement_and_last_written_is_the_last_in_the_text() -> None:
    """The last HbA1c is the most recent measurement, not the last number written."""
    plan = check_source('numeric a1c last "hemoglobin A1c" in %  aka "A1c"\n'
                        'numeric recent most recent "hemoglobin A1c" in %  aka "A1c"\n'
                        'numeric written last written "hemoglobin A1c" in %  aka "A1c"\n').plan
    assert plan is not None and plan.question("recent").order == "most recent"

    def value(name: str, note: str) -> float:
        question = plan.question(name)
        return decide(question, note, find_passages(note, question))["label"]

    called_latest = "Her most recent A1c is 8.1. Her A1c was 7.2 two years ago."
    dated = "A1c 8.1 on 03/2020. A1c 7.2 on 01/2019."
    for note in (called_latest, dated):
        assert value("a1c", note) == value("recent", note) == 8.1
        assert value("written", note) == 7.2


def test_a_line_of_no_medications_denies_a_therapy_only() -> None:
    """"No medications" says nothing of a current habit: it denies therapy questions, not "current smoking"."""
    note = "She smokes a pack a day and takes no medications."
    assert read("smoker", note)["label"] == "present" and read("smoker", note)["reading"] == "named"
    assert label("metformin", "She takes no medications.") == "absent"
