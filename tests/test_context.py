"""crit.engine.reading.context: negated, hypothetical, family and possible mentions, from a data file of cues."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from crit.engine.reading.context import CUES_FILE, DEFAULT_CUES, Context, load_cues, read_context


def context_of(passage: str, term: str, section: str | None = None, **kw) -> Context:
    start = passage.lower().index(term.lower())
    return read_context(passage, start, start + len(term), section, **kw)


@pytest.mark.parametrize(("passage", "term", "expected"), [
    ("No history of diabetes.", "diabetes", "negated"),
    ("Specifically denies chest pain, shortness of breath, palpitations or diabetes.", "diabetes", "negated"),
    ("Counselled on the risk of stroke.", "stroke", "hypothetical"),
    ("Mother had a stroke at 60.", "stroke", "family"),
    ("History of questionable TIA.", "TIA", "possible"),
    ("History of hypertension and diabetes.", "diabetes", None),
])
def test_each_kind_of_context(passage: str, term: str, expected: str | None) -> None:
    c = context_of(passage, term)
    flags = {k for k, v in c.model_dump().items() if v}
    assert flags == ({expected} if expected else set())


def test_a_family_history_section_is_the_familys() -> None:
    assert context_of("Diabetes and stroke.", "stroke", section="FAMILY HISTORY").family
    assert not context_of("Diabetes and stroke.", "stroke", section="PAST MEDICAL HISTORY").family


def test_the_shipped_cues_are_the_reader_s_own() -> None:
    assert load_cues() == DEFAULT_CUES and CUES_FILE.name == "context_cues.toml"
    assert "mother" in DEFAULT_CUES.family.relatives


def test_a_cue_added_to_the_data_file_is_read(tmp_path: Path) -> None:
    """A new hypothetical cue, added in the data file alone, turns a counselling line from a finding
    the patient has into a what-if."""
    passage = "Counselled about stroke and its warning signs."
    assert context_of(passage, "stroke").about_patient  # no shipped cue covers "counselled about"
    text = CUES_FILE.read_text().replace('preceding = [\n    "rule out",', 'preceding = [\n    "counselled about", "rule out",')
    added = tmp_path / "cues.toml"
    added.write_text(text)
    cues = load_cues(added)
    assert cues.hypothetical.preceding[0] == "counselled about"
    assert context_of(passage, "stroke", cues=cues).hypothetical
    assert context_of(passage, "stroke").about_patient  # the shipped cues are untouched


def test_a_misspelt_section_of_the_cue_file_is_refused(tmp_path: Path) -> None:
    data = tomllib.loads(CUES_FILE.read_text())
    bad = tmp_path / "cues.toml"
    bad.write_text(CUES_FILE.read_text().replace("[possible]", "[posible]"))
    assert "possible" in data
    with pytest.raises(ValueError, match="posible"):
        load_cues(bad)
