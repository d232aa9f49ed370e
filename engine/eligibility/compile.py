"""Rules, compiled: a plan's lets and criteria as one DuckDB SQL script (``rules_sql``).

Pure: no connection and no data; crit.engine.eligibility.evaluate loads the script's inputs
(``Tables``) and runs it. There is one evaluator and it is this SQL: no Python copy
of the logic exists, so what ``crit compile --json`` shows is exactly what decides
eligibility, and a threshold or window edit re-runs this script over the same
answers without any model.

The script, in order:

1. ``note_decisions``, a stored table with one row per note: its attributes, its
   answer to each question (``a_*``: the chosen ``answer_key``'s row; where the
   answer lists every value it found, the one the question's order picks; converted
   to the question's unit, ``value * factor + offset``, one map per distinct reported
   unit from ``crit.grammar.units.linear``, and capped; with its span, or the reason it
   has no usable value: ``na`` not in the note, ``unit`` a unit that does not convert
   (never compared silently), ``error`` generation failed, ``missing`` no answer row),
   then each criterion's status and reason (``s_*``, ``cr_*``; windows drawn from the
   note's own date). The answers are pivoted in one pass (one list per note over the grid
   of notes and questions, read by position), and each let is computed once, as columns
   of a narrow layer per dependency level joined back for the criteria, so the script
   grows linearly with the file (``_decide``). The table is written a slice of notes at a time (``SLICE``
   of ``SLICES``: a hash of note_id), so that a million notes' pivot never sits in memory at once; the
   script ``rules_sql`` shows is one slice. The views ``answer_values``, ``criteria`` and ``eligibility``
   unpivot it; ``attrition`` counts notes remaining before and after each criterion,
   in file order, like an OHDSI ATLAS attrition report.
2. ``patient_decisions``, one row per patient over the notes that carry a patient id:
   each question and window combined over the patient's notes (windows end at the
   patient's index date), with the note the answer came from, then the same criteria;
   the views ``patient_answers``, ``patient_criteria``, ``patient_eligibility`` and
   ``patient_attrition``. Without patient ids it is empty.

Only the two decided tables are stored: each is one row per subject, which is cheaper to
write than the long tables (one row per subject and question or criterion), and the views
read them as they are, so they can never disagree.

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

from crit.engine.notes.columns import FEMALE, MALE
from crit.engine.sql import ident, literal
from crit.engine.store.schema import ELIGIBILITY_TABLES
from crit.grammar import ast, units
from crit.grammar.errors import CritError
from crit.grammar.plan import Plan, RangeRule, WindowSpec, window_spec
from crit.grammar.questions import SEX_PHRASE, Question

__all__ = ["SLICE", "SLICES", "Reason", "Status", "Tables", "analyte", "decision_statements", "rules_sql",
           "slice_statements", "statements"]

Status = Literal["met", "not met", "unknown"]
Reason = Literal["value", "na", "unit", "sex", "error", "missing", "missing-policy", "window"]



class Tables:
    """The temporary tables the script reads besides the store's own (crit.engine.eligibility.evaluate loads them
    first); all are dropped after an evaluation."""

    answers = "_crit_answers"  # a view of the store's answers, with spans where it has them
    questions = "_crit_questions"  # question, kind, cap, ord (the question's order), pos (its place in the plan, from 1)
    keys = "_crit_keys"  # question, answer_key, only_key: the answers to read
    units = "_crit_units"  # question, unit_key, factor, offset (factor NULL: unit does not convert)
    notes = "_crit_notes"  # note_id, sex, patient_id, note_date, index_date, source_row
    # note_id, question, answer_key, value, unit, span_start, span_end: every value an answer lists
    candidates = "_crit_candidates"
    # note_id, patient_id, note_date, index_date, source_row, note_sex, answers (one list in question order):
    # what the script reads the notes' answers into, a slice of notes at a time
    note_answers = "_crit_note_answers"

    views = (answers, notes)
    tables = (questions, keys, units, candidates, note_answers)


# The notes are decided a slice at a time: the note table's statement reads only the notes (and their
# answers) whose id hashes to slice `getvariable(SLICE)` of `getvariable(SLICES)`, and runs once per slice.
# The pivot holds every answer of the notes it reads at once: over a million notes in one piece it took
# gigabytes. A note's slice is a hash of its id, a filter DuckDB applies as it scans.
SLICES = "crit_slices"
SLICE = "crit_slice"


def _in_slice(alias: str) -> str:
    return f"coalesce(hash({alias}.note_id) % getvariable('{SLICES}'), 0) = getvariable('{SLICE}')"


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


def _sum(terms: list[str], flat: int = 16) -> str:
    """`a + b + ...` as SQL: DuckDB nests `+` one level per term and stops at 1,000 levels, so past
    `flat` terms the sum is split in halves, parenthesised (depth grows with the log of the count)."""
    if not terms:
        return "0"
    if len(terms) <= flat:
        return " + ".join(terms)
    half = len(terms) // 2
    return f"({_sum(terms[:half], flat)}) + ({_sum(terms[half:], flat)})"


def _causes(*parts: _Sql) -> tuple[Cause, ...]:
    return tuple(c for p in parts for c in p.causes)


def _as_number(part: _Sql) -> str:
    return f"CAST({part.sql} AS DOUBLE)" if part.type == "bool" else part.sql


_SQL_OP = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "=": "=", "!=": "<>"}


class ExprCompiler:
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
            agg, k, op = node.right, _constant(node.left), ast.FLIPPED[node.op]
        else:
            return None
        assert isinstance(agg, ast.Aggregate) and k is not None
        args = [self.expr(a) for a in agg.args]
        # The count lies in [t, hi]: t true arguments, hi those not false (true or unknown). The
        # arguments are listed once, as the lambda's `v`: written into each bound, a count nested
        # in a count grew fourfold per level (8 levels: 1.5 GB of SQL to plan).
        t = "len(list_filter(v, lambda x: x))"
        hi = "len(list_filter(v, lambda x: x IS NOT FALSE))"
        c = _number(k)
        integral = float(k).is_integer()
        true_when, false_when = {
            ">=": (f"{t} >= {c}", f"{hi} < {c}"),
            ">": (f"{t} > {c}", f"{hi} <= {c}"),
            "<=": (f"{hi} <= {c}", f"{t} > {c}"),
            "<": (f"{hi} < {c}", f"{t} >= {c}"),
            "=": (f"{t} = {c} AND {hi} = {t}", f"{c} < {t} OR {c} > {hi}") if integral else ("FALSE", "TRUE"),
            "!=": (f"{c} < {t} OR {c} > {hi}", f"{t} = {c} AND {hi} = {t}") if integral else ("TRUE", "FALSE"),
        }[op]
        listed = "[" + ", ".join(a.sql for a in args) + "]::BOOLEAN[]"
        sql = (f"list_transform([{listed}], lambda v: CASE WHEN {true_when} THEN TRUE "
               f"WHEN {false_when} THEN FALSE END)[1]")
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
        sql = "(" + _sum([f"CAST({a.sql} AS INTEGER)" for a in args]) + ")"
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


def _struct(fields: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{literal(k)}: {v}" for k, v in fields.items()) + "}"


def _column_name(question: str, window_id: int) -> str:
    # '@' cannot occur in a name, so a window's column never meets a question's.
    return question if window_id == 0 else f"{question}@w{window_id}"


def _col(prefix: str, question: str, window_id: int = 0) -> str:
    return ident(f"{prefix}_{_column_name(question, window_id)}")


def _start(w: WindowSpec, index: str) -> str:
    """The first day of a window that ends on the date `index`.

    Days and weeks are counted in whole days, months and years in calendar months. No window is
    written as an INTERVAL of days: DuckDB 2.0 holds `INTERVAL 30 DAY` and `INTERVAL 1 MONTH`
    equal, and merges two such expressions in one SELECT into one (so `within 1 month` read as
    `within 30 days`; tests/test_patients.py pins it).
    """
    if w.unit in ("day", "week"):
        return f"({index} - {w.amount * (7 if w.unit == 'week' else 1)})"
    return f"CAST({index} - INTERVAL {w.amount * (12 if w.unit == 'year' else 1)} MONTH AS DATE)"


def _inside(w: WindowSpec, index: str, note_date: str) -> str:
    # Dated inside [index - window, index]; an undated note is never inside (NULL, read as outside).
    return f"({note_date} BETWEEN {_start(w, index)} AND {index})"


def _lines(items: list[str], indent: str = "        ") -> str:
    return (",\n" + indent).join(items)


class _Level(NamedTuple):
    """Who is screened: each note alone, or each patient over all their notes. Both levels decide
    the same lets and criteria over the same q_* / r_* / sex columns; they differ in where those come from."""

    subject: str  # the key column: note_id or patient_id
    decisions: str  # the stored table: one row per subject
    criteria: str  # the views over it
    eligibility: str
    attrition: str


# The tables and views the script writes are the store's to declare (crit.engine.store.schema).
_NOTE_LEVEL = _Level("note_id", ELIGIBILITY_TABLES[0], "criteria", "eligibility", "attrition")
_PATIENT_LEVEL = _Level("patient_id", ELIGIBILITY_TABLES[1], "patient_criteria", "patient_eligibility", "patient_attrition")


def _windows(plan: Plan) -> list[tuple[int, WindowSpec, Question]]:
    return [(k, w, plan.question(w.question)) for k, w in enumerate(plan.windows, 1)]


# A criterion's status is stored as an ENUM: it reads and compares as text ('met'), and writing a
# million of them measured 2.5x faster than as VARCHAR.
_STATUS_TYPE = "ENUM('met', 'not met', 'unknown')"


def _status(status: Status) -> str:
    return f"{literal(status)}::{_STATUS_TYPE}"


# Let layers per statement: DuckDB binds nested CTEs recursively and stops past 1,000 levels (its
# max_expression_depth, which a let's own expression also counts against); beyond this many layers
# the lets continue in a temporary table, read by the next statement.
LET_LAYERS = 100


def _reads(comp: ExprCompiler, node: ast.Node) -> set[str]:
    """The columns of the decided row an expression reads (as `ExprCompiler._name` resolves names)."""
    out: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            q = comp.questions.get(n.name)
            if n.name == "sex" and (q is None or q.phrase == SEX_PHRASE):
                out.add("sex")
            elif q is None:  # a let (the resolver has checked every name)
                out |= {ident(f"l_{n.name}"), ident(f"lr_{n.name}")}
            else:
                out |= {_qcol(q.name), _rcol(q.name)}
        elif isinstance(n, ast.Window):
            name = _column_name(window_spec(n).question, comp.windows[window_spec(n)])
            out |= {_qcol(name), _rcol(name)}
        elif isinstance(n, (ast.RangeTest, ast.BoundRef)):
            out.add("sex")  # a sex-aware range reads it
    return out


def _let_levels(plan: Plan) -> list[list[ast.LetDecl]]:
    """The lets by level: a let's level is one more than the highest of the lets it reads (1 for none),
    so each level reads only earlier ones. plan.lets lists dependencies first."""
    level: dict[str, int] = {}
    for let in plan.lets:
        used = [level[n.name] for n in ast.walk(let.expr) if isinstance(n, ast.Name) and n.name in level]
        level[let.name] = 1 + max(used, default=0)
    levels: list[list[ast.LetDecl]] = [[] for _ in range(max(level.values(), default=0))]
    for let in plan.lets:
        levels[level[let.name] - 1].append(let)
    return levels


def _decide(plan: Plan, level: _Level, ctes: list[str], answered: str, kept: list[str]) -> list[str]:
    """The lets and criteria over the CTE `answered` (q_*, r_*, sex), appended to `ctes`: each let as
    columns l_*, lr_*; each criterion's value (c_*), status (s_*) and reason (cr_*). The stored row
    holds the `kept` columns and each criterion's status and reason; the rest are steps on the way
    (storing them cost more than computing them).

    Lets are computed once each, one layer per level over a narrow row (the subject, the columns
    later lets read, and the lets still to be read), joined back to `answered` for the criteria:
    a layer that carried the whole row made a chain of lets quadratic. Past LET_LAYERS levels the
    row so far is stored in a temporary table (`_crit_<level>_wide`, `_crit_<level>_lets_<k>`) and
    the next statement reads it; the script drops them once the decided table is written."""
    comp = ExprCompiler(plan)
    subject = level.subject
    statements: list[str] = []
    temps: list[str] = []
    levels = _let_levels(plan)
    base = answered
    if len(levels) > LET_LAYERS:  # the row the lets start from, stored once for every statement
        base = f"_crit_{subject.removesuffix('_id')}_wide"
        statements.append(f"CREATE OR REPLACE TEMP TABLE {base} AS\nWITH " + ",\n".join(ctes) + f"\nSELECT * FROM {answered}")
        temps.append(base)
        ctes = []
    # A let's columns exist from its level on; every other column comes from the base row.
    born = {col: j for j, lets in enumerate(levels) for let in lets
            for col in (ident(f"l_{let.name}"), ident(f"lr_{let.name}"))}
    # What each layer must pass on: what later layers read, and the lets the criteria read (the
    # criteria read questions from the base row, joined back).
    reads = [set().union(*(_reads(comp, let.expr) for let in lets)) for lets in levels]
    later = {col for c in plan.criteria for col in _reads(comp, c.expr) if col in born}
    after: list[set[str]] = [set() for _ in levels]
    for j in range(len(levels) - 1, -1, -1):
        after[j] = set(later)
        later |= reads[j]
    previous, layer_in_statement = base, 0
    for j, lets in enumerate(levels):
        if layer_in_statement == LET_LAYERS:  # store the chain so far; the next statement goes on from it
            table = f"_crit_{subject.removesuffix('_id')}_lets_{len(temps)}"
            statements.append(f"CREATE OR REPLACE TEMP TABLE {table} AS\nWITH " + ",\n".join(ctes) + f"\nSELECT * FROM {previous}")
            temps.append(table)
            ctes, previous, layer_in_statement = [], table, 0
        columns = [subject] + sorted(c for c in after[j] if born.get(c, -1) < j)
        compiled = {let.name: comp.expr(let.expr) for let in lets}
        for let in lets:
            columns.append(f"-- let {_comment(let.name)}\n        {compiled[let.name].sql} AS {ident('l_' + let.name)}")
            columns.append(f"{compiled[let.name].reason} AS {ident('lr_' + let.name)}")
        comp.lets.update(compiled)
        ctes.append(f"lets_{j + 1} AS (\n    SELECT " + _lines(columns) + f"\n    FROM {previous}\n)")
        previous, layer_in_statement = f"lets_{j + 1}", layer_in_statement + 1
    values, decided = [], []
    # Each criterion computed once (c_*, and why it is unknown: cu_*), then its status from it.
    for pos, c in enumerate(plan.criteria, 1):
        compiled = comp.expr(c.expr)
        values.append(f"-- {c.type} {_comment(c.label)}\n        {compiled.sql} AS c_{pos},\n"
                      f"        {compiled.reason} AS cu_{pos}")
        policy = _status(c.if_missing)
        unknown_reason = "'missing-policy'" if c.if_missing != "unknown" else f"COALESCE(cu_{pos}, 'value')"
        decided.append(
            f"CASE WHEN c_{pos} THEN {_status('met')} WHEN NOT c_{pos} THEN {_status('not met')} ELSE {policy} END AS s_{pos},\n"
            f"        CASE WHEN c_{pos} IS NOT NULL THEN 'value' ELSE {unknown_reason} END AS cr_{pos}"
        )
    source = base if not levels else f"{base} JOIN {previous} USING ({subject})"
    ctes.append("judged AS (\n    SELECT *" + "".join(",\n        " + v for v in values) + f"\n    FROM {source}\n)")
    body = "SELECT " + _lines(kept + decided) + "\nFROM judged"
    statements.append(f"CREATE OR REPLACE TABLE {level.decisions} AS\nWITH " + ",\n".join(ctes) + "\n" + body)
    statements += [f"DROP TABLE {t}" for t in temps]
    return statements


def _note_sex(plan: Plan) -> str:
    """A note's sex: the notes' column, else the built-in question (present = female, absent = male)."""
    male = ", ".join(map(literal, MALE))
    female = ", ".join(map(literal, FEMALE))
    from_notes = (f"CASE WHEN lower(trim(note_sex)) IN ({male}) THEN 'male' "
                  f"WHEN lower(trim(note_sex)) IN ({female}) THEN 'female' END")
    if not plan.needs_sex:
        return from_notes
    asked = _col("a", "sex")
    return f"COALESCE({from_notes}, CASE WHEN {asked}.converted = 1 THEN 'female' WHEN {asked}.converted = 0 THEN 'male' END)"


def _note_answers_sql(plan: Plan, append: bool = False) -> str:
    """The notes of the current slice, one row each: its attributes and its answers, one list in question
    order, into the temporary table Tables.note_answers (made anew, or with `append` added to)."""
    # One answer per note and question: the chosen answer_key's row (a successful one first, when
    # several rows compete, e.g. answer_keys=None over a store holding two models' answers).
    # Where the answer lists every value it found (the rules answerer's candidates), the question's
    # order picks among them here, in the question's unit: highest / lowest by converted value,
    # first / last (and value) by position in the note. Order is a rule, never asked of a model.
    best = "{'value': c.value, 'unit': c.unit, 'span_start': c.span_start, 'span_end': c.span_end}"
    answer = _struct({
        "value": "p.value",
        "unit": "p.unit",
        "converted": ("CASE WHEN p.error IS NOT NULL OR p.na IS TRUE OR p.value IS NULL THEN NULL "
                      "WHEN q.kind = 'boolean' THEN p.value "
                      "WHEN q.cap IS NOT NULL AND p.value * u.factor + u.\"offset\" > q.cap THEN q.cap "
                      "ELSE p.value * u.factor + u.\"offset\" END"),
        "reason": ("CASE WHEN p.error IS NOT NULL THEN 'error' WHEN p.na IS TRUE OR p.value IS NULL THEN 'na' "
                   "WHEN q.kind = 'numeric' AND u.factor IS NULL THEN 'unit' END"),
        "span_start": "p.span_start",
        "span_end": "p.span_end",
    })
    ctes = [
        f"""ordered AS (
    SELECT c.note_id, c.question, c.answer_key,
        CASE q.ord
            WHEN 'highest' THEN arg_max({best}, c.value * u.factor + u."offset")
            WHEN 'lowest' THEN arg_min({best}, c.value * u.factor + u."offset")
            WHEN 'last' THEN arg_max({best}, c.span_start)
            ELSE arg_min({best}, c.span_start)
        END AS best
    FROM {Tables.candidates} c
    JOIN {Tables.questions} q ON q.question = c.question
    JOIN {Tables.units} u ON u.question = c.question AND u.unit_key = COALESCE(c.unit, '') AND u.factor IS NOT NULL
    WHERE {_in_slice("c")}
    GROUP BY c.note_id, c.question, c.answer_key, q.ord
)""",
        f"""chosen AS NOT MATERIALIZED (
    -- A question read under one answer_key has one answer per note (the store's key): no choice to make.
    SELECT a.note_id, a.question, a.answer_key, a.value, a.unit, a.na, a.error, a.span_start, a.span_end
    FROM {Tables.answers} a
    JOIN {Tables.keys} k ON a.question = k.question AND a.answer_key = k.answer_key
    WHERE k.only_key AND {_in_slice("a")}
    UNION ALL
    SELECT unnest(arg_max({{'note_id': a.note_id, 'question': a.question, 'answer_key': a.answer_key, 'value': a.value,
                           'unit': a.unit, 'na': a.na, 'error': a.error, 'span_start': a.span_start,
                           'span_end': a.span_end}}, (a.error IS NULL, a.answer_key)))
    FROM {Tables.answers} a
    JOIN {Tables.keys} k ON a.question = k.question AND a.answer_key = k.answer_key
    WHERE NOT k.only_key AND {_in_slice("a")}
    GROUP BY a.note_id, a.question
)""",
        """picked AS NOT MATERIALIZED (
    SELECT a.note_id, a.question, a.answer_key, a.na, a.error,
        CASE WHEN o.best IS NULL THEN a.value ELSE (o.best).value END AS value,
        CASE WHEN o.best IS NULL THEN a.unit ELSE (o.best).unit END AS unit,
        CASE WHEN o.best IS NULL THEN a.span_start ELSE (o.best).span_start END AS span_start,
        CASE WHEN o.best IS NULL THEN a.span_end ELSE (o.best).span_end END AS span_end
    FROM chosen a
    LEFT JOIN ordered o ON o.note_id = a.note_id AND o.question = a.question AND o.answer_key = a.answer_key
)""",
        f"""converted AS NOT MATERIALIZED (  -- each answer in its question's unit (value * factor + offset, capped), or why not
    SELECT p.note_id, p.question, {answer} AS answer
    FROM picked p
    JOIN {Tables.questions} q ON q.question = p.question
    LEFT JOIN {Tables.units} u ON u.question = p.question AND u.unit_key = COALESCE(p.unit, '')
)""",
    ]
    # Every note's answers pivoted in one pass: the grid of notes and questions, as one list per note
    # in question order (NULL where the note has no answer), read by position. One join per question
    # read every answer once per question (quadratic: 500 questions ran DuckDB out of memory), and
    # DuckDB's PIVOT measured 4x slower than this list. Only this statement runs once a slice: it is
    # the same size whatever the file, where the wide one below took seconds to plan at 2,000 questions.
    ctes.append(f"""pivoted AS (
    SELECT n.note_id, list(c.answer ORDER BY q.pos) AS answers
    FROM {Tables.notes} n CROSS JOIN {Tables.questions} q
    LEFT JOIN converted c ON c.note_id = n.note_id AND c.question = q.question
    WHERE n.note_id IS NOT NULL AND {_in_slice("n")}
    GROUP BY n.note_id
)""")
    write = f"INSERT INTO {Tables.note_answers}" if append else f"CREATE OR REPLACE TEMP TABLE {Tables.note_answers} AS"
    return (f"{write}\nWITH " + ",\n".join(ctes) + "\nSELECT n.note_id, n.patient_id, n.note_date, n.index_date, "
            f"n.source_row, n.sex AS note_sex, p.answers\nFROM {Tables.notes} n LEFT JOIN pivoted p ON p.note_id = n.note_id\n"
            f"WHERE {_in_slice('n')}")


def _note_decisions_sql(plan: Plan) -> list[str]:
    """One row per note, from Tables.note_answers: its attributes, its answer to each question (a_*:
    value, unit, converted, reason, span), the columns the rules read (q_*, r_*; windows drawn from the
    note's own date), then the lets and criteria (`_decide`)."""
    columns = []
    for q in plan.questions:
        a = _col("a", q.name)
        converted = f"{a}.converted"
        columns.append(f"{converted if q.kind == 'numeric' else f'({converted} <> 0)'} AS {_col('q', q.name)}")
        columns.append(f"CASE WHEN {a} IS NULL THEN 'missing' ELSE {a}.reason END AS {_col('r', q.name)}")
    for k, w, q in _windows(plan):
        # A note alone: its answer counts inside a window when the note is dated inside it
        # (the corpus's index date, else the note's own date, ends the window).
        inside = _inside(w, "COALESCE(index_date, note_date)", "note_date")
        columns.append(f"CASE WHEN {inside} THEN {_col('q', q.name)} END AS {_col('q', q.name, k)}")
        columns.append(f"CASE WHEN {inside} THEN {_col('r', q.name)} ELSE 'window' END AS {_col('r', q.name, k)}")
    answers = "".join(f",\n        answers[{i}] AS {_col('a', q.name)}" for i, q in enumerate(plan.questions, 1))
    ctes = [f"""answered AS (
    SELECT note_id, patient_id, note_date, index_date, source_row, note_sex{answers}
    FROM {Tables.note_answers}
)"""]
    ctes.append("wide AS (\n    SELECT * EXCLUDE (note_sex), " + _note_sex(plan) + " AS sex"
                + "".join(",\n        " + c for c in columns) + "\n    FROM answered\n)")
    kept = ["note_id", "patient_id", "note_date", "index_date", "source_row", "sex"]
    return _decide(plan, _NOTE_LEVEL, ctes, "wide", kept + [_col("a", q.name) for q in plan.questions])


# Why a patient has no value for a question, worst first: the worst of their notes' reasons.
_WORST = ("error", "unit", "na", "missing")
_WORST_LIST = "[" + ", ".join(map(literal, _WORST)) + "]"  # SQL, indexed from 1 by a reason's place

# A note's place in time as one BIGINT, larger = later: its day (since 1970) times 2^32 plus its
# row in the corpus (rows past 2^31 tie); an undated note below every dated one, by row. One
# integer, where a (dated, day, row) tuple measured slower as the key of arg_max.
_LATER = (f"CASE WHEN d.note_date IS NULL THEN {-(2 ** 59)} + LEAST(COALESCE(d.source_row, 0), {2 ** 31}) "
          f"ELSE CAST(d.note_date - DATE '1970-01-01' AS BIGINT) * {2 ** 32} + LEAST(COALESCE(d.source_row, 0), {2 ** 31}) END")
_EARLIER = (f"CASE WHEN d.note_date IS NULL THEN {-(2 ** 59)} - LEAST(COALESCE(d.source_row, 0), {2 ** 31}) "
            f"ELSE -(CAST(d.note_date - DATE '1970-01-01' AS BIGINT) * {2 ** 32} + LEAST(COALESCE(d.source_row, 0), {2 ** 31})) END")
# Bounds of the one-integer keys (`_key`): every note with a value lies above VALUED (its time lies
# above -2^59 - 2^31), and a present boolean above PRESENT (2^61 plus its time, which lies above
# -2^60); a note without a value lies at NO_VALUE minus its reason's place in _WORST.
_VALUED, _PRESENT, _NO_VALUE = -(2 ** 60), 2 ** 60, -(2 ** 62)


def _one_key(q: Question) -> bool:
    """Whether the question's rank is one BIGINT (booleans; numbers by note time), so that one key
    per note orders both the notes with a value and, below them, those without."""
    return q.kind == "boolean" or q.order not in ("highest", "lowest")


def _key(q: Question) -> str:
    """What makes one note's answer the patient's (larger wins), over the columns of the `read` CTE.

    A note with a value ranks by it and by time: for booleans present over absent, for numbers the
    question's order (highest, lowest; first, last and value by note date, then by place in the
    corpus); a dated note over an undated one. Where that rank is one BIGINT (`_one_key`), a note
    with no value ranks below every note with one, by its reason, worst highest; so the key's max
    says at once which note decides, whether any has a value, and if none why not."""
    x = _col("x", q.name)
    when = "earlier" if q.order == "first" else "later"
    if not _one_key(q):  # highest / lowest: by value, then time
        return f"({'-' if q.order == 'lowest' else ''}{x}, {when})"
    ranked = f"CAST({x} AS BIGINT) * {2 ** 61} + {when}" if q.kind == "boolean" else when
    return f"CASE WHEN {x} IS NOT NULL THEN {ranked} ELSE {_NO_VALUE} - {_col('w', q.name)} END"


def _worst_code(q: Question) -> str:
    """A note's reason for having no value, as its place in _WORST (1 the worst; 4 no answer row)."""
    a = _col("a", q.name)
    whens = " ".join(f"WHEN {literal(r)} THEN {i}" for i, r in enumerate(_WORST[:-1], 1))
    return f"CASE d.{a}.reason {whens} ELSE {len(_WORST)} END"


def _patient_decisions_sql(plan: Plan) -> list[str]:
    """One row per patient: index date, sex, and for each question and window the note whose answer
    decides it (p_*) and that answer's value in the question's unit (v_*), how many notes were read
    (n_*) and why there is no value (r_*); then the lets and criteria (`_decide`).

    Booleans: present if any note says present, absent if one says absent and none present. Numbers:
    by the question's order across notes. Without an answer, the reason is the worst of the notes':
    error, then unit, then na, else missing; 'window' when no note is dated inside the window.
    """
    index = "COALESCE(max(index_date), " + ("min" if plan.index == "first note" else "max") + "(note_date))"
    # One in_* column per distinct window length: two questions read over 6 months share it.
    lengths: dict[tuple[int, str], WindowSpec] = {}
    for _, w, _ in _windows(plan):
        lengths.setdefault((w.amount, w.unit), w)
    span_ids = {length: j for j, length in enumerate(lengths, 1)}
    combined, columns, qcols, kept = ["count(*) AS n_all"], [], [], ["patient_id", "index_date", "sex"]
    combined += [f"count(*) FILTER (WHERE in_{j}) AS n_in_{j}" for j in span_ids.values()]
    for k, w, q in [(0, None, q) for q in plan.questions] + _windows(plan):
        x, key = _col("x", q.name), _col("k", q.name)
        within = "" if w is None else f"in_{span_ids[(w.amount, w.unit)]}"
        n = "n_all" if w is None else f"n_{within}"
        p, v, top, worst, r = (_col(c, q.name, k) for c in ("p", "v", "top", "w", "r"))
        if _one_key(q):
            # Three aggregates (two for booleans) over one key, where a value, a note and a reason
            # each picked apart cost four.
            only = f" FILTER (WHERE {within})" if within else ""
            combined += [f"arg_max(note_id, {key}){only} AS {p}", f"max({key}){only} AS {top}"]
            valued = f"{top} >= {_VALUED}"
            if q.kind == "boolean":
                value = f"CASE WHEN {top} >= {_PRESENT} THEN 1.0 WHEN {valued} THEN 0.0 END"
            else:
                combined.append(f"arg_max({x}, {key}){only} AS {v}")
                value = v
            columns += [f"CASE WHEN {valued} THEN {p} END AS {p}", f"{value} AS {v}",
                        f"CASE WHEN {valued} THEN NULL WHEN {top} IS NULL THEN 'window' "
                        f"ELSE {_WORST_LIST}[{_NO_VALUE} - {top}] END AS {r}"]
        else:
            picked = f"FILTER (WHERE {x} IS NOT NULL{f' AND {within}' if within else ''})"
            combined += [f"arg_max(note_id, {key}) {picked} AS {p}",
                         f"{'max' if q.order == 'highest' else 'min'}({x}) {picked} AS {v}",
                         f"min({_col('w', q.name)})" + (f" FILTER (WHERE {within})" if within else "") + f" AS {worst}"]
            columns += [p, v, f"CASE WHEN {v} IS NOT NULL THEN NULL WHEN {n} = 0 THEN 'window' "
                        f"ELSE {_WORST_LIST}[{worst}] END AS {r}"]
        columns.append(f"{n} AS {_col('n', q.name, k)}")
        qcols.append(f"{v if q.kind == 'numeric' else f'({v} <> 0)'} AS {_col('q', q.name, k)}")
        kept += [p, v, _col("n", q.name, k), r]
    starts = "".join(f",\n        {_start(lengths[length], 'index_date')} AS start_{j}" for length, j in span_ids.items())
    ins = "".join(f",\n        d.note_date BETWEEN i.start_{j} AND i.index_date AS in_{j}" for j in span_ids.values())
    per_question = "".join(
        f",\n        d.{_col('a', q.name)}.converted AS {_col('x', q.name)}, {_worst_code(q)} AS {_col('w', q.name)}"
        for q in plan.questions)
    keys = "".join(f",\n        {_key(q)} AS {_col('k', q.name)}" for q in plan.questions)
    ctes = [
        # A patient's sex: the one sex their notes agree on; notes that disagree leave it unknown.
        f"""patients AS (
    SELECT patient_id, {index} AS index_date, CASE WHEN count(DISTINCT sex) = 1 THEN min(sex) END AS sex
    FROM {_NOTE_LEVEL.decisions} WHERE patient_id IS NOT NULL GROUP BY patient_id
)""",
        f"indexed AS (\n    SELECT *{starts}\n    FROM patients\n)",
        # Each note of a patient: its value and reason per question, its place in time and whether
        # it lies inside each window (an undated note never does), computed once here rather than
        # in every aggregate; then each question's key over them.
        f"""read AS (
    SELECT d.patient_id, d.note_id, i.index_date, i.sex{per_question},
        {_LATER} AS later,
        {_EARLIER} AS earlier{ins}
    FROM {_NOTE_LEVEL.decisions} d JOIN indexed i USING (patient_id)
)""",
        f"keyed AS (\n    SELECT *{keys}\n    FROM read\n)",
        "combined AS (\n    SELECT patient_id, any_value(index_date) AS index_date, any_value(sex) AS sex"
        + "".join(",\n        " + c for c in combined) + "\n    FROM keyed GROUP BY patient_id\n)",
        "decided AS (\n    SELECT patient_id, index_date, sex" + "".join(",\n        " + c for c in columns)
        + "\n    FROM combined\n)",
        "wide AS (\n    SELECT *" + "".join(",\n        " + c for c in qcols) + "\n    FROM decided\n)",
    ]
    return _decide(plan, _PATIENT_LEVEL, ctes, "wide", kept)


def _answer_values_sql(plan: Plan) -> str:
    """The view `answer_values`: one row per note and question, read from the note's a_* column."""
    head = "CREATE OR REPLACE VIEW answer_values AS\n"
    if not plan.questions:
        return head + ("SELECT NULL::VARCHAR AS note_id, NULL::VARCHAR AS question, NULL::DOUBLE AS value, "
                       "NULL::VARCHAR AS unit, NULL::DOUBLE AS converted, NULL::VARCHAR AS reason, "
                       "NULL::BIGINT AS span_start, NULL::BIGINT AS span_end, NULL::VARCHAR AS patient_id, "
                       "NULL::DATE AS note_date, NULL::BIGINT AS source_row WHERE FALSE")
    listed = [f"{{'question': {literal(q.name)}, 'answer': {_col('a', q.name)}}}" for q in plan.questions]
    # (x.answer).field, not x.answer.field: a three-part name would be read as catalog.table.column in a
    # store whose file is named x.duckdb.
    return head + f"""SELECT note_id, x.question, (x.answer).value AS value, (x.answer).unit AS unit,
    (x.answer).converted AS converted, CASE WHEN x.answer IS NULL THEN 'missing' ELSE (x.answer).reason END AS reason,
    (x.answer).span_start AS span_start, (x.answer).span_end AS span_end, patient_id, note_date, source_row
FROM (SELECT note_id, patient_id, note_date, source_row, unnest([
        {_lines(listed)}
    ]) AS x FROM {_NOTE_LEVEL.decisions})"""


def _patient_answers_sql(plan: Plan) -> str:
    """The view `patient_answers`: one row per patient, question and window (from p_*, v_*, n_*, r_*),
    with the value, unit, date and span of the note it came from."""
    head = "CREATE OR REPLACE VIEW patient_answers AS\n"
    reads = [(0, None, q) for q in plan.questions] + _windows(plan)
    if not reads:
        return head + ("SELECT NULL::VARCHAR AS patient_id, NULL::VARCHAR AS question, NULL::INTEGER AS window_id, "
                       "NULL::VARCHAR AS time_window, NULL::DATE AS window_start, NULL::DATE AS index_date, "
                       "NULL::DOUBLE AS converted, NULL::VARCHAR AS reason, NULL::DOUBLE AS value, NULL::VARCHAR AS unit, "
                       "NULL::VARCHAR AS note_id, NULL::DATE AS note_date, NULL::BIGINT AS span_start, "
                       "NULL::BIGINT AS span_end, NULL::BIGINT AS notes WHERE FALSE")
    listed = [_struct({
        "question": literal(q.name), "window_id": str(k),
        "time_window": literal(w.label) if w else "NULL::VARCHAR",
        "window_start": _start(w, "index_date") if w else "NULL::DATE",
        "note_id": _col("p", q.name, k), "converted": _col("v", q.name, k),
        "reason": _col("r", q.name, k), "notes": _col("n", q.name, k),
    }) for k, w, q in reads]
    by_question = " ".join(f"WHEN {literal(q.name)} THEN d.{_col('a', q.name)}" for q in plan.questions)
    return head + f"""SELECT x.patient_id, x.question, x.window_id, x.time_window, x.window_start, x.index_date,
    x.converted, x.reason, (x.answer).value AS value, (x.answer).unit AS unit, x.note_id, x.note_date,
    (x.answer).span_start AS span_start, (x.answer).span_end AS span_end, x.notes
FROM (
    SELECT u.*, d.note_date, CASE u.question {by_question} END AS answer
    FROM (SELECT patient_id, index_date, unnest([
        {_lines(listed, "            ")}
        ], recursive := true) FROM {_PATIENT_LEVEL.decisions}) u
    LEFT JOIN {_NOTE_LEVEL.decisions} d ON d.note_id = u.note_id
) x"""


def _criteria_sql(plan: Plan, level: _Level) -> str:
    """A view of the decided rows unpivoted: one row per subject and criterion, with its status and reason."""
    subject = level.subject
    create = f"CREATE OR REPLACE VIEW {level.criteria} AS\n"
    if not plan.criteria:  # an empty view of the right shape
        return create + (
            f"SELECT NULL::VARCHAR AS {subject}, NULL::INTEGER AS position, NULL::VARCHAR AS label, "
            "NULL::VARCHAR AS type, NULL::VARCHAR AS status, NULL::VARCHAR AS reason WHERE FALSE"
        )
    structs = [
        f"{{'position': {pos}, 'label': {literal(c.label)}, 'type': {literal(c.type)}, 'status': s_{pos}, 'reason': cr_{pos}}}"
        for pos, c in enumerate(plan.criteria, 1)
    ]
    return create + (f"SELECT {subject}, unnest([\n        " + _lines(structs)
                     + f"\n    ], recursive := true)\nFROM {level.decisions}")


def _eligibility_sql(plan: Plan, level: _Level) -> str:
    """A view read across each decided row: ineligible when an include is not met or an exclude is
    met; else unknown when a criterion is unknown; else eligible. `deciding` names the criteria that
    made it so, in file order."""
    s = level.subject
    if not plan.criteria:
        return (f"CREATE OR REPLACE VIEW {level.eligibility} AS\nSELECT {s}, 'eligible' AS status, "
                f"[]::VARCHAR[] AS deciding FROM {level.decisions}")
    fails = [f"s_{pos} = {literal('not met' if c.type == 'include' else 'met')}" for pos, c in enumerate(plan.criteria, 1)]
    unknown = [f"s_{pos} = 'unknown'" for pos in range(1, len(plan.criteria) + 1)]
    labels = [literal(c.label) for c in plan.criteria]

    def named(tests: list[str]) -> str:
        return ("list_filter([" + ", ".join(f"CASE WHEN {t} THEN {label} END" for t, label in zip(tests, labels))
                + "], lambda x: x IS NOT NULL)")

    any_fail, any_unknown = " OR ".join(fails), " OR ".join(unknown)
    return f"""CREATE OR REPLACE VIEW {level.eligibility} AS
SELECT {s},
    CASE WHEN {any_fail} THEN 'ineligible' WHEN {any_unknown} THEN 'unknown' ELSE 'eligible' END AS status,
    CASE WHEN {any_fail} THEN {named(fails)}
         WHEN {any_unknown} THEN {named(unknown)}
         ELSE []::VARCHAR[] END AS deciding
FROM {level.decisions}"""


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


def slice_statements(plan: Plan, *, append: bool = False) -> list[str]:
    """The statement that reads the answers of the current slice of notes (variables SLICE of SLICES) into
    Tables.note_answers: made anew, or with `append` added to what earlier slices wrote."""
    return [_note_answers_sql(plan, append)]


def decision_statements(plan: Plan) -> list[str]:
    """The statements after every slice is read: the notes decided, their views, then the patients and theirs."""
    def views(level: _Level) -> list[str]:
        return [_criteria_sql(plan, level), _eligibility_sql(plan, level), _attrition_sql(level)]

    return [*_note_decisions_sql(plan), _answer_values_sql(plan), *views(_NOTE_LEVEL), *_patient_decisions_sql(plan),
            _patient_answers_sql(plan), *views(_PATIENT_LEVEL)]


def statements(plan: Plan) -> list[str]:
    """The script's statements, in order, over the notes as one slice (what `crit compile --json` shows)."""
    return [f"SET VARIABLE {SLICES} = 1", f"SET VARIABLE {SLICE} = 0", *slice_statements(plan), *decision_statements(plan)]


def rules_sql(plan: Plan) -> str:
    """The SQL script that evaluates `plan` (what `crit compile --json` shows).

    It reads the store's `answers` (through the view `_crit_answers`), plus small tables `evaluate` loads first:
    `_crit_questions` (question, kind, cap, ord), `_crit_keys` (question, answer_key), `_crit_units`
    (question, unit_key, factor, offset: one row per reported unit, factor NULL when
    it does not convert), `_crit_notes` (note_id, sex, patient_id, note_date, index_date, source_row)
    and `_crit_candidates` (every value an answer lists, with its unit and position).
    """
    header = (
        f"-- crit rules for {_comment(plan.trial_id or plan.source or 'a plan')}, rules fingerprint {plan.rules_fingerprint}\n"
        "-- NULL is unknown (Kleene logic); columns q_* are answers, r_* why they are unknown.\n"
        f"-- crit decides the notes in slices ({SLICE} of {SLICES}, by a hash of note_id); this script is one slice.\n"
    )
    return header + ";\n\n".join(statements(plan)) + ";\n"
