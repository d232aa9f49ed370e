"""The language: the shipped criteria files, the AST, the plan, lint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from crit.cli import cli
from crit.engine.eligibility import check_source, load_plan
from crit.grammar import ast
from crit.grammar.parse import parse_text

ROOT = Path(__file__).resolve().parent.parent
CRITERIA = sorted((ROOT / "criteria").rglob("*.crit"))


@pytest.mark.parametrize("path", CRITERIA, ids=lambda p: p.name)
def test_shipped_criteria_check_clean(path: Path) -> None:
    result = CliRunner().invoke(cli, ["check", str(path), "--strict"])
    if path.name == "aristotle.crit":
        # Two of the paper's evaluation questions are asked for their answers in SQL, not for a rule.
        assert result.exit_code == 1 and result.output.count("warning[") == 2, result.output
        assert "no criterion or let reads 'chads2_score'" in result.output and "reads 'glucose'" in result.output
        return
    assert result.exit_code == 0, result.output


def test_lint_flags_a_window_inside_a_phrase_and_a_question_nothing_reads() -> None:
    checked = check_source('boolean mi "a myocardial infarction in the past 6 months"\n'
                           'boolean htn "hypertension"\ninclude "x": mi\n')
    warnings = [d for d in checked.diagnostics if d.severity == "warning"]
    codes = [(w.code, w.message) for w in warnings]
    assert ("W203", "'mi' puts a time limit inside its phrase ('in the past 6 months')") in codes
    assert ("W204", "no criterion or let reads 'htn'") in codes
    assert "mi within 6 months" in next(w.hint or "" for w in warnings if w.code == "W203")


def test_aristotle_compiles_to_the_papers_questions() -> None:
    result = CliRunner().invoke(cli, ["compile", str(ROOT / "criteria" / "aristotle.crit"), "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    questions = plan["questions"]
    booleans = [q for q in questions if q["kind"] == "boolean" and q["name"] != "sex"]
    numerics = [q for q in questions if q["kind"] == "numeric"]
    assert len(questions) >= 23
    assert len(booleans) == 15
    assert {"platelets", "bilirubin", "ast", "creat", "hgb", "chads2_score", "lvef", "glucose"} <= {q["name"] for q in numerics}
    assert all(q["unit"] for q in numerics)
    lvef = next(q for q in numerics if q["name"] == "lvef")
    assert (lvef["order"], lvef["cap"]) == ("lowest", 55.0)
    assert next(q for q in numerics if q["name"] == "creat")["text"] == "What is the highest creatinine in the note, in mg/dL?"
    assert all(q["text"].startswith("Does the note document ") for q in booleans)
    assert len({q["fingerprint"] for q in questions}) == len(questions)
    # creatinine and hemoglobin ranges are sex-aware, so the built-in sex question is compiled in
    assert plan["needs_sex"] and any(q["name"] == "sex" for q in questions)
    assert plan["ranges"]["creat"]["female_high"] == 1.1


def test_sex_question_only_when_a_sex_aware_range_is_used() -> None:
    text = 'numeric ast highest "AST" in U/L\nrange ast any 10..40\nexclude "high": ast above range\n'
    assert not check_source(text).plan.needs_sex
    text = 'numeric hgb lowest "hemoglobin" in g/dL\nrange hgb male 13.5..17.5 female 12..15.5\nexclude "x": hgb < 9 g/dL\n'
    assert not check_source(text).plan.needs_sex  # declared but unused
    text += 'exclude "y": hgb below range\n'
    assert check_source(text).plan.needs_sex


def test_statements_and_expressions_build_typed_nodes() -> None:
    f = parse_text(
        'trial NCT1 "t"\n'
        'numeric creat highest "creatinine" in mg/dL aka "Cr", "serum creatinine"\n'
        '        guide "Use serum values."\n'
        'numeric lvef lowest "LVEF" in % cap 55\n'
        'range creat male 0.7..1.3 female 0.6..\n'
        'convert creat 1 mg/dL = 88.42 umol/L\n'
        'let score = 2 * (lvef <= 40) + -1\n'
        'exclude "renal": creat > 2.5 mg/dL or count(creat above range, lvef < 30) >= 2 if missing: not met\n'
        'include not (creat >= 1.5 * uln(creat))\n'
    )
    q = f.questions[0]
    assert (q.order, q.unit, q.aka, q.guide) == ("highest", "mg/dL", ["Cr", "serum creatinine"], "Use serum values.")
    r = f.of(ast.RangeDecl)[0]
    assert r.for_sex("female") == ast.Bound(sex="female", low=0.6, high=None)
    conv = f.of(ast.ConvertDecl)[0]
    assert (conv.analyte, conv.source.unit, conv.target.value) == ("creat", "mg/dL", 88.42)
    c = f.criteria[0]
    assert c.if_missing == "not met" and isinstance(c.expr, ast.Or)
    count = c.expr.args[1]
    assert isinstance(count, ast.Compare) and isinstance(count.left, ast.Aggregate) and count.left.func == "count"
    assert f.criteria[1].label == "not (creat >= 1.5 * uln(creat))"  # unlabelled: named by its text
    let = f.of(ast.LetDecl)[0]
    assert let.expr == ast.Arith(op="+", left=ast.Arith(op="*", left=ast.Quantity(value=2), right=ast.Compare(
        op="<=", left=ast.Name(name="lvef"), right=ast.Quantity(value=40))), right=ast.Neg(operand=ast.Quantity(value=1)))


def test_ast_round_trips_through_json() -> None:
    f = parse_text((ROOT / "criteria" / "aristotle.crit").read_text())
    again = ast.CritFile.model_validate_json(f.model_dump_json())
    assert again == f


def test_moving_a_statement_changes_no_fingerprint() -> None:
    text = (ROOT / "criteria" / "aristotle.crit").read_text()
    lines = text.splitlines()
    a = check_source(text).plan
    # ranges and lets moved to the end, blank lines and a comment on top: new positions, same meaning
    moving = [l for l in lines if l.startswith(("range ", "let "))]
    kept = [l for l in lines if l not in moving]
    reordered = "# moved\n\n\n" + "\n".join(kept + moving) + "\n"
    c = check_source(reordered).plan
    assert {q.name: q.fingerprint for q in a.questions} == {q.name: q.fingerprint for q in c.questions}
    assert a.rules_fingerprint == c.rules_fingerprint


def test_threshold_edit_changes_rules_not_questions() -> None:
    text = (ROOT / "criteria" / "aristotle.crit").read_text()
    a = check_source(text).plan
    b = check_source(text.replace("creat > 2.5 mg/dL", "creat > 2.0 mg/dL")).plan
    assert [q.fingerprint for q in a.questions] == [q.fingerprint for q in b.questions]
    assert a.rules_fingerprint != b.rules_fingerprint


@pytest.mark.parametrize(
    "phrase,code",
    [
        ("creatinine above 1.3 mg/dL", "W201"),
        ("platelet count < 100,000", "W201"),
        ("ejection fraction of at least 40%", "W201"),
        ("diabetes and hypertension", "W202"),
        ("heart failure & COPD", "W202"),
    ],
)
def test_lint_flags_questions_that_are_not_single_order(phrase: str, code: str) -> None:
    checked = check_source(f'boolean x "{phrase}"\ninclude x\n', "l.crit")
    assert checked.plan is not None  # warnings do not stop a run
    assert [d.code for d in checked.diagnostics] == [code]
    assert checked.diagnostics[0].hint


@pytest.mark.parametrize("phrase", ["atrial fibrillation or atrial flutter", "type 2 diabetes", "hemoglobin A1c"])
def test_lint_leaves_single_order_phrases_alone(phrase: str) -> None:
    assert check_source(f'boolean x "{phrase}"\ninclude x\n').diagnostics == []


def test_check_strict_fails_on_warnings(tmp_path: Path) -> None:
    p = tmp_path / "w.crit"
    p.write_text('boolean x "diabetes and hypertension"\ninclude x\n')
    assert CliRunner().invoke(cli, ["check", str(p)]).exit_code == 0
    result = CliRunner().invoke(cli, ["check", str(p), "--strict"])
    assert result.exit_code == 1 and "W202" in result.output


def test_units_convert_in_comparisons() -> None:
    ok = check_source('numeric hgb lowest "hemoglobin" in g/dL\nexclude "a": hgb < 90 g/L\n')
    assert ok.plan is not None
    mixed = check_source('numeric creat highest "creatinine" in mg/dL\nexclude "a": creat > 221 umol/L\n')
    assert mixed.plan is not None  # creatinine's molar mass makes umol/L convertible


def test_compile_plan_is_loadable() -> None:
    plan = load_plan(ROOT / "criteria" / "n2c2_2018.crit")
    assert len(plan.criteria) == 13
    assert {c.label for c in plan.criteria} >= {"ADVANCED-CAD", "HBA1C", "CREATININE", "MI-6MOS"}


def test_equals_after_a_number_is_a_comparison() -> None:
    # LALR shares the state after a number between `convert` and expressions
    text = 'numeric x "x" in mg/dL\ninclude "a": x * 2 = 6\ninclude "b": x / 2 = 1.5\nconvert x 1 mg/dL = 3 foo\n'
    assert check_source(text).plan is not None
    bad = check_source('numeric x "x" in mg/dL\nconvert x 1 mg/dL > 3 foo\n', "c.crit")
    assert [(d.code, d.line, d.col) for d in bad.errors] == [("E002", 2, 19)]


def test_language_gaps_real_criteria_files_hit(tmp_path):
    """°C and °F (an affine conversion), beats/min, breaths/min and bpm, and a range with no sex (any)."""
    from crit.engine.eligibility import load_plan
    from crit.grammar import units

    path = tmp_path / "vitals.crit"
    path.write_text(
        'trial T-1\nnumeric temp highest "body temperature" in °C\n'
        'numeric hr highest "heart rate" in beats/min\nnumeric rr highest "respiratory rate" in breaths/min\n'
        'numeric alt highest "alanine aminotransferase" in U/L\nrange alt 7..56\n'
        'include "no fever": temp < 100.4 °F\ninclude "tachycardia": hr > 100 bpm\ninclude "alt": alt within range\n',
        encoding="utf-8",
    )
    plan = load_plan(path)
    assert plan.ranges["alt"].male_low == plan.ranges["alt"].female_low == 7
    assert units.convert(100.4, "°F", "°C") == pytest.approx(38.0)
    assert units.convert(120, "beats/min", "bpm") == 120 and units.convert(16, "breaths/min", "/min") == 16


def test_between_is_both_ends_included_and_binds_tighter_than_and() -> None:
    """`x between L and H` is `x >= L and x <= H`, a bare low end takes the high end's unit, and the
    `and` inside `between` is not the boolean `and` around it."""
    from crit.engine.eligibility.compile import rules_sql

    head = 'boolean t2dm "type 2 diabetes"\nboolean dka "ketoacidosis"\nnumeric hba1c last "hemoglobin A1c" in %\n'
    written = check_source(head + 'include "a": t2dm and hba1c between 7 and 10 % and not dka\n').plan
    spelled = check_source(head + 'include "a": t2dm and (hba1c >= 7 % and hba1c <= 10 %) and not dka\n').plan
    assert written is not None and spelled is not None
    assert rules_sql(written) == rules_sql(spelled)
    mixed = check_source('numeric creat highest "creatinine" in mg/dL\ninclude "a": creat between 60 umol/L and 1.5 mg/dL\n')
    assert mixed.plan is not None  # each end keeps its own unit when both write one


def test_intervals_in_milliseconds() -> None:
    from crit.grammar import units

    plan = check_source('numeric qtc highest "QTc interval" in ms\nexclude "long QT": qtc > 0.47 s\n').plan
    assert plan is not None and plan.question("qtc").unit == "ms"
    assert units.convert(470, "msec", "s") == pytest.approx(0.47)
