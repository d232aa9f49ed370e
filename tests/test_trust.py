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
