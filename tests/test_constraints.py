"""The fixed JSON layout answers are generated in, and prompt-lookup drafting. Fast: no model."""

from __future__ import annotations

import json
import re

import pytest

from crit.engine.answering.constraints import generation_regex, json_layout
from crit.engine.answering.decoding import Row, Skeleton, lookup_draft
from crit.grammar.questions import boolean_schema, numeric_schema
from crit.trainer.synth import pair_schema


def test_numeric_layout_is_literals_around_values():
    layout = json_layout(numeric_schema())
    assert layout.literals == ('{"status":', ' "answer":', ' "unit":', ' "source":')
    assert [v[-1] for v in layout.values] == [",", ",", ",", "}"]  # each value ends with its delimiter
    assert all(v.startswith(" ") for v in layout.values)


@pytest.mark.parametrize(
    "schema, answer",
    [
        (boolean_schema(), {"answer": "present", "source": "AF on warfarin"}),
        (boolean_schema(), {"answer": "not mentioned", "source": ""}),
        (numeric_schema(), {"status": "stated", "answer": 12.5, "unit": "g/dL", "source": "Hgb 12.5"}),
        (numeric_schema(), {"status": "stated", "answer": -3, "unit": None, "source": 'said "x"'}),
        (numeric_schema(), {"status": "not stated", "answer": None, "unit": None, "source": ""}),
    ],
)
def test_regex_matches_exactly_what_json_dumps_writes(schema, answer):
    regex = generation_regex(schema)
    assert re.fullmatch(regex, json.dumps(answer))
    compact = json.dumps(answer, separators=(",", ":"))
    assert not re.fullmatch(regex, compact)  # one layout only: no optional spaces to spend tokens on


def test_numbers_are_bounded_and_strings_keep_their_max_length():
    regex = generation_regex(numeric_schema())
    ok = {"status": "stated", "answer": 1234567.1234, "unit": "mg", "source": "x"}
    assert re.fullmatch(regex, json.dumps(ok))
    for bad in (
        {**ok, "answer": 12345678},  # 8 integer digits
        {**ok, "answer": 1.12345},  # 5 decimals
        {**ok, "source": "x" * 101},  # over SOURCE_MAX_CHARS
        {**ok, "unit": "u" * 17},
    ):
        assert not re.fullmatch(regex, json.dumps(bad)), bad


def test_trainer_pair_schemas_have_layouts():
    for kind in ("boolean", "numeric", "none"):
        assert generation_regex(pair_schema(kind)).startswith(r'\{"section": ')


@pytest.mark.parametrize(
    "schema, why",
    [
        ({"type": "string"}, "object schema"),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": [], "additionalProperties": False},
         "every property required"),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}, "no others"),
    ],
)
def test_schemas_without_a_fixed_layout_are_refused(schema, why):
    with pytest.raises(ValueError, match=why):
        json_layout(schema)


def row_with(context: list[int]) -> Row:
    row = Row(Skeleton((), ()), guide=None, context=[], pending=[], position=0)
    row.extend(context, output=False)
    return row


def test_draft_continues_the_latest_occurrence_of_the_longest_match():
    # ... 5 6 7 8 ... 5 6 9 ... 5 6  -> the latest "5 6" was followed by 9
    row = row_with([1, 5, 6, 7, 8, 2, 5, 6, 9, 3, 5, 6])
    assert lookup_draft(row, limit=3) == [9, 3, 5]
    # a longer match wins over a later shorter one: "4 5 6" occurred once, followed by 7
    row = row_with([4, 5, 6, 7, 8, 5, 6, 9, 4, 5, 6])
    assert lookup_draft(row, limit=2) == [7, 8]


def test_draft_is_empty_without_a_match_or_room():
    assert lookup_draft(row_with([1, 2, 3, 4]), limit=5) == []
    assert lookup_draft(row_with([1, 2, 1, 2]), limit=0) == []
    assert lookup_draft(row_with([7]), limit=3) == []


def test_draft_follows_a_repeating_runaway():
    row = row_with([10, 11, 12, 10, 11, 12, 10])
    assert lookup_draft(row, limit=4) == [11, 12, 10]  # "11 12 10" occurred before, followed by 11 12 10
