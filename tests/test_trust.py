"""Trust profiles: a model measured better than the rules decides there, one measured worse never does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crit.engine.answering.policy import EvidenceEngine
from crit.engine.answering.trust import TrustProfile, cell, profile_for, shipped_profile, sign_test
from crit.engine.eligibility import load_plan
from crit.engine.reading.passages import EVIDENCE_VERSION
from crit.engine.reading.reader import READER_VERSION
from crit.engine.run import run
from crit.grammar.errors import CritError
from tests.conftest import ARISTOTLE, NOTE, ScriptedBackend, ScriptedFactory, aristotle_question, two_note_corpus

q = aristotle_question


def _denies_af(text: str, question) -> str:
    """A model that reads "atrial fibrillation" as absent: right or wrong, what matters is who decides."""
    if question.name == "af":  # its quote is the passage it was shown, as the copy constraint makes it
        return json.dumps({"answer": "absent", "source": next(p for p in text.split("\n") if "fibrillation" in p)})
    return json.dumps({"answer": "not mentioned"} if question.kind == "boolean" else {"status": "not mentioned"})


def profile(decides: str, identity: str = "scripted-1") -> TrustProfile:
    wins, losses = (9, 0) if decides == "model" else (0, 9)
    outcomes = [(True, False)] * wins + [(False, True)] * losses + [(True, True)] * 20
    return TrustProfile(backend_identity=identity, reader=READER_VERSION, evidence=EVIDENCE_VERSION,
                        measured_on=["a test"], cells=[cell("boolean", "named", outcomes)])


def test_the_sign_test_trusts_only_a_model_that_wins_clearly() -> None:
    assert sign_test(0, 0) == 1.0 and sign_test(3, 0) == 0.125 and sign_test(8, 0) == 1 / 256
    assert cell("boolean", "named", [(True, False)] * 8).decides == "model"
    assert cell("boolean", "named", [(True, False)] * 4).decides == "rules"  # too few to tell (p = 1/16)
    even = [(True, False)] * 10 + [(False, True)] * 8
    assert cell("numeric", "value-after-term", even).decides == "rules"
    won = cell("numeric", None, [(True, False)] * 12 + [(False, True)] * 2 + [(True, True)] * 5)
    assert (won.reading, won.wins, won.losses, won.pairs, won.decides) == ("none", 12, 2, 19, "model")


def test_the_rules_read_the_af_of_the_note_as_an_unsure_named_mention() -> None:
    from crit.engine.answering.backends.rules import RulesBackend

    (af,) = RulesBackend().answer("n1", NOTE, [q("af")])
    assert (af.value, af.reading, af.confident) == (1.0, "named", False)


def test_a_model_measured_better_decides_where_it_was_measured() -> None:
    model = ScriptedBackend(_denies_af)
    answers, _ = EvidenceEngine(model, trust=profile("model")).answer("n1", NOTE, [q("af"), q("creat")])
    af, creat = answers
    assert (af.method, af.value, af.na) == ("model", 0.0, False)  # the model's "absent" decides
    assert [names for _, _, names in model.calls] == [["af"]]  # asked only in its trusted cell
    assert creat.method == "rules"
    # Without a profile the conservative policy stands: the rules, reading the quote, refuse the denial.
    conservative, _ = EvidenceEngine(ScriptedBackend(_denies_af)).answer("n1", NOTE, [q("af")])
    assert (conservative[0].method, conservative[0].value) == ("rules", 1.0)


def test_a_trusted_model_answer_with_a_quote_not_in_the_note_never_decides() -> None:
    def invents(text: str, question) -> str:
        return json.dumps({"answer": "absent", "source": "no atrial fibrillation ever"})

    (af,), _ = EvidenceEngine(ScriptedBackend(invents), trust=profile("model")).answer("n1", NOTE, [q("af")])
    assert (af.method, af.value) == ("rules", 1.0)


def test_a_model_measured_worse_is_never_asked_nor_loaded(tmp_path: Path) -> None:
    factory = ScriptedFactory(script=_denies_af)
    engine = EvidenceEngine(start_model=factory.create, trust=profile("rules"))
    (af,), _ = engine.answer("n1", NOTE, [q("af")])
    assert (af.method, af.value) == ("rules", 1.0) and factory.backends == [] and engine.policy == "rules"

    plan = load_plan(str(ARISTOTLE))
    summary = run(plan, two_note_corpus(tmp_path), tmp_path / "r.duckdb", factory, trust=profile("rules"))
    assert factory.backends == [] and summary.model_questions == 0
    assert "not loaded" in summary.model_use and "never beats the rules" in summary.model_use


def test_answers_reached_under_a_profile_are_never_reused_without_it(tmp_path: Path) -> None:
    plan = load_plan(str(ARISTOTLE))
    db, notes = tmp_path / "r.duckdb", two_note_corpus(tmp_path)
    trusted = run(plan, notes, db, ScriptedFactory(script=_denies_af), trust=profile("model"))
    plain = run(plan, notes, db, ScriptedFactory(script=_denies_af))
    assert trusted.answers_new > 0 and plain.answers_new == trusted.answers_new  # other keys: asked again
    assert "the model decides boolean/named" in trusted.model_use


def test_a_profile_of_another_model_or_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(profile("model", identity="another-model").model_dump_json())
    with pytest.raises(CritError, match="measured for backend 'another-model'"):
        profile_for("scripted-1", path)
    assert profile_for("scripted-1", "none") is None
    path.write_text('{"cells": 3}')
    with pytest.raises(CritError, match="is not a trust profile"):
        profile_for("scripted-1", path)
    with pytest.raises(CritError, match="cannot read the trust profile"):
        profile_for("scripted-1", tmp_path / "missing.json")
    assert shipped_profile("scripted-1", READER_VERSION, EVIDENCE_VERSION) is None


# --- infer: a trusted model reads the whole note where no term names the finding --------------------------

INFER_PLAN = """trial T "t"
boolean copd "chronic obstructive pulmonary disease" infer
boolean lupus "systemic lupus erythematosus"
include "copd": copd
"""
# No term of either question is in it: the gate would call both "not mentioned".
SMOKER = "40 pack-year smoker with a barrel chest and chronic productive cough. Uses albuterol inhaler daily."


def _infers(text: str, question) -> str:
    if question.name == "copd":
        return json.dumps({"answer": "present", "source": "barrel chest and chronic productive cough"})
    return json.dumps({"answer": "not mentioned"})


def _plan(tmp_path: Path):
    path = tmp_path / "infer.crit"
    path.write_text(INFER_PLAN)
    return load_plan(str(path))


def _no_mention_profile(decides: str) -> TrustProfile:
    outcomes = [(True, False)] * 9 if decides == "model" else [(False, True)] * 9
    return TrustProfile(backend_identity="scripted-1", reader=READER_VERSION, evidence=EVIDENCE_VERSION,
                        measured_on=["a test"], cells=[cell("boolean", "no-mention", outcomes)])


def test_a_trusted_model_infers_from_the_whole_note_where_the_file_says_infer(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    model = ScriptedBackend(_infers)
    (copd, lupus), _ = EvidenceEngine(model, trust=_no_mention_profile("model")).answer("n1", SMOKER, plan.questions)
    assert (copd.method, copd.value, copd.grounded) == ("model-inferred", 1.0, True)
    assert SMOKER[copd.span_start:copd.span_end] == "barrel chest and chronic productive cough"
    assert lupus.method == "gate"  # no `infer`: the gate's "not mentioned", and never asked
    assert model.calls == [("n1", SMOKER, ["copd"])]  # the whole note, note first


def test_no_inference_without_a_profile_that_trusts_it_nor_from_a_quote_not_in_the_note(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    for engine in (EvidenceEngine(ScriptedBackend(_infers)), EvidenceEngine(ScriptedBackend(_infers), trust=_no_mention_profile("rules"))):
        copd, _ = engine.answer("n1", SMOKER, plan.questions)[0]
        assert copd.method == "gate"

    def invents(text: str, question) -> str:
        return json.dumps({"answer": "present", "source": "emphysema on CT"})

    copd, _ = EvidenceEngine(ScriptedBackend(invents), trust=_no_mention_profile("model")).answer("n1", SMOKER, plan.questions)[0]
    assert (copd.method, copd.na) == ("gate", True)


def test_run_infer_reaches_every_boolean_question_and_stores_the_method(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    notes = tmp_path / "notes.jsonl"
    notes.write_text(json.dumps({"note_id": "n1", "text": SMOKER}) + "\n")
    factory = ScriptedFactory(script=_infers)
    run(plan, notes, tmp_path / "r.duckdb", factory, trust=_no_mention_profile("model"), infer=True)
    assert sorted(factory.asked()) == ["copd", "lupus"]  # --infer: lupus too (it answered "not mentioned")
    import duckdb

    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as con:
        rows = con.execute("select question, method, source from answers order by question").fetchall()
    assert rows == [("copd", "model-inferred", "barrel chest and chronic productive cough"), ("lupus", "gate", None)]


def test_the_shipped_profiles_match_the_shipped_models_reader_and_evidence() -> None:
    """A reader or evidence change makes the shipped profiles stale: the default run would fall back to asking the
    embedded model where the rules are unsure (about 60 s for README command 1 instead of 8). Recalibrate."""
    from crit.engine.answering.backends.transformers import TransformersFactory

    for adapter, name in ((None, "embedded"), ("student", "student")):
        identity = TransformersFactory(adapter=adapter).identity()
        profile = shipped_profile(identity, READER_VERSION, EVIDENCE_VERSION)
        assert profile is not None, (f"no shipped trust profile for {identity} with {READER_VERSION}/{EVIDENCE_VERSION}: "
                                     f"crit calibrate {'--adapter student ' if adapter else ''}"
                                     f"--out engine/answering/trust_profiles/{name}.json")
        assert sum(c.pairs for c in profile.cells) >= 500  # measured on the whole dev data, not a probe
