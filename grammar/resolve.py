"""Resolve: the semantic checks of a parsed file: names, types, units, ranges, cycles.

`check(file)` returns every problem it finds, in source order, as Diagnostics;
`resolve(file)` raises them as one CritError, or returns a Symbols table the
engine compiles from. Warnings (lint) live in crit.grammar.lint.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal

from crit.grammar import ast, units
from crit.grammar.errors import CritError, Diagnostic, Span

Type = Literal["bool", "num", "sex"]
SEX_NAME = "sex"  # built in: the patient's sex, unless the file declares a question of that name

# `sex` is answered from the corpus or by a built-in question; it cannot be redeclared.
RESERVED = {"sex"}


# The longest window: the calendar of note dates, years 1 to 9999 (crit.engine.notes.reader.parse_date).
MAX_WINDOW_DAYS = 9999 * 366
_DAYS_IN = {"day": 1, "week": 7, "month": 31, "year": 366}


@dataclass
class Symbols:
    """Everything a name in a .crit file can mean, after checking."""

    questions: dict[str, ast.QuestionDecl] = field(default_factory=dict)
    lets: dict[str, ast.LetDecl] = field(default_factory=dict)
    ranges: dict[str, ast.RangeDecl] = field(default_factory=dict)
    conversions: list[units.Conversion] = field(default_factory=list)
    types: dict[str, Type] = field(default_factory=dict)
    let_order: list[str] = field(default_factory=list)  # dependencies first

    def unit_of_name(self, name: str) -> str | None:
        q = self.questions.get(name)
        return q.unit if q else None

    def analyte_of(self, name: str) -> str | None:
        q = self.questions.get(name)
        return units.analyte_of(q.phrase, q.aka) if q else None


class _Checker:
    def __init__(self, file: ast.CritFile):
        self.file = file
        self.path = file.path
        self.diags: list[Diagnostic] = []
        self.sym = Symbols()

    def error(self, code: str, message: str, span: Span | None, label: str | None = None, hint: str | None = None) -> None:
        self.diags.append(
            Diagnostic(code=code, message=message, file=self.path, span=span, label=label, hint=hint)
        )

    # -- declarations ------------------------------------------------------------

    def declare(self) -> None:
        first_seen: dict[str, ast.Node] = {}
        trials = self.file.of(ast.Trial)
        for extra in trials[1:]:
            self.error("E101", "more than one trial header", extra.span, "a file describes one trial")
        for extra in self.file.of(ast.IndexDecl)[1:]:
            self.error("E101", "more than one index date", extra.span, "a file has one index date",
                       "keep one line: index date = first note (or last note)")
        for stmt in self.file.statements:
            if isinstance(stmt, ast.ConvertDecl):
                self.declare_conversion(stmt)
            if not isinstance(stmt, (ast.QuestionDecl, ast.LetDecl)):
                continue
            if stmt.name in RESERVED:
                self.error("E111", f"'{stmt.name}' is built in and cannot be declared", stmt.span,
                           hint="sex comes from the notes' sex column, or from a built-in question")
                continue
            if stmt.name in first_seen:
                where = first_seen[stmt.name].span
                self.error("E103", f"'{stmt.name}' is declared twice", stmt.span,
                           "second declaration",
                           f"first declared on line {where.line}; rename one of them" if where else None)
                continue
            first_seen[stmt.name] = stmt
            if isinstance(stmt, ast.QuestionDecl):
                self.sym.questions[stmt.name] = stmt
                self.sym.types[stmt.name] = "bool" if stmt.type == "boolean" else "num"
                self.check_question(stmt)
            else:
                self.sym.lets[stmt.name] = stmt

    def declare_conversion(self, stmt: ast.ConvertDecl) -> None:
        if stmt.source.unit is None or stmt.target.unit is None:
            self.error("E107", "a conversion needs a unit on both sides", stmt.span,
                       hint="e.g. convert creat 1 mg/dL = 88.42 umol/L")
            return
        if stmt.source.value == 0:
            self.error("E107", "a conversion cannot start from 0", stmt.source.span)
            return
        analyte = None
        if stmt.analyte is not None:
            q = self.file_question(stmt.analyte)
            analyte = units.analyte_of(q.phrase, q.aka) if q else stmt.analyte
        self.sym.conversions.append(
            units.Conversion(
                analyte=analyte, from_unit=stmt.source.unit, to_unit=stmt.target.unit,
                factor=stmt.target.value / stmt.source.value,
            )
        )

    def file_question(self, name: str) -> ast.QuestionDecl | None:
        return next((q for q in self.file.questions if q.name == name), None)

    def unit_known(self, unit: str) -> bool:
        if units.is_known_unit(unit):
            return True
        return any(unit in (c.from_unit, c.to_unit) for c in self.sym.conversions)

    def check_question(self, q: ast.QuestionDecl) -> None:
        if not q.phrase.strip():
            self.error("E112", f"'{q.name}' has an empty phrase", q.phrase_span, hint="say what to look for in the note")
        if q.unit_assumed and q.unit is None:
            self.error("E115", f"'{q.name}' says `assumed` but names no unit to assume", q.span,
                       hint="write the unit first: in mg/dL assumed")
        if q.infer and q.type != "boolean":
            self.error("E116", f"'{q.name}' is numeric: `infer` is for boolean questions", q.span,
                       hint="a number is read where the note writes it, never inferred; remove `infer`")
        if q.type == "boolean":
            for what, value in (("an order", q.order), ("a unit", q.unit), ("a cap", q.cap)):
                if value is not None:
                    self.error("E110", f"boolean '{q.name}' cannot have {what}", q.span,
                               hint="declare it numeric if the note gives a value")
            return
        if q.unit is not None and not self.unit_known(q.unit):
            self.error("E107", f"unknown unit '{q.unit}'", q.unit_span or q.span, "not a unit crit knows",
                       hint=_unit_hint(q.unit, "use a lab unit such as mg/dL, g/dL, umol/L, 10^3/uL, %, years, "
                                               "or add a `convert` line"))

    def declare_ranges(self) -> None:
        for r in self.file.of(ast.RangeDecl):
            if r.name in self.sym.ranges:
                self.error("E103", f"a range for '{r.name}' is declared twice", r.span)
                continue
            kind = self.sym.types.get(r.name)
            if r.name not in self.sym.questions:
                self.unknown_name(r.name, r.span, numeric_only=True)
                continue
            if kind != "num":
                self.error("E105", f"'{r.name}' is boolean; a range needs a numeric question", r.span)
                continue
            sexes = [b.sex for b in r.bounds]
            if len(set(sexes)) != len(sexes):
                self.error("E105", f"the range for '{r.name}' names a sex twice", r.span)
            for b in r.bounds:
                if b.low is not None and b.high is not None and b.low > b.high:
                    self.error("E105", f"range {b.low:g}..{b.high:g} is empty (low above high)", b.span,
                               hint="write low..high")
            if r.unit is not None:
                self.check_convertible(r.unit, r.name, r.span)
            self.sym.ranges[r.name] = r

    # -- expressions -------------------------------------------------------------

    def unknown_name(self, name: str, span: Span | None, numeric_only: bool = False) -> None:
        pool = [n for n, t in self.sym.types.items() if t == "num"] if numeric_only else [*self.sym.types, *self.sym.lets]
        close = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
        self.error("E102", f"unknown name '{name}'", span, "not declared",
                   f"did you mean '{close[0]}'?" if close else "declare it with `boolean`, `numeric` or `let`")

    def is_builtin_sex(self, expr: ast.Node) -> bool:
        return isinstance(expr, ast.Name) and expr.name == SEX_NAME and SEX_NAME not in self.sym.types

    def check_convertible(self, unit: str, name: str, span: Span | None) -> None:
        target = self.sym.unit_of_name(name)
        if target is None:
            self.error("E104", f"'{name}' has no unit, so '{unit}' cannot be compared with it", span,
                       hint=f"declare the unit: numeric {name} ... in <unit>")
            return
        if units.linear(unit, target, self.sym.analyte_of(name), tuple(self.sym.conversions)) is None:
            self.error("E104", f"cannot convert {unit} to {target} (the unit of '{name}')", span,
                       f"not convertible to {target}",
                       f"write the threshold in {target}, or add: convert {name} 1 {target} = <factor> {unit}")

    def type_of(self, expr: ast.Node) -> Type | None:
        """The expression's type, reporting errors; None when an error makes it unknowable."""
        if isinstance(expr, ast.Quantity):
            return "num"
        if isinstance(expr, ast.BoolLit):
            return "bool"
        if isinstance(expr, ast.SexLit):
            return "sex"
        if isinstance(expr, ast.Name):
            if expr.name in self.sym.types:
                return self.sym.types[expr.name]
            if expr.name == SEX_NAME:
                return "sex"
            self.unknown_name(expr.name, expr.span)
            return None
        if isinstance(expr, ast.BoundRef):
            self.check_range_name(expr.name, expr.span, f"{expr.func}()")
            return "num"
        if isinstance(expr, ast.Neg):
            self.need(expr.operand, "num", "'-'")
            return "num"
        if isinstance(expr, ast.Arith):
            # Booleans count as 1/0 in arithmetic (CHADS2 adds them).
            self.type_of(expr.left)
            self.type_of(expr.right)
            return "num"
        if isinstance(expr, ast.Compare):
            return self.check_compare(expr)
        if isinstance(expr, (ast.And, ast.Or)):
            for arg in expr.args:
                self.need(arg, "bool", f"'{expr.kind}'")
            return "bool"
        if isinstance(expr, ast.Not):
            self.need(expr.operand, "bool", "'not'")
            return "bool"
        if isinstance(expr, ast.Aggregate):
            for arg in expr.args:
                self.need(arg, "bool", f"{expr.func}()")
            return "num" if expr.func == "count" else "bool"
        if isinstance(expr, ast.RangeTest):
            operand = expr.operand
            if isinstance(operand, ast.Window):
                self.check_window(operand)
                operand = operand.operand
            if not isinstance(operand, ast.Name):
                self.error("E109", f"'{expr.side} range' applies to a numeric question by name", expr.operand.span,
                           hint="e.g. creat above range")
                return "bool"
            self.check_range_name(operand.name, operand.span, f"'{expr.side} range'")
            return "bool"
        if isinstance(expr, ast.Window):
            return self.check_window(expr)
        raise TypeError(f"unhandled node {type(expr).__name__}")  # a bug, not user input

    def need(self, expr: ast.Node, want: Type, where: str) -> None:
        got = self.type_of(expr)
        if got is None or got == want:
            return
        if got == "sex":
            self.error("E106", f"{where} needs a {'condition' if want == 'bool' else 'number'}, but this is a sex",
                       expr.span, "male or female", "compare it, e.g. sex = female")
            return
        if want == "bool":
            example = f"{expr.name} >= 1" if isinstance(expr, ast.Name) else "x >= 1"
            self.error("E106", f"{where} needs a condition, but this is a number", expr.span, "a number",
                       f"compare it, e.g. {example}")
        else:
            self.error("E106", f"{where} needs a number, but this is a condition", expr.span, "a condition")

    def check_window(self, expr: ast.Window) -> Type | None:
        """`NAME within N days|weeks|months|years`: a window on one question; its type is the question's."""
        if expr.amount <= 0 or not float(expr.amount).is_integer():
            self.error("E113", f"a window is a whole number of days, weeks, months or years, not {expr.amount:g}",
                       expr.duration_span or expr.span, "not a whole number", "e.g. within 6 months, within 90 days")
        unit = units.time_unit(expr.unit)
        if unit is None:
            what = f"'{expr.unit}' is not a unit of time" if expr.unit else "a window needs a unit of time"
            self.error("E113", what, expr.duration_span or expr.span, "expected days, weeks, months or years",
                       "e.g. mi within 6 months")
        elif expr.amount > 0 and expr.amount * _DAYS_IN[unit] > MAX_WINDOW_DAYS:
            # Note dates run from year 1 to 9999: a longer window is no limit at all, and its arithmetic
            # overflows DuckDB's dates after every note has been answered.
            self.error("E114", f"a window of {int(expr.amount):,} {expr.unit} is longer than the calendar of note dates "
                       "(years 1 to 9999)", expr.duration_span or expr.span, "too long",
                       "a window of at most 9999 years; for no time limit, leave the window out")
        operand = expr.operand
        if not isinstance(operand, ast.Name):
            self.error("E113", "a window applies to one question by name", operand.span,
                       "not a question", "e.g. mi within 6 months; window each question inside an expression")
            self.type_of(operand)
            return None
        if operand.name in self.sym.lets:
            self.error("E113", f"a window applies to a question, and '{operand.name}' is a let", operand.span,
                       "a let has no note dates of its own",
                       f"put the window on the questions '{operand.name}' reads, inside its definition")
            return None
        if operand.name == SEX_NAME and operand.name not in self.sym.questions:
            self.error("E113", "sex has no window: it is the patient's, whatever the date", operand.span,
                       hint="write sex = female without a window")
            return None
        return self.type_of(operand)

    def check_range_name(self, name: str, span: Span | None, what: str) -> None:
        if name not in self.sym.types:
            self.unknown_name(name, span, numeric_only=True)
        elif self.sym.types[name] != "num" or name not in self.sym.questions:
            self.error("E109", f"{what} needs a numeric question, and '{name}' is not one", span)
        elif name not in self.sym.ranges:
            self.error("E109", f"no range is declared for '{name}'", span, "no range",
                       f"add one, e.g. range {name} male 0.7..1.3 female 0.6..1.1")

    def check_compare(self, expr: ast.Compare) -> Type:
        for side, other in ((expr.left, expr.right), (expr.right, expr.left)):
            if (self.is_builtin_sex(side) and isinstance(other, ast.Name)
                    and other.name not in self.sym.types and other.name not in self.sym.lets):
                # `sex = other`: a word that is neither male nor female, not a name the user forgot to declare.
                self.error("E106", f"sex is male or female, not '{other.name}'", other.span, "not a sex",
                           "write sex = female or sex = male (a note whose sex is unknown makes the criterion unknown)")
                return "bool"
        left, right = self.type_of(expr.left), self.type_of(expr.right)
        if "sex" in (left, right):
            if left and right and (left != right or expr.op not in ("=", "!=")):
                self.error("E106", "sex is compared only with male or female, by = or !=", expr.span,
                           hint="e.g. sex = female")
            return "bool"
        if left and right and left != right:
            bool_side = expr.left if left == "bool" else expr.right
            self.error("E106", "a condition is compared with a number", expr.span,
                       "a boolean compared with a number",
                       f"'{_describe(bool_side)}' is true/false; compare numbers, or use it alone")
        elif left == "bool" and right == "bool" and expr.op not in ("=", "!="):
            self.error("E106", f"'{expr.op}' compares numbers, but both sides are conditions", expr.span,
                       hint="use = or !=, or and/or/not")
        elif left == "num" and right == "num":
            self.check_units(expr)
        return "bool"

    def check_units(self, expr: ast.Compare) -> None:
        # A quantity's unit must convert to the unit of the question on the other side.
        for side, other in ((expr.left, expr.right), (expr.right, expr.left)):
            name = _measured_name(other)
            for q in _quantities(side):
                if q.unit is None:
                    continue
                if not self.unit_known(q.unit):
                    self.error("E107", f"unknown unit '{q.unit}'", q.span, "not a unit crit knows",
                               hint=_unit_hint(q.unit, "use a lab unit such as mg/dL, g/dL, umol/L, 10^3/uL, %, "
                                                       "or add a `convert` line"))
                elif name is not None:
                    self.check_convertible(q.unit, name, q.span)

    # -- lets and criteria ---------------------------------------------------------

    def check_lets(self) -> None:
        graph = {name: [n.name for n in ast.names_in(let.expr) if isinstance(n, ast.Name) and n.name in self.sym.lets]
                 for name, let in self.sym.lets.items()}
        state: dict[str, int] = {}  # 1 visiting, 2 done
        order: list[str] = []
        cyclic: set[str] = set()

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = path[path.index(name):] + [name]
                if not set(cycle) & cyclic:
                    let = self.sym.lets[cycle[0]]
                    self.error("E108", "these lets depend on each other in a cycle: " + " -> ".join(cycle),
                               let.span, "part of a cycle", "a let may only use questions and earlier-defined values")
                cyclic.update(cycle)
                return
            state[name] = 1
            for dep in graph[name]:
                visit(dep, path + [name])
            state[name] = 2
            order.append(name)

        for name in self.sym.lets:
            visit(name, [])
        self.sym.let_order = [n for n in order if n not in cyclic]
        for name in self.sym.let_order:
            t = self.type_of(self.sym.lets[name].expr)
            if t is not None:
                self.sym.types[name] = t
        for name in cyclic:
            self.sym.types.setdefault(name, "num")

    def check_criteria(self) -> None:
        for c in self.file.criteria:
            self.need(c.expr, "bool", f"{c.type} '{c.label}'")

    def run(self) -> Symbols:
        if not self.file.statements:
            self.error("E100", "the file has no statements", Span(line=1, col=1, end_line=1, end_col=2),
                       hint='start with: trial NCT00000000 "title", then questions and include/exclude lines')
            return self.sym
        self.declare()
        self.declare_ranges()
        self.check_lets()
        self.check_criteria()
        if not self.file.criteria and not self.file.questions:
            self.error("E100", "the file declares no question and no criterion", None)
        return self.sym


def _unit_hint(unit: str, general: str) -> str:
    if unit.lstrip("°").lower() in ("k", "degk", "kelvin") and unit.lower() not in ("k",):
        return "temperatures are °C or °F (degC, degF); kelvin is no clinical unit"
    return general


def _describe(expr: ast.Node) -> str:
    return expr.name if isinstance(expr, ast.Name) else expr.kind


def _quantities(expr: ast.Node) -> list[ast.Quantity]:
    # Units matter on quantities added, subtracted or compared; factors (2 * uln) carry none.
    if isinstance(expr, ast.Quantity):
        return [expr]
    if isinstance(expr, ast.Arith) and expr.op in "+-":
        return _quantities(expr.left) + _quantities(expr.right)
    if isinstance(expr, ast.Neg):
        return _quantities(expr.operand)
    return []


def _measured_name(expr: ast.Node) -> str | None:
    """The question whose unit an expression is measured in: `creat`, `2 * uln(creat)`, ..."""
    if isinstance(expr, ast.Name):
        return expr.name
    if isinstance(expr, ast.BoundRef):
        return expr.name
    if isinstance(expr, (ast.Neg, ast.Window)):
        return _measured_name(expr.operand)
    if isinstance(expr, ast.Arith):
        return _measured_name(expr.left) or _measured_name(expr.right)
    return None


def check(file: ast.CritFile) -> tuple[Symbols, list[Diagnostic]]:
    checker = _Checker(file)
    symbols = checker.run()
    diags = sorted(checker.diags, key=lambda d: (d.span.line, d.span.col) if d.span else (10**9, 0))
    return symbols, diags


def resolve(file: ast.CritFile, source: str | None = None) -> Symbols:
    symbols, diags = check(file)
    errors = [d for d in diags if d.severity == "error"]
    if errors:
        raise CritError(errors, source)
    return symbols
