"""Rules, compiled: a plan's lets and criteria as one DuckDB SQL script (``rules_sql``).

Pure: no connection and no data; crit.engine.rules loads the script's inputs
(``Tables``) and runs it. There is one evaluator and it is this SQL: no Python copy
of the logic exists, so what ``crit compile --json`` shows is exactly what decides
eligibility, and a threshold or window edit re-runs this script over the same
answers without any model.

The script, in order:

1. ``answer_values``: one row per note and question, the answer chosen by
   ``answer_key``, converted to the question's unit (``value * factor + offset``,
   one map per distinct reported unit, from ``crit.grammar.units.linear``),
   capped, and a reason when it has no usable value: ``na`` (not in the note),
   ``unit`` (a unit that does not convert: never compared silently),
   ``error`` (generation failed) or ``missing`` (no answer row for the note);
   with the span it came from and the note's patient and date.
2. Per note: a decided row per note (its answers as columns, one join per
   question; each window drawn from the note's own date; the lets; each
   criterion's status and reason), unpivoted into ``criteria``; ``eligibility``
   read across the row (eligible / ineligible / unknown and the labels that
   decided it); the view ``attrition`` (notes remaining before and after each
   criterion, in file order, like an OHDSI ATLAS attrition report).
3. Per patient, for notes that carry a patient id: ``patient_answers`` (each
   question and window combined over the patient's notes, with the note and
   span each answer came from; windows end at the patient's index date), then
   the same decided row, ``patient_criteria``, ``patient_eligibility`` and the
   view ``patient_attrition``. Without patient ids these tables are empty.

Logic is Kleene's three-valued logic, which SQL's NULL already is: NULL is
unknown, and AND / OR / NOT propagate it as Kleene does. Alongside each
expression the compiler builds a second SQL expression that, where the first is
NULL, says why: the reason of the first unknown input that made it unknown.
Booleans count 1 / 0 in arithmetic (CHADS2 adds them). Division by zero is
unknown (reason ``value``). ``count(...)`` compared with a constant is exact:
the count lies between the number of true arguments and that number plus the
unknown ones, and the comparison is decided whenever the whole interval agrees;
``count(...)`` used any other way (in arithmetic) is unknown as soon as one
argument is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

from crit.engine.plan import Plan, RangeRule, WindowSpec, window_spec
from crit.engine.questions import SEX_PHRASE, Question
from crit.engine.sql import ident, literal
from crit.grammar import ast, units
from crit.grammar.errors import CritError

__all__ = ["FEMALE", "MALE", "Reason", "Status", "Tables", "analyte", "rules_sql", "statements"]

Status = Literal["met", "not met", "unknown"]
Reason = Literal["value", "na", "unit", "sex", "error", "missing", "missing-policy", "window"]

# Spellings of the notes' sex column that we accept (compared lower-cased, trimmed).
MALE = ("male", "m", "man")
FEMALE = ("female", "f", "woman")


class Tables:
    """The temporary tables the script reads besides the store's own (crit.engine.rules loads them
    first) and the scratch tables it makes on the way; all are dropped after an evaluation."""

    answers = "_crit_answers"  # a view of the store's answers, with spans where it has them
    questions = "_crit_questions"  # question, kind, cap, ord (the question's order)
    keys = "_crit_keys"  # question, answer_key, only_key: the answers to read
    units = "_crit_units"  # question, unit_key, factor, offset (factor NULL: unit does not convert)
    notes = "_crit_notes"  # note_id, sex, patient_id, note_date, index_date, source_row
    # note_id, question, answer_key, value, unit, span_start, span_end: every value an answer lists
    candidates = "_crit_candidates"
    # made by the script
    note_sex = "_crit_note_sex"  # note_id, sex: the notes' column, else the built-in question
    patient_sex = "_crit_patient_sex"  # patient_id, sex: the sex the patient's notes agree on
    note_decided = "_crit_note_decided"  # one row per note: answers, lets and criteria as columns
    patient_decided = "_crit_patient_decided"

    views = (answers,)
    tables = (questions, keys, units, notes, candidates, note_sex, patient_sex, note_decided, patient_decided)


# ---- compiling expressions ----------------------------------------------------------


Cause = tuple[str, str]  # (SQL that may be NULL, SQL of the reason when it is)


class _Sql(NamedTuple):
    """A compiled expression: its SQL, its type, and the inputs whose NULL makes it NULL.

    `causes` is ordered: where `sql` is NULL, the reason is that of the first cause
    that is NULL. A strict operation (NULL exactly when an operand is: comparison,
    + - *, not) passes its operands' causes up, so reasons name inputs rather than
    nest; any other node (and, or, /, count) is its own single cause.
    """

    sql: str
    type: Literal["bool", "num"]
    causes: tuple[Cause, ...] = ()

    @property
    def nullable(self) -> bool:
        return bool(self.causes)

    @property
    def reason(self) -> str:
        return _first_null(self.causes)

    def alone(self) -> _Sql:
        """This node as one cause of its own (for a parent that is not strict in it)."""
        if len(self.causes) <= 1:
            return self
        return _Sql(self.sql, self.type, ((self.sql, self.reason),))


def _comment(text: str) -> str:
    """Text for an SQL `--` comment: one line of printable characters. A label or path may hold a
    newline (string escapes allow it), which would end the comment and let the rest run as SQL."""
    return "".join(ch if ch.isprintable() else " " for ch in str(text))


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise CritError(f"the number {value} cannot be used in a rule")
    return f"{value!r}::DOUBLE"


def _qcol(name: str) -> str:
    return ident(f"q_{name}")


def _rcol(name: str) -> str:
    return ident(f"r_{name}")


def _first_null(causes: tuple[Cause, ...]) -> str:
    """The reason of the first NULL cause; 'value' when none is (the operation itself gave NULL)."""
    if not causes:
        return "'value'"
    if len(causes) == 1:
        return causes[0][1]  # the expression is NULL only when its one cause is
    whens = [f"WHEN ({test}) IS NULL THEN {reason}" for test, reason in causes]
    return "CASE " + " ".join(whens) + " ELSE 'value' END"


def _causes(*parts: _Sql) -> tuple[Cause, ...]:
    return tuple(c for p in parts for c in p.causes)


def _as_number(part: _Sql) -> str:
    return f"CAST({part.sql} AS DOUBLE)" if part.type == "bool" else part.sql


_SQL_OP = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "=": "=", "!=": "<>"}
_FLIP = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "=", "!=": "!="}


class _Compiler:
    """Compiles AST expressions of one plan to SQL over the pivoted row (q_*, r_*, l_*, sex columns)."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.questions = {q.name: q for q in plan.questions}
        self.lets: dict[str, _Sql] = {}  # compiled lets, referenced by column
        self._dispatch: dict[type, Callable[[Any, str | None], _Sql]] = {
            ast.Quantity: self._quantity,
            ast.BoolLit: self._bool,
            ast.SexLit: self._sex_lit,
            ast.Name: self._name,
            ast.Neg: self._neg,
            ast.Arith: self._arith,
            ast.Compare: self._compare,
            ast.And: self._and,
            ast.Or: self._or,
            ast.Not: self._not,
            ast.Aggregate: self._aggregate,
            ast.RangeTest: self._range_test,
            ast.BoundRef: self._bound,
            ast.Window: self._window,
        }
        self.windows = {w: k for k, w in enumerate(plan.windows, 1)}

    def expr(self, node: ast.Node, target: str | None = None) -> _Sql:
        """`target`: the question whose unit a bare quantity here is compared in (for conversion)."""
        handler = self._dispatch.get(type(node))
        if handler is None:
            raise TypeError(f"the rules compiler has no case for {type(node).__name__}")  # a bug
        return handler(node, target)

    # -- leaves

    def _quantity(self, node: ast.Quantity, target: str | None) -> _Sql:
        value = node.value
        q = self.questions.get(target) if target else None
        if node.unit is not None and q is not None and q.unit is not None:
            # Converted once, here, to the unit the answers are compared in (`hgb < 90 g/L`).
            lin = units.linear(node.unit, q.unit, analyte(q), self.plan.conversions)
            if lin is None:
                raise CritError(f"cannot convert {node.value:g} {node.unit} to {q.unit} (the unit of '{q.name}')")
            value = lin.apply(value)
        return _Sql(_number(value), "num")

    def _bool(self, node: ast.BoolLit, target: str | None) -> _Sql:
        return _Sql("TRUE" if node.value else "FALSE", "bool")

    def _sex_lit(self, node: ast.SexLit, target: str | None) -> _Sql:
        return _Sql(literal(node.value), "sex")

    def _name(self, node: ast.Name, target: str | None) -> _Sql:
        q = self.questions.get(node.name)
        if node.name == "sex" and (q is None or q.phrase == SEX_PHRASE):
            # The built-in sex: the notes' column, else the built-in question (the `sexed` step).
            return _Sql("sex", "sex", (("sex", "'sex'"),))
        if node.name in self.lets:
            let = self.lets[node.name]
            col = ident(f"l_{node.name}")
            return _Sql(col, let.type, ((col, ident(f"lr_{node.name}")),) if let.nullable else ())
        q = self.questions.get(node.name)
        if q is None:
            raise CritError(f"unknown name '{node.name}' in the rules")
        return _Sql(_qcol(q.name), "bool" if q.kind == "boolean" else "num", ((_qcol(q.name), _rcol(q.name)),))

    def _window(self, node: ast.Window, target: str | None) -> _Sql:
        k = self.windows[window_spec(node)]
        q = self.questions[window_spec(node).question]
        name = _column_name(q.name, k)
        return _Sql(_qcol(name), "bool" if q.kind == "boolean" else "num", ((_qcol(name), _rcol(name)),))

    # -- arithmetic and comparison

    def _neg(self, node: ast.Neg, target: str | None) -> _Sql:
        inner = self.expr(node.operand, target)
        return _Sql(f"(-{_as_number(inner)})", "num", inner.causes)

    def _arith(self, node: ast.Arith, target: str | None) -> _Sql:
        if node.op in "+-":
            # A quantity added to a measured value is in that value's unit (`creat - 0.3 mg/dL`).
            left = self.expr(node.left, _measured(node.right, self.questions) or target)
            right = self.expr(node.right, _measured(node.left, self.questions) or target)
        else:
            left, right = self.expr(node.left), self.expr(node.right)  # factors carry no unit
        a, b = _as_number(left), _as_number(right)
        if node.op == "/":
            # DuckDB gives inf for x/0; a rule must see unknown instead.
            sql = f"({a} / NULLIF({b}, 0))"
            return _Sql(sql, "num", ((sql, _first_null(_causes(left, right))),))
        return _Sql(f"({a} {node.op} {b})", "num", _causes(left, right))

    def _compare(self, node: ast.Compare, target: str | None) -> _Sql:
        counted = self._count_compare(node)
        if counted is not None:
            return counted
        left = self.expr(node.left, _measured(node.right, self.questions))
        right = self.expr(node.right, _measured(node.left, self.questions))
        if left.type != right.type:
            a, b = _as_number(left), _as_number(right)
        else:
            a, b = left.sql, right.sql
        return _Sql(f"({a} {_SQL_OP[node.op]} {b})", "bool", _causes(left, right))

    def _count_compare(self, node: ast.Compare) -> _Sql | None:
        """`count(a, b, c) >= k` as Kleene requires: decided whenever every completion of the unknowns agrees."""
        if _is_count(node.left) and _constant(node.right) is not None:
            agg, k, op = node.left, _constant(node.right), node.op
        elif _is_count(node.right) and _constant(node.left) is not None:
            agg, k, op = node.right, _constant(node.left), _FLIP[node.op]
        else:
            return None
        assert isinstance(agg, ast.Aggregate) and k is not None
        args = [self.expr(a) for a in agg.args]
        # The count lies in [t, t + u]: t true arguments, u unknown ones.
        t = " + ".join(f"CAST(COALESCE({a.sql}, FALSE) AS INTEGER)" for a in args) or "0"
        u = " + ".join(f"CAST(({a.sql}) IS NULL AS INTEGER)" for a in args if a.nullable) or "0"
        hi = f"({t}) + ({u})"
        c = _number(k)
        integral = float(k).is_integer()
        true_when, false_when = {
            ">=": (f"({t}) >= {c}", f"{hi} < {c}"),
            ">": (f"({t}) > {c}", f"{hi} <= {c}"),
            "<=": (f"{hi} <= {c}", f"({t}) > {c}"),
            "<": (f"{hi} < {c}", f"({t}) >= {c}"),
            "=": (f"({t}) = {c} AND ({u}) = 0", f"{c} < ({t}) OR {c} > {hi}") if integral else ("FALSE", "TRUE"),
            "!=": (f"{c} < ({t}) OR {c} > {hi}", f"({t}) = {c} AND ({u}) = 0") if integral else ("TRUE", "FALSE"),
        }[op]
        sql = f"(CASE WHEN {true_when} THEN TRUE WHEN {false_when} THEN FALSE END)"
        return _Sql(sql, "bool", ((sql, _first_null(_causes(*(a.alone() for a in args)))),))

    # -- logic

    def _and(self, node: ast.And, target: str | None) -> _Sql:
        return self._junction("AND", [self.expr(a) for a in node.args], empty="TRUE")

    def _or(self, node: ast.Or, target: str | None) -> _Sql:
        return self._junction("OR", [self.expr(a) for a in node.args], empty="FALSE")

    def _junction(self, op: str, args: list[_Sql], empty: str) -> _Sql:
        if not args:
            return _Sql(empty, "bool")
        if len(args) == 1:
            return args[0]
        # Unknown only when no argument decides it, so every unknown argument is a cause: name the first.
        sql = "(" + f" {op} ".join(a.sql for a in args) + ")"
        causes = _causes(*(a.alone() for a in args))
        return _Sql(sql, "bool", ((sql, _first_null(causes)),) if causes else ())

    def _not(self, node: ast.Not, target: str | None) -> _Sql:
        inner = self.expr(node.operand)
        return _Sql(f"(NOT {inner.sql})", "bool", inner.causes)

    def _aggregate(self, node: ast.Aggregate, target: str | None) -> _Sql:
        args = [self.expr(a) for a in node.args]
        if node.func == "any":
            return self._junction("OR", args, empty="FALSE")
        if node.func == "all":
            return self._junction("AND", args, empty="TRUE")
        # count() outside a comparison with a constant: unknown as soon as one argument is.
        sql = "(" + (" + ".join(f"CAST({a.sql} AS INTEGER)" for a in args) or "0") + ")"
        return _Sql(sql, "num", _causes(*args))  # strict: NULL exactly when an argument is

    # -- sex-aware ranges

    def _range(self, name: str) -> RangeRule:
        rule = self.plan.ranges.get(name)
        if rule is None:
            raise CritError(f"no range is declared for '{name}'")
        return rule

    def _by_sex(self, male: str, female: str) -> tuple[str, bool]:
        """One SQL expression per sex, chosen by the note's sex; no sex needed when both are the same."""
        if male == female:
            return male, False
        return f"(CASE sex WHEN 'male' THEN {male} WHEN 'female' THEN {female} END)", True

    def _range_test(self, node: ast.RangeTest, target: str | None) -> _Sql:
        ref = node.operand.operand if isinstance(node.operand, ast.Window) else node.operand
        if not isinstance(ref, ast.Name):
            raise CritError(f"'{node.side} range' applies to a numeric question by name")
        value = self.expr(node.operand)
        rule = self._range(ref.name)
        v = value.sql

        def test(low: float | None, high: float | None) -> str:
            # An open bound is never crossed; a missing value stays unknown.
            above = f"({v} > {_number(high)})" if high is not None else f"(({v}) IS NULL AND NULL)"
            below = f"({v} < {_number(low)})" if low is not None else f"(({v}) IS NULL AND NULL)"
            if node.side == "above":
                return above
            if node.side == "below":
                return below
            return f"(NOT ({above} OR {below}))"

        def bounds(low: float | None, high: float | None) -> tuple[float | None, float | None]:
            # Only the bound the test reads matters: `above range` ignores the lower limits.
            return (None if node.side == "above" else low, None if node.side == "below" else high)

        male = test(*bounds(rule.male_low, rule.male_high))
        female = test(*bounds(rule.female_low, rule.female_high))
        sql, needs_sex = self._by_sex(male, female)
        # NULL exactly when the value is, or (sex-aware) the sex is.
        return _Sql(sql, "bool", value.causes + ((("sex", "'sex'"),) if needs_sex else ()))

    def _bound(self, node: ast.BoundRef, target: str | None) -> _Sql:
        rule = self._range(node.name)
        pick = (lambda lo, hi: hi) if node.func == "uln" else (lambda lo, hi: lo)
        male, female = pick(rule.male_low, rule.male_high), pick(rule.female_low, rule.female_high)
        for sex, bound in (("male", male), ("female", female)):
            if bound is None:
                raise CritError(
                    f"{node.func}({node.name}) needs a {'high' if node.func == 'uln' else 'low'} limit for {sex} "
                    f"in the range of '{node.name}'"
                )
        assert male is not None and female is not None
        sql, needs_sex = self._by_sex(_number(male), _number(female))
        return _Sql(sql, "num", (("sex", "'sex'"),) if needs_sex else ())


def analyte(q: Question) -> str | None:
    """The analyte a question measures (for molar-mass conversions), from its phrase and terms."""
    return units.analyte_of(q.phrase, q.aka)


def _is_count(node: ast.Node) -> bool:
    return isinstance(node, ast.Aggregate) and node.func == "count"


def _constant(node: ast.Node) -> float | None:
    """The value of a unitless constant (`2`, `-1`), else None."""
    if isinstance(node, ast.Quantity) and node.unit is None:
        return node.value
    if isinstance(node, ast.Neg):
        inner = _constant(node.operand)
        return None if inner is None else -inner
    return None


def _measured(node: ast.Node, questions: Mapping[str, Question]) -> str | None:
    """The question whose unit an expression is in: `creat`, `2 * uln(creat)`, `-creat`; None for lets."""
    if isinstance(node, ast.Name):
        return node.name if node.name in questions else None
    if isinstance(node, ast.BoundRef):
        return node.name
    if isinstance(node, (ast.Neg, ast.Window)):
        return _measured(node.operand, questions)
    if isinstance(node, ast.Arith):
        return _measured(node.left, questions) or _measured(node.right, questions)
    return None


# ---- the script -----------------------------------------------------------------------


def _answer_values_sql() -> str:
    # One answer per note and question: the chosen answer_key's row (a successful one first,
    # when several rows compete, e.g. answer_keys=None over a store holding two models' answers).
    # Where the answer lists every value it found (the rules answerer's candidates), the question's
    # order picks among them here, in the question's unit: highest / lowest by converted value,
    # first / last (and value) by position in the note. Order is a rule, never asked of a model.
    answer = ("{'value': a.value, 'unit': a.unit, 'na': a.na, 'error': a.error, 'key': a.answer_key, "
              "'span_start': a.span_start, 'span_end': a.span_end}")
    return f"""CREATE OR REPLACE TABLE answer_values AS
WITH chosen AS (
    -- A question read under one answer_key has one answer per note (the store's key): no choice to make.
    SELECT a.note_id, a.question, {answer} AS p
    FROM {Tables.answers} a
    JOIN {Tables.keys} k ON a.question = k.question AND a.answer_key = k.answer_key
    WHERE k.only_key
    UNION ALL
    SELECT a.note_id, a.question, arg_max({answer}, (a.error IS NULL, a.answer_key)) AS p
    FROM {Tables.answers} a
    JOIN {Tables.keys} k ON a.question = k.question AND a.answer_key = k.answer_key
    WHERE NOT k.only_key
    GROUP BY a.note_id, a.question
),
ordered AS (
    SELECT c.note_id, c.question,
        CASE q.ord
            WHEN 'highest' THEN arg_max({{'value': c.value, 'unit': c.unit, 'span_start': c.span_start, 'span_end': c.span_end}},
                                        c.value * u.factor + u."offset")
            WHEN 'lowest' THEN arg_min({{'value': c.value, 'unit': c.unit, 'span_start': c.span_start, 'span_end': c.span_end}},
                                       c.value * u.factor + u."offset")
            WHEN 'last' THEN arg_max({{'value': c.value, 'unit': c.unit, 'span_start': c.span_start, 'span_end': c.span_end}},
                                     c.span_start)
            ELSE arg_min({{'value': c.value, 'unit': c.unit, 'span_start': c.span_start, 'span_end': c.span_end}},
                         c.span_start)
        END AS best
    FROM {Tables.candidates} c
    JOIN chosen ch ON ch.note_id = c.note_id AND ch.question = c.question AND ch.p.key = c.answer_key
    JOIN {Tables.questions} q ON q.question = c.question
    JOIN {Tables.units} u ON u.question = c.question AND u.unit_key = COALESCE(c.unit, '') AND u.factor IS NOT NULL
    GROUP BY c.note_id, c.question, q.ord
),
picked AS (
    SELECT ch.note_id, ch.question,
        CASE WHEN o.best IS NULL THEN ch.p.value ELSE o.best.value END AS value,
        CASE WHEN o.best IS NULL THEN ch.p.unit ELSE o.best.unit END AS unit,
        CASE WHEN o.best IS NULL THEN ch.p.span_start ELSE o.best.span_start END AS span_start,
        CASE WHEN o.best IS NULL THEN ch.p.span_end ELSE o.best.span_end END AS span_end,
        ch.p.na AS na, ch.p.error AS error
    FROM chosen ch
    LEFT JOIN ordered o ON o.note_id = ch.note_id AND o.question = ch.question
)
SELECT
    n.note_id,
    q.question,
    p.value,
    p.unit,
    CASE
        WHEN p.error IS NOT NULL OR p.na IS TRUE OR p.value IS NULL THEN NULL
        WHEN q.kind = 'boolean' THEN p.value
        WHEN q.cap IS NOT NULL AND p.value * u.factor + u."offset" > q.cap THEN q.cap
        ELSE p.value * u.factor + u."offset"
    END AS converted,
    CASE
        WHEN p.note_id IS NULL THEN 'missing'
        WHEN p.error IS NOT NULL THEN 'error'
        WHEN p.na IS TRUE OR p.value IS NULL THEN 'na'
        WHEN q.kind = 'numeric' AND u.factor IS NULL THEN 'unit'
    END AS reason,
    p.span_start,
    p.span_end,
    n.patient_id,
    n.note_date,
    n.source_row
FROM {Tables.notes} n
CROSS JOIN {Tables.questions} q
LEFT JOIN picked p ON p.note_id = n.note_id AND p.question = q.question
LEFT JOIN {Tables.units} u ON u.question = q.question AND u.unit_key = COALESCE(p.unit, '')"""


class _Level(NamedTuple):
    """Who is screened: each note alone, or each patient over all their notes.

    Both levels compile the same lets and criteria; they differ only in where the
    answers come from (`values`) and in the names of the tables they write.
    """

    subject: str  # the key column: note_id or patient_id
    values: str  # the long table of answers per subject and question (and window_id, when windowed_values)
    windowed_values: bool  # values hold a row per window; else windows are drawn here from each note's date
    sex: str  # (subject, sex)
    decided: str  # one row per subject: answers, lets and criteria as columns
    criteria: str
    eligibility: str
    attrition: str
    subjects: str  # SQL listing every subject once


_NOTE_LEVEL = _Level(
    subject="note_id", values="answer_values", windowed_values=False, sex=Tables.note_sex, decided=Tables.note_decided,
    criteria="criteria", eligibility="eligibility", attrition="attrition",
    subjects=f"SELECT note_id, note_date, index_date FROM {Tables.notes}",
)
_PATIENT_LEVEL = _Level(
    subject="patient_id", values="patient_answers", windowed_values=True, sex=Tables.patient_sex,
    decided=Tables.patient_decided, criteria="patient_criteria", eligibility="patient_eligibility",
    attrition="patient_attrition", subjects=f"SELECT DISTINCT patient_id FROM {Tables.notes} WHERE patient_id IS NOT NULL",
)


def _interval(w: WindowSpec) -> str:
    return {"day": f"INTERVAL {w.amount} DAY", "week": f"INTERVAL {7 * w.amount} DAY",
            "month": f"INTERVAL {w.amount} MONTH", "year": f"INTERVAL {w.amount} YEAR"}[w.unit]


def _inside(w: WindowSpec, index: str, note_date: str = "n.note_date") -> str:
    # Dated inside [index - window, index]; an undated note is never inside (NULL, read as outside).
    return f"({note_date} BETWEEN {index} - {_interval(w)} AND {index})"


def _sex_sql(plan: Plan) -> str:
    """Each note's sex: the notes' column, else the built-in question (present = female, absent = male)."""
    male = ", ".join(map(literal, MALE))
    female = ", ".join(map(literal, FEMALE))
    from_notes = (
        f"CASE WHEN lower(trim(n.sex)) IN ({male}) THEN 'male' "
        f"WHEN lower(trim(n.sex)) IN ({female}) THEN 'female' END"
    )
    if plan.needs_sex:
        sex = (f"COALESCE({from_notes}, CASE WHEN a.converted = 1 THEN 'female' WHEN a.converted = 0 THEN 'male' END)")
        joined = f"{Tables.notes} n LEFT JOIN answer_values a ON a.note_id = n.note_id AND a.question = 'sex'"
    else:
        sex, joined = from_notes, f"{Tables.notes} n"
    return f"CREATE OR REPLACE TEMP TABLE {Tables.note_sex} AS\nSELECT n.note_id, {sex} AS sex\nFROM {joined}"


# A patient's sex: the one sex their notes agree on; notes that disagree leave it unknown.
_PATIENT_SEX_SQL = f"""CREATE OR REPLACE TEMP TABLE {Tables.patient_sex} AS
SELECT n.patient_id, CASE WHEN count(DISTINCT s.sex) = 1 THEN min(s.sex) END AS sex
FROM {Tables.notes} n JOIN {Tables.note_sex} s USING (note_id)
WHERE n.patient_id IS NOT NULL
GROUP BY n.patient_id"""


def _patient_answers_sql(plan: Plan) -> str:
    """Each patient's answer to each question (and window), combined over their notes:

    - booleans: present if any note says present, absent if one says absent and none present;
    - numbers: by the question's order across notes (highest, lowest; first, last and value by
      note date, then by place in the corpus);
    - with the note and span it came from. Without one, the reason is the worst of the notes':
      error, then unit, then na, else 'window' (no note dated inside the window).
    """
    first = "first note" == plan.index
    index = (f"COALESCE(max(index_date), {'min' if first else 'max'}(note_date))")
    # Only the notes inside a window are read for it; a window no note is dated inside still gets
    # its row (from `frame`), with reason 'window'.
    scoped = ["SELECT d.*, 0 AS window_id FROM dated d"]
    for k, w in enumerate(plan.windows, 1):
        scoped.append(
            f"SELECT d.*, {k}  -- {_comment(w.question)} within {w.label}\n"
            f"    FROM dated d JOIN indexed p USING (patient_id)\n"
            f"    WHERE d.question = {literal(w.question)} AND {_inside(w, 'p.index_date', 'd.note_date')}"
        )
    frame = ", ".join([f"({literal(q.name)}, 0)" for q in plan.questions]
                      + [f"({literal(w.question)}, {k})" for k, w in enumerate(plan.windows, 1)])
    labels = " ".join(f"WHEN {k} THEN {literal(w.label)}" for k, w in enumerate(plan.windows, 1))
    window_label = f"CASE f.window_id {labels} END" if labels else "NULL::VARCHAR"
    starts = " ".join(f"WHEN {k} THEN CAST(f.index_date - {_interval(w)} AS DATE)" for k, w in enumerate(plan.windows, 1))
    window_start = f"CASE f.window_id {starts} END" if starts else "NULL::DATE"
    return f"""CREATE OR REPLACE TABLE patient_answers AS
WITH indexed AS (
    SELECT patient_id, {index} AS index_date
    FROM {Tables.notes} WHERE patient_id IS NOT NULL GROUP BY patient_id
), dated AS (
    SELECT * FROM answer_values WHERE patient_id IS NOT NULL
), scoped AS (
    {(chr(10) + '    UNION ALL' + chr(10) + '    ').join(scoped)}
), keyed AS (
    SELECT s.*, q.kind,
        -- what makes one note's answer the patient's: larger wins
        {{'value': CASE WHEN q.kind = 'boolean' OR q.ord = 'highest' THEN s.converted
                        WHEN q.ord = 'lowest' THEN -s.converted ELSE 0 END,
          'dated': s.note_date IS NOT NULL,
          'when': COALESCE(CASE WHEN q.ord = 'first' THEN -epoch(s.note_date) ELSE epoch(s.note_date) END, 0),
          'row': COALESCE(CASE WHEN q.ord = 'first' THEN -s.source_row ELSE s.source_row END, 0)}} AS rank
    FROM scoped s JOIN {Tables.questions} q USING (question)
), combined AS (
    SELECT patient_id, question, window_id,
        arg_max({{'note_id': note_id, 'value': value, 'unit': unit, 'converted': converted,
                 'span_start': span_start, 'span_end': span_end, 'note_date': note_date}}, rank)
            FILTER (WHERE converted IS NOT NULL) AS pick,
        count(*) AS notes_inside,
        -- the worst reason among the notes inside: error, then unit, then na, then missing
        min(CASE reason WHEN 'error' THEN 1 WHEN 'unit' THEN 2 WHEN 'na' THEN 3 ELSE 4 END) AS worst
    FROM keyed GROUP BY patient_id, question, window_id
), frame AS (  -- every patient, question and window
    SELECT i.patient_id, i.index_date, w.question, w.window_id
    FROM indexed i CROSS JOIN (VALUES {frame}) w(question, window_id)
)
SELECT f.patient_id, f.question, f.window_id, {window_label} AS time_window, {window_start} AS window_start,
    f.index_date,
    s.pick.converted AS converted,
    CASE WHEN s.pick IS NOT NULL THEN NULL
         WHEN s.notes_inside IS NULL THEN 'window'
         ELSE ['error', 'unit', 'na', 'missing'][s.worst] END AS reason,
    s.pick.value AS value, s.pick.unit AS unit,
    s.pick.note_id AS note_id, s.pick.note_date AS note_date,
    s.pick.span_start AS span_start, s.pick.span_end AS span_end,
    COALESCE(s.notes_inside, 0) AS notes
FROM frame f LEFT JOIN combined s USING (patient_id, question, window_id)"""


def _decided_sql(plan: Plan, level: _Level) -> str:
    """One row per subject: every answer a rule reads as a column (q_*, r_*), then the lets, then each
    criterion's value (c_*), reason (cr_*) and status (s_*). Criteria and eligibility both read it."""
    comp = _Compiler(plan)
    subject = level.subject
    # One join per question and window, not a pivot by GROUP BY: each side is one row per subject.
    columns = [(0, q.name, q) for q in plan.questions] + [
        (k, w.question, plan.question(w.question)) for k, w in enumerate(plan.windows, 1)
    ]
    selected, joins = [f"n.{subject}"], []
    alias_of: dict[str, str] = {}
    for i, (k, name, q) in enumerate(columns):
        if level.windowed_values or k == 0:
            alias = f"a{i}"
            if k == 0:
                alias_of[name] = alias
            window = f" AND {alias}.window_id = {k}" if level.windowed_values else ""
            joins.append(f"LEFT JOIN {level.values} {alias} ON {alias}.{subject} = n.{subject} "
                         f"AND {alias}.question = {literal(name)}{window}")
            converted, reason = f"{alias}.converted", f"{alias}.reason"
        else:
            # A note alone: its answer counts inside a window when the note is dated inside it
            # (the corpus's index date, else the note's own date, ends the window).
            alias, w = alias_of[name], plan.windows[k - 1]
            inside = _inside(w, "COALESCE(n.index_date, n.note_date)")
            converted = f"CASE WHEN {inside} THEN {alias}.converted END"
            reason = f"CASE WHEN {inside} THEN {alias}.reason ELSE 'window' END"
        value = converted if q.kind == "numeric" else f"({converted} <> 0)"
        selected.append(f"{value} AS {_qcol(_column_name(name, k))}")
        selected.append(f"{reason} AS {_rcol(_column_name(name, k))}")
    ctes = [
        "wide AS (\n    SELECT " + ",\n        ".join(selected) + f"\n    FROM ({level.subjects}) n\n    "
        + "\n    ".join(joins) + "\n)",
        f"sexed AS (\n    SELECT w.*, s.sex\n    FROM wide w LEFT JOIN {level.sex} s USING ({subject})\n)",
    ]
    previous = "sexed"
    for i, let in enumerate(plan.lets, 1):
        compiled = comp.expr(let.expr)
        ctes.append(
            f"let_{i} AS (  -- let {_comment(let.name)}\n    SELECT *, {compiled.sql} AS {ident('l_' + let.name)},\n"
            f"        {compiled.reason} AS {ident('lr_' + let.name)}\n    FROM {previous}\n)"
        )
        comp.lets[let.name] = compiled
        previous = f"let_{i}"
    # Each criterion computed once (c_*, and why it is unknown: cr_*), then its status from it.
    values, decided = [subject], [subject]
    for pos, c in enumerate(plan.criteria, 1):
        compiled = comp.expr(c.expr)
        values.append(f"-- {c.type} {_comment(c.label)}\n        {compiled.sql} AS c_{pos},\n"
                      f"        {compiled.reason} AS cr_{pos}")
        policy = {"met": "'met'", "not met": "'not met'", "unknown": "'unknown'"}[c.if_missing]
        unknown_reason = "'missing-policy'" if c.if_missing != "unknown" else f"COALESCE(cr_{pos}, 'value')"
        decided.append(
            f"c_{pos}, CASE WHEN c_{pos} THEN 'met' WHEN NOT c_{pos} THEN 'not met' ELSE {policy} END AS s_{pos},\n"
            f"        CASE WHEN c_{pos} IS NOT NULL THEN 'value' ELSE {unknown_reason} END AS cr_{pos}"
        )
    ctes.append("judged AS (\n    SELECT " + ",\n        ".join(values) + f"\n    FROM {previous}\n)")
    return (f"CREATE OR REPLACE TEMP TABLE {level.decided} AS\nWITH " + ",\n".join(ctes)
            + "\nSELECT " + ",\n        ".join(decided) + "\nFROM judged")


def _criteria_sql(plan: Plan, level: _Level) -> str:
    """The decided row unpivoted: one row per subject and criterion, with its status and reason."""
    subject = level.subject
    create = f"CREATE OR REPLACE TABLE {level.criteria} AS\n"
    if not plan.criteria:  # an empty table of the right shape
        return create + (
            f"SELECT NULL::VARCHAR AS {subject}, NULL::INTEGER AS position, NULL::VARCHAR AS label, "
            "NULL::VARCHAR AS type, NULL::VARCHAR AS status, NULL::VARCHAR AS reason WHERE FALSE"
        )
    structs = [
        f"{{'position': {pos}, 'label': {literal(c.label)}, 'type': {literal(c.type)}, 'status': s_{pos}, 'reason': cr_{pos}}}"
        for pos, c in enumerate(plan.criteria, 1)
    ]
    return create + (f"SELECT {subject}, unnest([\n        " + ",\n        ".join(structs)
                     + f"\n    ], recursive := true)\nFROM {level.decided}")


def _column_name(question: str, window_id: int) -> str:
    # '@' cannot occur in a name, so a window's column never meets a question's.
    return question if window_id == 0 else f"{question}@w{window_id}"


def _eligibility_sql(plan: Plan, level: _Level) -> str:
    """Per subject, read across its decided row: ineligible when an include is not met or an exclude
    is met; else unknown when a criterion is unknown; else eligible. `deciding` names the criteria
    that made it so, in file order."""
    s = level.subject
    if not plan.criteria:
        return (f"CREATE OR REPLACE TABLE {level.eligibility} AS\nSELECT {s}, 'eligible' AS status, "
                f"[]::VARCHAR[] AS deciding FROM ({level.subjects}) n")
    fails = [f"s_{pos} = {literal('not met' if c.type == 'include' else 'met')}" for pos, c in enumerate(plan.criteria, 1)]
    unknown = [f"s_{pos} = 'unknown'" for pos in range(1, len(plan.criteria) + 1)]
    labels = [literal(c.label) for c in plan.criteria]

    def named(tests: list[str]) -> str:
        return ("list_filter([" + ", ".join(f"CASE WHEN {t} THEN {label} END" for t, label in zip(tests, labels))
                + "], lambda x: x IS NOT NULL)")

    any_fail, any_unknown = " OR ".join(fails), " OR ".join(unknown)
    return f"""CREATE OR REPLACE TABLE {level.eligibility} AS
SELECT {s},
    CASE WHEN {any_fail} THEN 'ineligible' WHEN {any_unknown} THEN 'unknown' ELSE 'eligible' END AS status,
    CASE WHEN {any_fail} THEN {named(fails)}
         WHEN {any_unknown} THEN {named(unknown)}
         ELSE []::VARCHAR[] END AS deciding
FROM {level.decided}"""


def _attrition_sql(level: _Level) -> str:
    s = level.subject
    return f"""CREATE OR REPLACE VIEW {level.attrition} AS
WITH judged AS (
    SELECT {s}, position, label, type, status,
        (type = 'include' AND status = 'not met') OR (type = 'exclude' AND status = 'met') AS fails
    FROM {level.criteria}
), first_fail AS (
    SELECT {s}, min(position) FILTER (WHERE fails) AS at FROM judged GROUP BY {s}
)
SELECT j.position, j.label, j.type,
    count(*) FILTER (WHERE f.at IS NULL OR f.at >= j.position) AS remaining_before,
    count(*) FILTER (WHERE f.at = j.position) AS removed,
    count(*) FILTER (WHERE f.at IS NULL OR f.at > j.position) AS remaining_after,
    count(*) FILTER (WHERE (f.at IS NULL OR f.at >= j.position) AND j.status = 'unknown') AS unknown
FROM judged j JOIN first_fail f USING ({s})
GROUP BY j.position, j.label, j.type
ORDER BY j.position"""


def statements(plan: Plan) -> list[str]:
    """The script's statements, in order (what `evaluate` runs, one at a time)."""
    def decide(level: _Level) -> list[str]:
        return [_decided_sql(plan, level), _criteria_sql(plan, level), _eligibility_sql(plan, level),
                _attrition_sql(level)]

    notes = decide(_NOTE_LEVEL)
    patients = [_patient_answers_sql(plan), _PATIENT_SEX_SQL, *decide(_PATIENT_LEVEL)]
    return [_answer_values_sql(), _sex_sql(plan), *notes, *patients]


def rules_sql(plan: Plan) -> str:
    """The SQL script that evaluates `plan` (what `crit compile --json` shows).

    It reads the store's `answers` (through the view `_crit_answers`), plus small tables `evaluate` loads first:
    `_crit_questions` (question, kind, cap, ord), `_crit_keys` (question, answer_key, only_key), `_crit_units`
    (question, unit_key, factor, offset: one row per reported unit, factor NULL when
    it does not convert), `_crit_notes` (note_id, sex, patient_id, note_date, index_date, source_row)
    and `_crit_candidates` (every value an
    answer lists, with its unit and position).
    """
    header = (
        f"-- crit rules for {_comment(plan.trial_id or plan.source or 'a plan')}, rules fingerprint {plan.rules_fingerprint}\n"
        "-- NULL is unknown (Kleene logic); columns q_* are answers, r_* why they are unknown.\n"
    )
    return header + ";\n\n".join(statements(plan)) + ";\n"
