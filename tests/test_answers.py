"""Answer parsing, source grounding and long-note windows: pure functions, no model."""

from __future__ import annotations

import json

import pytest

from crit.engine.answering.backend import answer_key
from crit.engine.answering.chunks import Chunk, merge_answers, select_chunks, split_chunks
from crit.engine.answers import Answer, locate_source, parse_answer
from crit.grammar.questions import make_question

NOTE = "LABS:\nCreatinine  1.4 mg/dL on admission.\nHemoglobin was 9.5 g/dL.\nNo history of stroke."

CREAT = make_question("creat", "numeric", "creatinine", order="highest", unit="mg/dL", aka=("Cr",))
HGB_FIRST = make_question("hgb", "numeric", "hemoglobin", order="first", unit="g/dL")
HGB_LAST = make_question("hgb", "numeric", "hemoglobin", order="last", unit="g/dL")
HGB_LOW = make_question("hgb", "numeric", "hemoglobin", order="lowest", unit="g/dL", aka=("Hb",))
STROKE = make_question("stroke", "boolean", "a prior stroke")


def numeric(status: str, answer: object, unit: object, source: str) -> str:
    return json.dumps({"status": status, "answer": answer, "unit": unit, "source": source})


# -- parsing -------------------------------------------------------------------------------


def test_numeric_stated_is_value_unit_and_grounded_span():
    p = parse_answer(numeric("stated", 1.4, "mg/dL", "Creatinine  1.4 mg/dL"), CREAT, NOTE)
    assert (p.value, p.unit, p.na, p.error) == (1.4, "mg/dL", False, None)
    assert NOTE[p.span_start : p.span_end] == "Creatinine  1.4 mg/dL"
    assert (p.grounded, p.match) == (True, "exact")


def test_numeric_not_stated_is_na_whatever_the_number():
    p = parse_answer(numeric("not stated", 3.0, None, ""), CREAT, NOTE)
    assert (p.na, p.value, p.error) == (True, None, None)
    assert (p.span_start, p.grounded, p.match) == (None, False, None)


def test_numeric_stated_with_null_answer_is_inconsistent():
    p = parse_answer(numeric("stated", None, None, "Creatinine"), CREAT, NOTE)
    assert p.error is not None and p.error.startswith("inconsistent:")
    assert p.value is None and not p.na


def test_cap_is_not_applied_by_the_parser():
    q = make_question("lvef", "numeric", "left ventricular ejection fraction", order="lowest", unit="%", cap=55)
    assert parse_answer(numeric("stated", 70, "%", ""), q, NOTE).value == 70.0


@pytest.mark.parametrize(
    ("choice", "value", "na"), [("present", 1.0, False), ("absent", 0.0, False), ("not mentioned", None, True)]
)
def test_boolean_choices(choice, value, na):
    p = parse_answer(json.dumps({"answer": choice, "source": "No history of stroke."}), STROKE, NOTE)
    assert (p.value, p.na, p.error, p.grounded) == (value, na, None, True)


@pytest.mark.parametrize(
    ("raw", "prefix"),
    [
        ('{"answer": "present", "source": "x"', "invalid_json:"),
        ("not json at all", "invalid_json:"),
        ('{"answer": "yes", "source": "x"}', "schema:"),
        ('{"answer": "present"}', "schema:"),
        ('{"answer": "present", "source": "x", "extra": 1}', "schema:"),
        ('{"answer": "present", "source": "' + "x" * 101 + '"}', "schema:"),
    ],
)
def test_boolean_invalid_outputs_are_error_rows(raw, prefix):
    p = parse_answer(raw, STROKE, NOTE)
    assert p.error is not None and p.error.startswith(prefix), p.error
    assert p.value is None and not p.na


def test_cut_output_is_truncated_when_the_backend_says_so():
    raw = '{"status": "stated", "answer": 1000000000000000'
    assert parse_answer(raw, CREAT, NOTE, truncated=True).error.startswith("truncated:")
    assert parse_answer(raw, CREAT, NOTE).error.startswith("invalid_json:")


def test_non_finite_numbers_are_rejected():
    assert parse_answer('{"status": "stated", "answer": NaN, "unit": null, "source": ""}', CREAT, NOTE).error.startswith(
        "invalid_json:"
    )
    overflow = '{"status": "stated", "answer": 1e999, "unit": null, "source": ""}'  # valid JSON, parses to inf
    assert parse_answer(overflow, CREAT, NOTE).error.startswith("not_finite:")


def test_numeric_schema_rejects_a_string_answer():
    p = parse_answer(numeric("stated", "1.4", "mg/dL", ""), CREAT, NOTE)
    assert p.error.startswith("schema:") and "answer" in p.error


# -- grounding -----------------------------------------------------------------------------


def test_locate_exact():
    assert locate_source("Hemoglobin was 9.5", NOTE) == (NOTE.index("Hemoglobin"), NOTE.index("Hemoglobin") + 18, "exact")


def test_locate_normalised_maps_back_to_original_offsets():
    start, end, match = locate_source("creatinine 1.4 MG/DL", NOTE)
    assert match == "normalised"
    assert NOTE[start:end] == "Creatinine  1.4 mg/dL"  # two spaces in the note, one in the quote


def test_locate_across_a_line_break():
    start, end, match = locate_source("admission. hemoglobin", NOTE)
    assert (NOTE[start:end], match) == ("admission.\nHemoglobin", "normalised")


def test_normalised_match_is_not_grounded():
    p = parse_answer(json.dumps({"answer": "absent", "source": "no history of STROKE"}), STROKE, NOTE)
    assert (p.match, p.grounded) == ("normalised", False)
    assert NOTE[p.span_start : p.span_end] == "No history of stroke"


@pytest.mark.parametrize("source", ["", "   ", "a quote the note does not contain", None])
def test_ungrounded(source):
    assert locate_source(source, NOTE) == (None, None, None)


def test_answer_key_depends_on_model_identity():
    assert answer_key(CREAT.fingerprint, "m@1") != answer_key(CREAT.fingerprint, "m@1+lora@2")
    assert answer_key(CREAT.fingerprint, "m@1") == answer_key(CREAT.fingerprint, "m@1")


# -- windows -------------------------------------------------------------------------------


def words(text: str) -> int:
    return len(text.split())


def test_windows_cover_the_note_overlap_and_respect_the_budget():
    text = "".join(f"line {i} has five words\n" for i in range(40))  # 5 words a line
    windows = split_chunks(text, words, max_tokens=50, overlap_tokens=10)
    assert windows[0].start == 0 and windows[-1].end == len(text)
    for a, b in zip(windows, windows[1:]):
        assert b.start < a.end  # overlap
        assert b.start > a.start  # progress
        assert text[b.start - 1] == "\n"  # cut on a line boundary
    assert all(words(text[w.start : w.end]) <= 50 for w in windows)


def test_a_single_long_line_is_cut_at_spaces():
    text = " ".join(f"w{i}" for i in range(300))
    windows = split_chunks(text, words, max_tokens=100, overlap_tokens=0)
    assert len(windows) >= 3
    assert "".join(text[w.start : w.end] for w in windows) == text


def test_select_chunks_by_phrase_alias_or_first():
    text = "intro line\n" * 5 + "Hb 9.1 today\n" + "filler\n" * 5 + "creatinine 2.0\n"
    windows = split_chunks(text, words, max_tokens=6, overlap_tokens=0)
    hgb = select_chunks(HGB_LOW, text, windows)
    assert [("Hb 9.1" in text[w.start : w.end]) for w in hgb] == [True] * len(hgb)
    assert select_chunks(STROKE, text, windows) == [windows[0]]
    assert all("creatinine" in text[w.start : w.end] for w in select_chunks(CREAT, text, windows))


def row(q, window, *, value=None, unit=None, na=False, error=None, latency=1.0) -> Answer:
    return Answer(
        note_id="n", question=q.name, fingerprint="f", raw="{}", latency_s=latency, prompt_tokens=10,
        output_tokens=5, chunk=window, value=value, unit=unit, na=na, error=error,
    )


def test_merge_highest_takes_the_max_of_the_majority_unit():
    answers = [
        row(CREAT, 0, value=1.2, unit="mg/dL"),
        row(CREAT, 1, value=180.0, unit="umol/L"),
        row(CREAT, 2, value=2.1, unit="MG/DL"),
        row(CREAT, 3, na=True),
    ]
    merged = merge_answers(CREAT, answers)
    assert (merged.value, merged.chunk) == (2.1, 2)
    assert merged.latency_s == 4.0 and merged.prompt_tokens == 40 and merged.output_tokens == 20


def test_merge_lowest_first_last():
    answers = [row(HGB_LOW, 0, na=True), row(HGB_LOW, 1, value=11.0, unit="g/dL"), row(HGB_LOW, 2, value=9.0, unit="g/dL")]
    assert merge_answers(HGB_LOW, answers).value == 9.0
    assert merge_answers(HGB_FIRST, answers).value == 11.0
    assert merge_answers(HGB_LAST, answers).value == 9.0


def test_merge_all_na_and_errors():
    assert merge_answers(CREAT, [row(CREAT, 0, na=True), row(CREAT, 1, na=True)]).na
    kept = merge_answers(CREAT, [row(CREAT, 0, error="schema: x"), row(CREAT, 1, value=1.0, unit="mg/dL")])
    assert (kept.value, kept.error) == (1.0, None)
    failed = merge_answers(CREAT, [row(CREAT, 0, error="schema: x"), row(CREAT, 1, error="truncated: y")])
    assert failed.error == "schema: x"


def test_merge_boolean_present_beats_absent_beats_not_mentioned():
    na, absent, present = row(STROKE, 0, na=True), row(STROKE, 1, value=0.0), row(STROKE, 2, value=1.0)
    assert merge_answers(STROKE, [na, absent, present]).value == 1.0
    assert merge_answers(STROKE, [na, absent]).value == 0.0
    assert merge_answers(STROKE, [na, row(STROKE, 1, na=True)]).na
    assert merge_answers(STROKE, [row(STROKE, 0, value=1.0), row(STROKE, 3, value=1.0)]).chunk == 0


def test_window_dataclass_is_plain_offsets():
    assert Chunk(0, 0, 10) == Chunk(index=0, start=0, end=10)


@pytest.mark.parametrize(
    "source,note,expected",
    [
        ("no", "Colonoscopy was done. no bleeding.", (22, 24, "exact")),  # not inside "Colonoscopy"
        ("no", "Colonoscopy was done.", (None, None, None)),
        ("Cr 1.2", "BUN 20, Cr 1.2.", (8, 14, "exact")),
        ("CR 1.2", "BUN 20, Cr  1.2, Cr 1.25", (8, 15, "normalised")),
        (", Cr", "BUN 20, Cr 1.2", (6, 10, "exact")),  # punctuation at the edge cuts no word
    ],
)
def test_quotes_must_not_cut_words(source: str, note: str, expected: tuple) -> None:
    assert locate_source(source, note) == expected
