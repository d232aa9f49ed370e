"""The typed AST of a .crit file: pydantic models, one per statement and expression form.

Every node carries a `span` for error messages; spans never take part in
equality, so moving a statement to another line changes nothing it means.
Each node has a `kind` literal, so `model_dump()` round-trips through JSON.
"""

from __future__ import annotations

from typing import Annotated, Any, Iterator, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from crit.grammar.errors import Span


def _without_spans(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_spans(v) for k, v in value.items() if k != "span"}
    if isinstance(value, list):
        return [_without_spans(v) for v in value]
    return value


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    span: Span | None = Field(default=None, repr=False)

    def meaning(self) -> dict[str, Any]:
        """The node as data, without positions: what equality and fingerprints use."""
        return _without_spans(self.model_dump(mode="json"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and type(self) is type(other) and self.meaning() == other.meaning()

    def __hash__(self) -> int:
        return hash(repr(self.meaning()))


# ---- expressions -------------------------------------------------------------------


class Quantity(Node):
    """A number, with the unit it was written in (or none)."""

    kind: Literal["quantity"] = "quantity"
    value: float
    unit: str | None = None


class BoolLit(Node):
    kind: Literal["bool"] = "bool"
    value: bool


class SexLit(Node):
    """`male` or `female`, compared with the built-in name `sex` (`sex = female`)."""

    kind: Literal["sex_lit"] = "sex_lit"
    value: Literal["male", "female"]


class Name(Node):
    """A reference to a question or a `let`."""

    kind: Literal["name"] = "name"
    name: str


class Neg(Node):
    kind: Literal["neg"] = "neg"
    operand: Expr


class Arith(Node):
    """Arithmetic; booleans count as 1 and 0 here, as CHADS2 needs."""

    kind: Literal["arith"] = "arith"
    op: Literal["+", "-", "*", "/"]
    left: Expr
    right: Expr


# The comparison that holds with its sides swapped: `3 < x` is `x > 3`.
FLIPPED: dict[str, str] = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "=", "!=": "!="}


class Compare(Node):
    kind: Literal["compare"] = "compare"
    op: Literal[">", ">=", "<", "<=", "=", "!="]
    left: Expr
    right: Expr


class And(Node):
    kind: Literal["and"] = "and"
    args: list[Expr]


class Or(Node):
    kind: Literal["or"] = "or"
    args: list[Expr]


class Not(Node):
    kind: Literal["not"] = "not"
    operand: Expr


class Aggregate(Node):
    """any(...), all(...) (booleans) and count(...) (a number of true arguments)."""

    kind: Literal["aggregate"] = "aggregate"
    func: Literal["any", "all", "count"]
    args: list[Expr]


class RangeTest(Node):
    """`creat above range`: compares a value with its sex-aware reference range."""

    kind: Literal["range_test"] = "range_test"
    side: Literal["above", "below", "within"]
    operand: Expr


class BoundRef(Node):
    """`uln(alt)` / `lln(alt)`: the upper or lower limit of normal for the patient's sex."""

    kind: Literal["bound"] = "bound"
    func: Literal["uln", "lln"]
    name: str


class Window(Node):
    """`mi within 6 months`: a question's answer from the notes dated inside a window that ends
    at the patient's index date. The model never sees the window; the rules read the note dates."""

    kind: Literal["window"] = "window"
    operand: Expr  # a question by name (resolve checks)
    amount: float
    unit: str  # as written: days, weeks, months, years (or d, wk, mo, yr ...)
    duration_span: Span | None = Field(default=None, repr=False)  # "6 months"


Expr = Annotated[
    Union[Quantity, BoolLit, SexLit, Name, Neg, Arith, Compare, And, Or, Not, Aggregate, RangeTest, BoundRef, Window],
    Field(discriminator="kind"),
]

# ---- statements --------------------------------------------------------------------


class Trial(Node):
    kind: Literal["trial"] = "trial"
    id: str
    title: str | None = None


class QuestionDecl(Node):
    """`boolean NAME "phrase"` or `numeric NAME [order] "phrase" in UNIT [assumed] [aka ...] [not aka ...] [cap N]
    [guide "..."] [gate off] [infer]`."""

    kind: Literal["question"] = "question"
    type: Literal["boolean", "numeric"]
    name: str
    phrase: str
    order: Literal["highest", "lowest", "first", "last", "most recent", "last written", "value"] | None = None
    unit: str | None = None
    aka: list[str] = []
    # `not aka "x"`: terms the question must not be looked for by, though a vocabulary
    # (crit.engine.reading.vocabulary) or the phrase gives them.
    not_aka: list[str] = []
    cap: float | None = None
    guide: str | None = None
    # `gate off`: ask the question even when no passage of a note mentions its terms
    # (for findings whose wordings cannot be listed in `aka`).
    gate: bool = True
    # `infer`: where no passage names the finding, a model whose trust profile says it reads such notes
    # better than the rules may answer from the whole note, quoting it (method model-inferred).
    infer: bool = False
    # `in mg/dL assumed`: a number the note writes with no unit is in mg/dL ("Creatinine 1.4"). Without it, a
    # bare number is read in the question's unit only where that unit has no dimension (%, points).
    unit_assumed: bool = False
    phrase_span: Span | None = Field(default=None, repr=False)
    unit_span: Span | None = Field(default=None, repr=False)


class Bound(Node):
    sex: Literal["male", "female", "any"]
    low: float | None = None
    high: float | None = None


class RangeDecl(Node):
    kind: Literal["range"] = "range"
    name: str
    bounds: list[Bound]
    unit: str | None = None  # None: the question's own unit

    def for_sex(self, sex: Literal["male", "female"]) -> Bound | None:
        specific = [b for b in self.bounds if b.sex == sex]
        general = [b for b in self.bounds if b.sex == "any"]
        return (specific or general or [None])[0]

    @property
    def sex_aware(self) -> bool:
        male, female = self.for_sex("male"), self.for_sex("female")
        return (male.low, male.high) != (female.low, female.high) if male and female else True


class LetDecl(Node):
    kind: Literal["let"] = "let"
    name: str
    expr: Expr


MissingPolicy = Literal["met", "not met", "unknown"]


class CriterionDecl(Node):
    kind: Literal["criterion"] = "criterion"
    type: Literal["include", "exclude"]
    label: str
    expr: Expr
    if_missing: MissingPolicy = "unknown"


class ConvertDecl(Node):
    """`convert [analyte] 1 mg/dL = 88.42 umol/L`: a unit conversion the built-in table lacks."""

    kind: Literal["convert"] = "convert"
    analyte: str | None = None
    source: Quantity
    target: Quantity


class IndexDecl(Node):
    """`index date = first note`: the date each patient's windows end at (default: the last note's)."""

    kind: Literal["index"] = "index"
    anchor: Literal["first note", "last note"]


Statement = Annotated[
    Union[Trial, QuestionDecl, RangeDecl, LetDecl, CriterionDecl, ConvertDecl, IndexDecl],
    Field(discriminator="kind"),
]


class CritFile(Node):
    kind: Literal["file"] = "file"
    path: str | None = None
    statements: list[Statement] = []

    def of(self, cls: type[Node]) -> list[Any]:
        return [s for s in self.statements if isinstance(s, cls)]

    @property
    def trial(self) -> Trial | None:
        trials = self.of(Trial)
        return trials[0] if trials else None

    @property
    def questions(self) -> list[QuestionDecl]:
        return self.of(QuestionDecl)

    @property
    def criteria(self) -> list[CriterionDecl]:
        return self.of(CriterionDecl)


for _cls in (Neg, Arith, Compare, And, Or, Not, Aggregate, RangeTest, Window, LetDecl, CriterionDecl):
    _cls.model_rebuild()


def walk(expr: Node) -> Iterator[Node]:
    """Every expression node below and including `expr`, parents first."""
    yield expr
    for child in children(expr):
        yield from walk(child)


def children(expr: Node) -> list[Node]:
    if isinstance(expr, (Neg, Not, RangeTest, Window)):
        return [expr.operand]
    if isinstance(expr, (Arith, Compare)):
        return [expr.left, expr.right]
    if isinstance(expr, (And, Or, Aggregate)):
        return list(expr.args)
    return []


def names_in(expr: Node) -> list[Name | BoundRef]:
    return [n for n in walk(expr) if isinstance(n, (Name, BoundRef))]
