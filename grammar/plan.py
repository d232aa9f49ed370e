"""Plan: a checked .crit file compiled to the questions to ask and the rules to apply.

The plan is the boundary between the language and the engine: backends read its
questions, the rules layer reads its lets, ranges and criteria. Questions and
rules are fingerprinted apart, so editing a threshold changes the rules'
fingerprint and leaves every question's (and so every cached answer) alone.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from crit.grammar import ast, units
from crit.grammar.errors import CritError, Diagnostic
from crit.grammar.lint import lint
from crit.grammar.parse import parse_text
from crit.grammar.questions import SEX_PHRASE, Question, make_question
from crit.grammar.resolve import Symbols, check

SEX_QUESTION = make_question(
    "sex",
    "boolean",
    SEX_PHRASE,
    guide=(
        "Answer present if the note describes the patient as female (she, her, woman, girl, Mrs., Ms.), "
        "absent if it describes the patient as male (he, his, man, boy, Mr.), "
        "and not mentioned if it does not say."
    ),
)


class RangeRule(BaseModel):
    """A reference range in the question's own unit, per sex (None = open bound)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    unit: str | None
    male_low: float | None
    male_high: float | None
    female_low: float | None
    female_high: float | None


class WindowSpec(BaseModel):
    """A window some rule reads: a question's answers from the notes dated at most `amount` `unit`s
    before the index date (and not after it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str
    amount: int
    unit: units.TimeUnit

    @property
    def label(self) -> str:
        return f"{self.amount} {self.unit}{'' if self.amount == 1 else 's'}"


def window_spec(node: ast.Window) -> WindowSpec:
    """The window a checked `NAME within N UNIT` reads."""
    assert isinstance(node.operand, ast.Name)
    unit = units.time_unit(node.unit)
    assert unit is not None  # resolve has checked it
    return WindowSpec(question=node.operand.name, amount=int(node.amount), unit=unit)


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trial_id: str | None
    trial_title: str | None
    source: str | None  # path of the .crit file
    source_hash: str
    # The file's text, kept so a store can hold the plan it ran (report and merge need no file on disk).
    source_text: str = Field(default="", exclude=True, repr=False)
    questions: list[Question]
    needs_sex: bool  # a sex-aware range is used: sex must come from the notes or the built-in question
    lets: list[ast.LetDecl]  # dependencies first
    criteria: list[ast.CriterionDecl]
    ranges: dict[str, RangeRule]
    conversions: list[units.Conversion]
    windows: list[WindowSpec] = []  # in the order rules first use them
    index: Literal["first note", "last note"] = "last note"  # what a patient's windows end at
    rules_fingerprint: str
    # Numeric questions whose unit a bare number is read in (`in mg/dL assumed`); a unit with no dimension
    # (%, points) reads bare numbers anyway (units.has_no_dimension).
    unit_assumed: list[str] = []

    def question(self, name: str) -> Question:
        return next(q for q in self.questions if q.name == name)

    @property
    def model_questions(self) -> list[Question]:
        """The questions a model answers (the built-in sex question included when needed)."""
        return self.questions


def _range_rule(r: ast.RangeDecl, q: ast.QuestionDecl, sym: Symbols) -> RangeRule:
    # Ranges written in another unit are converted once, here, to the question's unit.
    lin = units.linear(r.unit, q.unit, sym.analyte_of(q.name), tuple(sym.conversions)) if r.unit and q.unit else None

    def conv(v: float | None) -> float | None:
        if v is None or lin is None:
            return v
        return v * lin.factor + lin.offset

    male, female = r.for_sex("male"), r.for_sex("female")
    return RangeRule(
        name=r.name,
        unit=q.unit,
        male_low=conv(male.low) if male else None,
        male_high=conv(male.high) if male else None,
        female_low=conv(female.low) if female else None,
        female_high=conv(female.high) if female else None,
    )


def _uses_sex(file: ast.CritFile, ranges: dict[str, RangeRule]) -> bool:
    def sex_aware(name: str) -> bool:
        r = ranges.get(name)
        return r is not None and (r.male_low, r.male_high) != (r.female_low, r.female_high)

    exprs = [c.expr for c in file.criteria] + [l.expr for l in file.of(ast.LetDecl)]
    declared = {q.name for q in file.questions}
    for expr in exprs:
        for node in ast.walk(expr):
            if isinstance(node, ast.Name) and node.name == "sex" and "sex" not in declared:
                return True  # `sex = female`: the built-in sex
            if isinstance(node, ast.RangeTest) and isinstance(node.operand, ast.Name) and sex_aware(node.operand.name):
                return True
            if isinstance(node, ast.BoundRef) and sex_aware(node.name):
                return True
    return False


def compile_plan(file: ast.CritFile, symbols: Symbols, source_text: str = "") -> Plan:
    questions = [
        make_question(
            q.name, q.type, q.phrase, order=q.order, unit=q.unit, aka=tuple(q.aka), not_aka=tuple(q.not_aka),
            guide=q.guide, cap=q.cap, gate=q.gate, infer=q.infer,
        )
        for q in file.questions
    ]
    ranges = {name: _range_rule(r, symbols.questions[name], symbols) for name, r in symbols.ranges.items()}
    needs_sex = _uses_sex(file, ranges)
    if needs_sex:
        questions.append(SEX_QUESTION)
    lets = [symbols.lets[name] for name in symbols.let_order]
    windows: list[WindowSpec] = []
    for expr in [l.expr for l in lets] + [c.expr for c in file.criteria]:
        for node in ast.walk(expr):
            if isinstance(node, ast.Window) and window_spec(node) not in windows:
                windows.append(window_spec(node))
    index = file.of(ast.IndexDecl)[0].anchor if file.of(ast.IndexDecl) else "last note"
    assumed = sorted(q.name for q in file.of(ast.QuestionDecl) if q.unit_assumed)
    rules = {
        "lets": [l.meaning() for l in lets],
        "criteria": [c.meaning() for c in file.criteria],
        "ranges": {k: v.model_dump() for k, v in sorted(ranges.items())},
        "conversions": [c.model_dump() for c in symbols.conversions],
        "caps": {q.name: q.cap for q in questions if q.cap is not None},
        "units": {q.name: q.unit for q in questions if q.unit is not None},
        "index": index,
    }
    if assumed:  # only when a file says it, so the fingerprints of files that do not are unchanged
        rules["unit_assumed"] = assumed
    trial = file.trial
    return Plan(
        trial_id=trial.id if trial else None,
        trial_title=trial.title if trial else None,
        source=file.path,
        source_hash=hashlib.sha256(source_text.encode()).hexdigest()[:16],
        source_text=source_text,
        questions=questions,
        needs_sex=needs_sex,
        lets=lets,
        criteria=file.criteria,
        ranges=ranges,
        conversions=symbols.conversions,
        windows=windows,
        index=index,
        rules_fingerprint=hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:16],
        unit_assumed=assumed,
    )


class Checked(BaseModel):
    """The result of checking a file: its plan (None when it has errors) and every diagnostic."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    source: str
    plan: Plan | None
    diagnostics: list[Diagnostic]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def check_language(text: str, path: str | None = None) -> Checked:
    """Parse, resolve, lint and compile: the language's own checks (crit.engine.eligibility.check_source adds
    that the rules compile). Syntax errors come back as diagnostics, never raised."""
    try:
        file = parse_text(text, path)
    except CritError as err:
        return Checked(source=text, plan=None, diagnostics=err.diagnostics)
    symbols, diags = check(file)
    warnings = lint(file)
    if any(d.severity == "error" for d in diags):
        # A name misspelt in a rule leaves its question looking unread: "unused" would only repeat the error.
        warnings = [w for w in warnings if w.code != "W204"]
    diags = sorted(diags + warnings, key=lambda d: (d.span.line, d.span.col) if d.span else (10**9, 0))
    has_errors = any(d.severity == "error" for d in diags)
    plan = None if has_errors else compile_plan(file, symbols, text)
    return Checked(source=text, plan=plan, diagnostics=diags)
