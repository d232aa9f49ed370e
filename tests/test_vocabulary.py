"""Offline vocabularies (crit.engine.reading.vocabulary) over their real data: what each adds to a question,
where each term says it came from, what precision keeps out, and `not aka` taking a term back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from crit.cli import cli
from crit.engine.eligibility import plan_from_text
from crit.engine.reading.passages import find_passages, question_terms
from crit.engine.reading.vocabulary import VOCABULARIES, drug_classes, enabled_vocabularies, expansions
from crit.grammar.questions import make_question


def sources(phrase: str, aka: tuple[str, ...] = (), kind: str = "boolean") -> dict[str, str]:
    return {e.term.lower(): e.source for e in expansions(phrase, aka, kind)}


def test_a_brand_of_a_class_member_finds_the_class_with_its_source() -> None:
    found = sources("antidepressant therapy", ("SSRI", "antidepressant"))
    assert found["sertraline"] == "drug class: SSRI (crit)"
    assert found["zoloft"] == "brand of sertraline (drug-named-entity-recognition 2.0.9)"
    assert found["trazodone"] == "drug class: atypical antidepressant (crit)"
    q = make_question("antidepressant", "boolean", "antidepressant therapy", aka=("SSRI",))
    [p] = find_passages("MEDICATIONS: Zoloft 100 mg daily.", q)
    assert p.term == "Zoloft"


def test_either_class_of_a_two_class_phrase_counts() -> None:
    q = make_question("acei_arb", "boolean", "ACE inhibitor or angiotensin receptor blocker therapy",
                      aka=("ACE inhibitor", "ARB"))
    for line in ("Losartan 50 mg daily.", "Cozaar 50 mg twice a day.", "Prinivil 20 mg a day", "Entresto 49/51 mg"):
        assert find_passages(line, q), line


def test_a_combination_inhaler_counts_for_inhaled_corticosteroids_but_a_nasal_spray_does_not() -> None:
    found = sources("inhaled corticosteroid therapy")
    assert {"advair", "symbicort", "fluticasone"} <= found.keys()
    assert "flonase" not in found  # fluticasone's brands include nasal sprays: the class lists its inhalers itself


def test_a_drug_named_by_the_phrase_gets_its_brands() -> None:
    found = sources("metformin therapy")
    assert found["glucophage"] == "brand of metformin (drug-named-entity-recognition 2.0.9)"


def test_brands_that_are_words_spellings_or_creams_stay_out() -> None:
    terms = {t.lower() for t in sources("antibiotic therapy")}
    assert {"zithromax", "augmentin", "bactrim", "omnicef", "vancomycin"} <= terms
    assert not {"metrocream", "clindagel", "polysporin"} & terms  # creams and ointments
    assert not {"amoxicilline", "amoxycillin"} & terms  # spellings of the generic
    assert all(len(t.replace("-", "").replace(" ", "")) >= 4 for t in terms)


def test_icd10_adds_a_codes_subcodes_and_inclusion_terms() -> None:
    found = sources("chronic kidney disease", ("CKD",))
    assert found["end stage renal disease"] == "ICD-10-CM N18.6"
    assert found["chronic renal failure"] == "ICD-10-CM N18.9 inclusion term"
    q = make_question("ckd", "boolean", "chronic kidney disease", aka=("CKD",))
    assert find_passages("PAST MEDICAL HISTORY: End-stage renal disease, on hemodialysis.", q)


def test_depression_is_a_term_of_major_depressive_disorder() -> None:
    assert sources("major depressive disorder")["depression"] == "ICD-10-CM F32.A"


def test_no_term_is_broader_than_the_phrase() -> None:
    for phrase in ("type 1 diabetes mellitus", "type 2 diabetes mellitus"):
        q = make_question("dm", "boolean", phrase)
        terms = {t.lower() for t in question_terms(q)}
        assert not {"diabetes", "diabetes mellitus"} & terms, phrase
    assert "juvenile onset diabetes" in sources("type 1 diabetes mellitus")


def test_icd_lists_and_complications_do_not_become_terms() -> None:
    terms = sources("heart failure")
    assert "cardiac" not in terms  # "Cardiac, heart or myocardial failure NOS" is a list, not "cardiac"
    assert "pulmonary edema" not in terms  # "pulmonary edema with heart failure" is no pulmonary edema
    assert "left ventricular failure" in terms


def test_mesh_entry_terms_must_share_a_word_with_the_phrase() -> None:
    found = sources("major depressive disorder")
    assert not any("involutional" in t for t in found)  # MeSH files involutional psychosis under major depression
    assert sources("coronary artery disease")["coronary arteriosclerosis"].startswith("MeSH D017225")


def test_a_numeric_question_gets_no_expansion() -> None:
    assert expansions("creatinine", ("Cr",), "numeric") == []


def test_not_aka_removes_a_term_changes_the_fingerprint_and_is_in_the_plan() -> None:
    source = 'trial T\nboolean mdd "major depressive disorder" aka "MDD", "major depression"{}\ninclude mdd\n'
    with_it = plan_from_text(source.format(""), "t.crit")
    without = plan_from_text(source.format(' not aka "depression", "MDD"'), "t.crit")
    [q], [r] = with_it.questions, without.questions
    assert r.not_aka == ("depression", "MDD")
    assert "depression" in question_terms(q) and "MDD" in question_terms(q)
    assert "depression" not in question_terms(r) and "MDD" not in question_terms(r)
    assert "major depression" in question_terms(r)
    assert q.fingerprint != r.fingerprint
    assert q.fingerprint == make_question("mdd", "boolean", "major depressive disorder").fingerprint
    note = "He does have a history of depression."
    assert find_passages(note, q) and not find_passages(note, r)


def test_crit_compile_shows_each_term_and_where_it_came_from(tmp_path) -> None:
    crit_file = tmp_path / "t.crit"
    crit_file.write_text('trial T\nboolean ad "antidepressant therapy" aka "SSRI" not aka "Zoloft"\ninclude ad\n')
    shown = CliRunner().invoke(cli, ["compile", str(crit_file)])
    assert shown.exit_code == 0, shown.output
    # The table wraps long cells at the console's width: look for words, not whole cells.
    for word in ("phrase", "aka", "SSRI", "sertraline", "brands", "Lustral", "removed", "Zoloft"):
        assert word in shown.output, word
    data = json.loads(CliRunner().invoke(cli, ["compile", str(crit_file), "--json"]).output)
    terms = {t["term"]: t["source"] for t in data["terms"]["ad"]}
    assert terms["antidepressant therapy"] == "phrase" and terms["SSRI"] == "aka"
    assert terms["Prozac"] == "brand of fluoxetine (drug-named-entity-recognition 2.0.9)"
    assert "Zoloft" not in terms


def test_the_environment_picks_the_vocabularies(monkeypatch) -> None:
    monkeypatch.setenv("CRIT_VOCABULARIES", "none")
    assert enabled_vocabularies() == () and expansions("chronic kidney disease") == []
    monkeypatch.setenv("CRIT_VOCABULARIES", "icd10")
    assert {e.source.split()[0] for e in expansions("chronic kidney disease")} == {"ICD-10-CM"}
    monkeypatch.setenv("CRIT_VOCABULARIES", "all")
    assert enabled_vocabularies() == VOCABULARIES
    monkeypatch.setenv("CRIT_VOCABULARIES", "drug_classes,umls")
    with pytest.raises(ValueError, match="umls"):
        enabled_vocabularies()


def test_every_drug_class_has_a_label_names_and_members() -> None:
    classes = drug_classes()
    assert len(classes) >= 40
    for cid, c in classes.items():
        assert c.label and c.names, cid
        assert c.members or c.includes, cid


def test_importing_passages_loads_no_vocabulary() -> None:
    code = ("import sys, crit.engine.reading.passages; "
            "loaded = [m for m in ('simple_icd_10_cm', 'drug_named_entity_recognition') if m in sys.modules]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")
