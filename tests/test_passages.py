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


def test_sentences_end_at_a_line_end_and_never_run_past_one():
    """One pass finds sentence ends and line ends: a sentence end needs a capital on its own line; initials
    and titles never end one; blank lines, CRLF line ends and trailing blanks leave no empty sentence."""
    text = "Seen by J. Smith today. Mrs. Jones is well.\r\nBP fine.\n\n  Plan: home.  \nA. \nno cut. here"
    pieces = [text[a:b] for a, b in sentences(text)]
    assert pieces == ["Seen by J. Smith today.", "Mrs. Jones is well.", "BP fine.", "Plan: home.", "A.",
                      "no cut. here"]
    two = "Ends here.\nNext line."
    assert [two[a:b] for a, b in sentences(two)] == ["Ends here.", "Next line."]
    assert sentences("") == [] and sentences("\n \n") == []


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


# ---- one scan a note: the TermScanner finds what each question's own pattern finds ----------------------------

MTSAMPLES = ROOT.parent / "shared" / "data" / "mtsamples.jsonl"
CRIT_FILES = sorted([ROOT / "criteria" / "aristotle.crit", ROOT / "criteria" / "n2c2_2018.crit",
                     *(ROOT / "criteria" / "examples").glob("*.crit"), *(ROOT / "tests" / "trials").glob("*/trial.crit")])


def _one_pattern_a_question(terms: tuple[str, ...]):
    """The pattern evidence was found with before the scanner: every term, longer first, tried at every place."""
    import re

    from crit.engine.reading.passages import terms_pattern

    return re.compile(terms_pattern(sorted(dict.fromkeys(terms), key=len, reverse=True)), re.I)


def _notes(n: int) -> list[str]:
    if MTSAMPLES.exists():
        with MTSAMPLES.open(encoding="utf-8") as f:
            return [json.loads(line)["text"] for _, line in zip(range(n), f)]
    return [json.loads(line)["text"] for line in (ROOT / "examples" / "mtsamples-sample.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("crit_file", CRIT_FILES, ids=lambda p: p.parent.name if p.name == "trial.crit" else p.stem)
def test_the_scanner_finds_each_question_s_matches_exactly(crit_file: Path) -> None:
    from crit.engine.eligibility import load_plan
    from crit.engine.reading.passages import searched_terms, term_scanner, terms_regex

    term_sets = tuple(searched_terms(q) for q in load_plan(crit_file).model_questions)
    scanner = term_scanner(term_sets)
    flat = [_one_pattern_a_question(t) if t else None for t in term_sets]
    notes = _notes(400) + ["non-diabetic, non diabetic; A.F. and a-fib; Type II DM; C.H.F.'s", "", "afib afib"]
    for text in notes:
        expected = [[m.span() for m in p.finditer(text)] if p else [] for p in flat]
        assert scanner.scan(text) == expected
        for terms, spans in zip(term_sets, expected):  # the letter-led pattern of one question too
            if terms:
                assert [m.span() for m in terms_regex(terms).finditer(text)] == spans


def test_the_scanner_takes_terms_that_start_with_a_symbol_or_an_accent() -> None:
    from crit.engine.reading.passages import TermScanner

    scanner = TermScanner([("+ve culture", "culture"), ("écho", "echo"), ("echo",)])
    text = "Culture +ve culture; écho and echo."
    assert scanner.scan(text) == [
        [m.span() for m in _one_pattern_a_question(t).finditer(text)]
        for t in [("+ve culture", "culture"), ("écho", "echo"), ("echo",)]]


def test_evidence_for_many_questions_equals_each_question_alone() -> None:
    from crit.engine.eligibility import load_plan
    from crit.engine.reading.passages import evidence_for

    questions = load_plan(ROOT / "criteria" / "aristotle.crit").model_questions
    for text in _notes(60):
        together = evidence_for(text, questions)
        assert together == {q.name: find_passages(text, q) for q in questions}


def test_the_scanner_splits_many_questions_into_chunks_and_finds_the_same() -> None:
    from crit.engine.reading.passages import SCAN_CHUNK, TermScanner

    words = ["hypertension", "diabetes", "stroke", "pain", "fever", "cough", "history", "blood pressure", "BP",
             "patient", "denies", "no", "the", "with", "was", "heart", "rate", "CHF", "type 2 diabetes", "left"]
    term_sets = [tuple(words[(i * 7 + k) % len(words)] for k in range(i % 4 + 1)) for i in range(SCAN_CHUNK * 2 + 5)]
    scanner = TermScanner(term_sets)
    assert len(scanner._chunks) == 3
    for text in _notes(40):
        assert scanner.scan(text) == [[m.span() for m in _one_pattern_a_question(t).finditer(text)] for t in term_sets]


def test_the_pattern_families_are_found_where_their_own_patterns_find_them() -> None:
    from crit.engine.reading.passages import FAMILY_SCANS

    extra = ["Mrs. Smith", "MS. Jones", "No medications.", "Medications: none", "42yo", "aged 3", "3-1/2-year-old",
             "She has", "HE is", "denies taking any medications", "on no medications", "AGE: 81"]
    for text in _notes(400) + extra:
        for family, led in FAMILY_SCANS.items():
            assert [m.span() for m in led.finditer(text)] == [m.span() for m in family.finditer(text)]


def _passages_sentence_by_sentence(note_text, hits, terms):
    """How passages were made before hits were placed by bisection: every sentence, in order, tested for hits."""
    from crit.engine.reading.passages import HEADER, MAX_PASSAGE_CHARS, Passage, sentences, term_of

    if not hits:
        return []
    spans = sentences(note_text)
    headers = [(m.start(), m.group(1).strip().upper()) for m in HEADER.finditer(note_text)]
    passages, h = [], 0
    for start, end in spans:
        while h < len(hits) and hits[h][1] <= start:
            h += 1
        inside = [x for x in hits[h:] if start <= x[0] < end]
        if not inside:
            continue
        term_start, term_end, term = inside[0]
        term = term or term_of(note_text[term_start:term_end], terms)
        section = None
        for offset, name in headers:
            if offset > term_start:
                break
            section = name
        last = passages[-1] if passages else None
        if (last and last.section == section and "\n" not in note_text[last.end : start]
                and end - last.start <= MAX_PASSAGE_CHARS):
            passages[-1] = last.model_copy(update={"end": end})
            continue
        passages.append(Passage(start=start, end=end, term=term, term_start=term_start, term_end=min(term_end, end),
                                section=section))
    return passages


@pytest.mark.parametrize("crit_file", CRIT_FILES[:4], ids=lambda p: p.parent.name if p.name == "trial.crit" else p.stem)
def test_placing_hits_by_bisection_makes_the_passages_a_sentence_by_sentence_pass_makes(crit_file: Path) -> None:
    from crit.engine.eligibility import load_plan
    from crit.engine.reading.passages import passages_of, searched_terms, term_scanner

    questions = load_plan(crit_file).model_questions
    term_sets = tuple(searched_terms(q) for q in questions)
    for text in _notes(300):
        for terms, spans in zip(term_sets, term_scanner(term_sets).scan(text)):
            hits = sorted((a, b, "") for a, b in spans)
            assert passages_of(text, hits, terms) == _passages_sentence_by_sentence(text, hits, terms)
