"""The programmatic teacher (crit.trainer.generate): its labels are right by construction.

The checks read the generated text, not the generator's bookkeeping: each quote is parsed
back with the template it must come from (a denial for "absent", a statement for
"present", a family or hypothetical line for every passage of an NA pair), and a numeric
answer is recomputed from the numbers the passages write, by the question's order.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from crit.engine.eligibility import load_plan
from crit.engine.reading.passages import find_passages, question_terms, term_regex
from crit.engine.reading.reader import numbers_written
from crit.trainer import generate as g

ROOT = Path(__file__).resolve().parent.parent
PLAN = load_plan(ROOT / "criteria" / "aristotle.crit")
REAL = [("real-1", "HISTORY: The patient is seen for knee pain. She walks daily.\nPLAN: Ice and rest. Return in 2 weeks."),
        ("real-2", "The patient underwent an uneventful repair of the left inguinal hernia. Tolerated well.")]


def _pattern(template: str, term: str) -> re.Pattern[str]:
    """A template as a regex over one term: {t}/{T} the term, other fields any text."""
    out, at = "", 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out += re.escape(template[at:m.start()])
        out += re.escape(term) if m.group(1) in ("t", "T") else ".*?"
        at = m.end()
    return re.compile(out + re.escape(template[at:]) + "$", re.I)


def _sentences(quote: str) -> list[str]:
    parts: list[str] = []
    for piece in re.split(r"(?<=\.)\s+", quote.strip()):
        if parts and re.search(r"(?<![A-Za-z])[A-Z]\.$", parts[-1]) and piece[:1].islower():
            parts[-1] += " " + piece  # "A. fib" is one term, not two sentences
        else:
            parts.append(piece)
    return parts


def _from(quote: str, q, templates: list[str]) -> bool:
    """Whether some sentence of the quote is one of `templates` about one of the question's terms
    (read with and without the section header that starts a section's first line)."""
    parts = _sentences(quote)
    for header in g.SECTIONS:
        if quote.startswith(header + ": "):
            parts += _sentences(quote.removeprefix(header + ": "))
    return any(_pattern(t, term).match(p) for p in parts for t in templates for term in question_terms(q))


PRESENT = g.PRESENT + g.CURRENT + g.PLANNED + g.ON_DRUG
ABSENT = g.ABSENT + g.PLANNED_ABSENT + g.OFF_DRUG + g.STOPPED + g.RESOLVED
NA = g.FAMILY + g.HYPOTHETICAL + g.PLANNED_HYPOTHETICAL + g.DRUG_HYPOTHETICAL + g.PENDING


def _notes(seed: int, n: int = 12):
    cfg = g.GenerateConfig(notes=n, seed=seed, real_share=0.5)
    notes, _ = g.generate(PLAN.questions, cfg, REAL)
    return notes


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=10**6))
def test_every_label_follows_from_the_text(seed):
    notes = _notes(seed)
    assert notes, "a dozen notes write at least one pair"
    for note in notes:
        for p in note.pairs:
            q = p.question
            passages = find_passages(note.text, q)
            assert passages, "every pair has a mention: the engine would ask it"
            if p.type in ("boolean", "numeric"):
                assert note.text[p.span_start:p.span_end] == p.source, "the quote is the note's text at its span"
            if p.type == "boolean":
                templates = PRESENT if p.answer == "present" else ABSENT
                assert _from(p.source, q, templates), (p.answer, p.source)
                if p.answer == "absent":
                    # Nothing in the note affirms it: every other mention is not about the patient.
                    for s in passages:
                        text = s.text(note.text)
                        assert _from(text, q, ABSENT + NA), text
            elif p.type == "na-boolean":
                for s in passages:
                    text = s.text(note.text)
                    assert _from(text, q, NA) and not _from(text, q, PRESENT + ABSENT), text
            elif p.type == "numeric" and q.phrase != "age":
                # Recompute: the numbers right after a term, in note order, picked by the order.
                readings = []
                for s in passages:
                    text = s.text(note.text)
                    for term in question_terms(q):
                        for m in term_regex(term).finditer(text):
                            readings.extend(_readings(text[m.end():]))
                assert readings, p.source
                want = {"highest": max(readings), "lowest": min(readings), "first": readings[0]}.get(q.order or "",
                                                                                                     readings[-1])
                assert abs(float(p.answer) - want) < 1e-9, (q.order, readings, p.answer, p.source)
            elif p.type == "na-numeric":
                for s in passages:
                    assert _from(s.text(note.text), q, g.PENDING), s.text(note.text)


def _readings(after: str) -> list[float]:
    """The readings a template writes after a term: its values, never the date, reference range or
    the other labs of a panel line."""
    after = re.sub(r"\(ref [^)]*\)", "", after)
    after = re.sub(r"(?:goal|target) (?:of )?<?[\d.]+|above goal of [\d.]+", "", after, flags=re.I)
    after = re.sub(r"\bdrawn (?:at end of )?(?:\[\*\*[^*]*\*\*\]|\d+/\d+)", "", after)
    after = re.sub(r"\bon (\[\*\*[^*]*\*\*\]|\d+/\d+)", "", after)
    after = re.sub(r"\[\*\*[^*]*\*\*\]", "", after)
    after = re.sub(r"x10\^3/uL", "", after)
    after = re.split(r",\s*(?=[A-Z])|\.(?:\s|$)", after)[0]  # the next lab of a panel line, or the sentence end
    return numbers_written(after)


def test_the_same_seed_writes_the_same_notes_and_another_seed_others():
    a, b, c = _notes(7), _notes(7), _notes(8)
    assert [(n.note_id, n.text) for n in a] == [(n.note_id, n.text) for n in b]
    assert [n.text for n in a] != [n.text for n in c]


def test_a_real_note_keeps_its_text_and_is_silent_about_what_is_inserted():
    notes = [n for n in _notes(3, 40) if "-on-" in n.note_id]
    assert notes, "real_share 0.5 over 40 notes builds some on real notes"
    for n in notes:
        base = dict(REAL)[n.note_id.split("-on-")[1]]
        stripped = n.text
        for p in n.pairs:
            if p.source:
                stripped = stripped.replace(" " + p.source, "", 1)
        # What remains of the real note is in order; the inserted questions were absent from it.
        words = iter(stripped.split())
        assert all(w in words for w in base.split())
        for p in n.pairs:
            assert not find_passages(base, p.question)


def test_the_four_types_are_written_and_the_mess_is_there():
    notes = _notes(0, 200)
    types = {p.type for n in notes for p in n.pairs}
    assert types == {"boolean", "numeric", "na-boolean", "na-numeric"}
    text = "\n".join(n.text for n in notes)
    for mess in ("[**", "Denies", "Mother w/", "R/o", "pending", "(ref ", "->"):
        assert mess in text, mess


def test_relations_and_the_sex_question_are_not_written():
    names = {p.question.name for n in _notes(1, 100) for p in n.pairs}
    assert "af_reversible" not in names and "sex" not in names
    assert {"af", "creat", "age", "aspirin", "ablation"} <= names


def test_synth_names_the_columns_of_a_real_notes_table(tmp_path):
    """The shared --id-column/--text-column options (crit.engine.options) reach the programmatic teacher."""
    import csv

    import duckdb
    from click.testing import CliRunner

    from crit.cli import cli

    table = tmp_path / "notes.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["doc", "body"])
        w.writerows([[nid, text] for nid, text in REAL])
    db = tmp_path / "synth.duckdb"
    args = ["synth", str(table), "--teacher", "programmatic", "--count", "30", "--real-share", "1",
            "--db", str(db), "--criteria", str(ROOT / "criteria" / "aristotle.crit")]
    assert CliRunner().invoke(cli, args).exit_code != 0  # no note_id/text column: a clear error
    result = CliRunner().invoke(cli, [*args, "--id-column", "doc", "--text-column", "body"])
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(db), read_only=True)
    ids = [r[0] for r in con.execute("SELECT note_id FROM notes").fetchall()]
    con.close()
    assert ids and all(i.split("-on-")[1] in ("real-1", "real-2") for i in ids)


def test_a_range_is_two_readings_and_the_order_picks_its_end():
    """"EF 60-65%" for the lowest LVEF is 60; "creatinine 1.2 to 1.4" for the highest is 1.4."""
    # Two numbers joined by "-" or "to", not "from A to B" (two readings), a date or a reference range.
    written_range = re.compile(r"(?<!from )(?<![\w*/.-])(\d+(?:\.\d+)?)(?:-| to )(\d+(?:\.\d+)?)(?![\w*/-])")
    seen = {"lowest": 0, "highest": 0}
    for n in _notes(0, 300):
        for p in n.pairs:
            m = written_range.search(p.source)
            if p.type != "numeric" or m is None or "(ref" in p.source or p.question.order not in seen:
                continue
            low, high = float(m.group(1)), float(m.group(2))
            assert low < high, p.source
            assert float(p.answer) == (low if p.question.order == "lowest" else high), (p.question.order, p.source)
            seen[p.question.order] += 1
    assert seen["lowest"] and seen["highest"], seen
