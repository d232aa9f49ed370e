"""crit.engine.reading.passages: the terms of a question, the sentences that mention them, and the gate's recall."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crit.engine.reading.passages import find_passages, phrase_terms, sentences, term_regex
from crit.trainer.evaluate import gold_split
from tests.conftest import aristotle_question, rules_label

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "tests" / "gold"


q = aristotle_question


def test_phrase_terms_split_alternatives_and_strip_modifiers():
    assert phrase_terms("a prior stroke, transient ischemic attack or systemic embolism") == [
        "stroke", "transient ischemic attack", "systemic embolism"]
    assert phrase_terms("active alcohol or drug abuse") == ["alcohol abuse", "drug abuse"]
    assert phrase_terms("moderate or severe mitral stenosis") == ["mitral stenosis"]
    assert "ticlopidine" in phrase_terms("clopidogrel, prasugrel or ticlopidine therapy")


@pytest.mark.parametrize("term, text", [
    ("platelet count", "Platelet counts were low"),
    ("atrial fibrillation", "ATRIAL-FIBRILLATION noted"),
    ("CHF", "history of C.H.F. for years"),
    ("a-fib", "known a fib"),
])
def test_term_variants_match(term, text):
    assert term_regex(term).search(text)


def test_terms_match_whole_words_only():
    assert not term_regex("AF").search("after the AFB smear")
    assert not term_regex("Cr").search("Crackles at the bases")


def test_sentences_keep_list_items_whole():
    text = "PAST HISTORY:\n1. Diabetes. 2. Hypertension.\nShe is well. Dr. Smith saw her."
    pieces = [text[a:b] for a, b in sentences(text)]
    assert "1. Diabetes." in pieces and "2. Hypertension." in pieces
    assert "Dr. Smith saw her." in pieces


def test_passages_have_spans_terms_and_sections():
    text = "HISTORY: No TIA. No CVA.\nFAMILY HISTORY: Mother had a stroke."
    ps = find_passages(text, q("stroke"))
    assert [text[p.start:p.end] for p in ps] == ["HISTORY: No TIA. No CVA.", "FAMILY HISTORY: Mother had a stroke."]
    assert ps[0].term == "TIA" and text[ps[0].term_start:ps[0].term_end] == "TIA"
    assert ps[1].section == "FAMILY HISTORY"


def test_gate_recall_on_gold():
    """Every gold quote of the set lies inside one of its question's passages (target: 97 %)."""
    notes = {json.loads(x)["note_id"]: json.loads(x)["text"] for x in (GOLD / "notes.jsonl").open()}
    gold = [json.loads(x) for x in (GOLD / "aristotle_gold.jsonl").open() if json.loads(x)["span_start"] is not None]
    inside = 0
    for g in gold:
        ps = find_passages(notes[g["note_id"]], q(g["question"]))
        inside += any(p.start <= g["span_start"] and g["span_end"] <= p.end for p in ps)
    assert inside / len(gold) >= 0.97, f"{inside}/{len(gold)}"


def test_gold_split_is_a_stable_third():
    notes = [json.loads(x)["note_id"] for x in (GOLD / "notes.jsonl").open()]
    test = [n for n in notes if gold_split(n) == "test"]
    assert 0.2 <= len(test) / len(notes) <= 0.45
    assert gold_split("mts-1594") == gold_split("mts-1594")


def test_a_label_line_keeps_the_value_on_the_line_below():
    """"EJECTION FRACTION:\n 72%." (mts-56, a stress test report) is one sentence, so the rules read 72;
    a label above a long line or a list stays apart."""
    text = ("EJECTION FRACTION:\n 72%.\nCONCLUSIONS:\n1. Negative stress test. 2. Normal wall motion.\n"
            "HISTORY:\n The patient is a 60-year-old man who was seen in clinic today for follow-up.")
    pieces = [text[a:b] for a, b in sentences(text)]
    assert "EJECTION FRACTION:\n 72%." in pieces
    assert "CONCLUSIONS:" in pieces and "1. Negative stress test." in pieces and "HISTORY:" in pieces
    assert rules_label(text, "lvef") == (72.0, "%")
