"""Parse: .crit text -> typed AST (crit.grammar.ast), or a CritError that points at the slip.

The lark parser is built once per process (LALR, contextual lexer). Lark's own
exceptions are caught here and nowhere else, and turned into Diagnostics with a
human hint; whatever the input, callers see a CritFile or a CritError.
"""

from __future__ import annotations

import ast as pyast
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from crit.grammar import ast
from crit.grammar.errors import CritError, Diagnostic, Span

MAX_SOURCE_CHARS = 1_000_000  # a criteria file is a page of text; refuse megabytes of junk


@lru_cache(maxsize=1)
def parser() -> Lark:
    return Lark.open_from_package(
        "crit.grammar",
        "crit.lark",
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=False,
        cache=False,
    )


def _span(meta_or_token: object) -> Span | None:
    line = getattr(meta_or_token, "line", None)
    if line is None or getattr(meta_or_token, "empty", False):
        return None
    return Span(
        line=line,
        col=meta_or_token.column,  # type: ignore[attr-defined]
        end_line=meta_or_token.end_line,  # type: ignore[attr-defined]
        end_col=meta_or_token.end_column,  # type: ignore[attr-defined]
    )


def _string(token: Token) -> str:
    # STRING is a double-quoted literal with backslash escapes, like Python's.
    try:
        value = pyast.literal_eval(str(token))
    except (ValueError, SyntaxError):
        value = str(token)[1:-1]
    value = str(value)
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        # "\ud800" alone is no character: it cannot be written to a file or a database.
        raise CritError(Diagnostic(code="E009", message="this string holds a lone surrogate escape (\\ud800-\\udfff)",
                                   span=_span(token), label="not a character",
                                   hint="write the character itself, or its full \\U0001xxxx escape"))
    return value


def _number(token: Token) -> float:
    value = float(token)
    if value != value or value in (float("inf"), float("-inf")):
        raise CritError(Diagnostic(code="E004", message=f"number {token} is too large", span=_span(token)))
    return value


@v_args(meta=True)
class _ToAst(Transformer):
    """Lark tree -> pydantic nodes. One method per grammar rule or alias."""

    def start(self, meta, items):
        return list(items)

    def trial(self, meta, items):
        title = _string(items[1]) if len(items) > 1 else None
        return ast.Trial(id=str(items[0]), title=title, span=_span(meta))

    def question(self, meta, items):
        qtype, name, *rest = items
        fields: dict = {"aka": [], "not_aka": []}
        order = None
        phrase_token = None
        for item in rest:
            if isinstance(item, tuple):
                key, value, span = item
                if key in ("aka", "not_aka"):
                    fields[key] = fields[key] + value
                else:
                    fields[key] = value
                    if key == "unit":
                        fields["unit_span"] = span
            elif isinstance(item, Token) and item.type == "STRING":
                phrase_token = item
            elif isinstance(item, str):
                order = item
        assert phrase_token is not None  # the grammar requires the phrase
        return ast.QuestionDecl(
            type=str(qtype),
            name=str(name),
            phrase=_string(phrase_token),
            phrase_span=_span(phrase_token),
            order=order,
            span=_span(meta),
            **fields,
        )

    def order(self, meta, items):
        return " ".join(str(items[0]).split())  # "most  recent" is "most recent"

    def in_unit(self, meta, items):
        return ("unit", str(items[0]), _span(items[0]))

    def aka(self, meta, items):
        return ("aka", [_string(t) for t in items], _span(meta))

    def not_aka(self, meta, items):
        return ("not_aka", [_string(t) for t in items], _span(meta))

    def cap(self, meta, items):
        return ("cap", items[0], _span(meta))

    def guide(self, meta, items):
        return ("guide", _string(items[0]), _span(meta))

    def gate_off(self, meta, items):
        return ("gate", False, _span(meta))

    def infer(self, meta, items):
        return ("infer", True, _span(meta))

    def assumed(self, meta, items):
        return ("unit_assumed", True, _span(meta))

    def signed_number(self, meta, items):
        value = _number(items[-1])
        return -value if len(items) == 2 else value

    def range(self, meta, items):
        name, *rest = items
        unit = str(rest.pop()) if rest and isinstance(rest[-1], Token) and rest[-1].type == "UNIT" else None
        return ast.RangeDecl(name=str(name), bounds=rest, unit=unit, span=_span(meta))

    def bound(self, meta, items):
        sex, (low, high) = ("any", items[0]) if len(items) == 1 else items
        return ast.Bound(sex=str(sex), low=low, high=high, span=_span(meta))

    def closed(self, meta, items):
        return items[0], items[1]

    def at_least(self, meta, items):
        return items[0], None

    def at_most(self, meta, items):
        return None, items[0]

    def let(self, meta, items):
        return ast.LetDecl(name=str(items[0]), expr=items[1], span=_span(meta))

    def criterion(self, meta, items):
        kind, *rest = items
        missing = "unknown"
        if isinstance(rest[-1], tuple):
            missing = rest.pop()[1]
        if len(rest) == 2:
            label, expr = _string(rest[0]), rest[1]
        else:
            expr = rest[0]
            label = None
        if label is None:
            label = self._text_of(meta)
        return ast.CriterionDecl(type=str(kind), label=label, expr=expr, if_missing=missing, span=_span(meta))

    def _text_of(self, meta) -> str:
        return ""  # replaced by parse_text, which knows the source

    def missing(self, meta, items):
        return ("missing", " ".join(str(items[0]).split()))

    def convert(self, meta, items):
        op = items[-2]
        if str(op) != "=":
            raise CritError(Diagnostic(code="E002", message=f"unexpected {str(op)!r}", span=_span(op),
                                       label="expected '='", hint="write: convert creat 1 mg/dL = 88.42 umol/L"))
        analyte = str(items[0]) if len(items) == 4 else None
        return ast.ConvertDecl(analyte=analyte, source=items[-3], target=items[-1], span=_span(meta))

    # expressions
    def or_(self, meta, items):
        return items[0] if len(items) == 1 else ast.Or(args=items, span=_span(meta))

    def and_(self, meta, items):
        return items[0] if len(items) == 1 else ast.And(args=items, span=_span(meta))

    def not_(self, meta, items):
        return ast.Not(operand=items[0], span=_span(meta))

    def compare(self, meta, items):
        left, op, right = items
        op = "=" if str(op) == "==" else str(op)
        return ast.Compare(op=op, left=left, right=right, span=_span(meta))

    def between(self, meta, items):
        """`x between L and H` is `x >= L and x <= H`; "between 7 and 10 %" gives the 7 its %."""
        left, _, low, high = items
        if isinstance(low, ast.Quantity) and low.unit is None and isinstance(high, ast.Quantity) and high.unit:
            low = low.model_copy(update={"unit": high.unit})
        span = _span(meta)
        return ast.And(args=[ast.Compare(op=">=", left=left, right=low, span=_join(left.span, low.span)),
                             ast.Compare(op="<=", left=left, right=high, span=_join(left.span, high.span))],
                       span=span)

    def range_test(self, meta, items):
        return ast.RangeTest(side=str(items[1]), operand=items[0], span=_span(meta))

    def window(self, meta, items):
        operand, side, amount = items
        if str(side) != "within":
            raise CritError(Diagnostic(code="E002", message=f"unexpected {str(side)!r}", span=_span(side),
                                       label="a time window is written 'within'",
                                       hint="e.g. mi within 6 months, or creat within 30 days > 2.5 mg/dL"))
        return ast.Window(operand=operand, amount=amount.value, unit=amount.unit or "", duration_span=amount.span,
                          span=_join(operand.span, amount.span))

    def window_compare(self, meta, items):
        operand, side, amount, op, right = items
        return self.compare(meta, [self.window(meta, [operand, side, amount]), op, right])

    def window_range(self, meta, items):
        operand, side, amount, range_side = items
        return self.range_test(meta, [self.window(meta, [operand, side, amount]), range_side])

    def index(self, meta, items):
        return ast.IndexDecl(anchor=" ".join(str(items[0]).split()), span=_span(meta))

    def arith(self, meta, items):
        result = items[0]
        for op, right in zip(items[1::2], items[2::2]):
            result = ast.Arith(op=str(op), left=result, right=right, span=_join(result.span, right.span))
        return result

    def neg(self, meta, items):
        return ast.Neg(operand=items[0], span=_span(meta))

    def name(self, meta, items):
        return ast.Name(name=str(items[0]), span=_span(meta))

    def boolean(self, meta, items):
        return ast.BoolLit(value=str(items[0]) == "true", span=_span(meta))

    def sex_value(self, meta, items):
        return ast.SexLit(value=str(items[0]), span=_span(meta))

    def aggregate(self, meta, items):
        func, *args = items
        return ast.Aggregate(func=str(func), args=args, span=_span(meta))

    def bound_ref(self, meta, items):
        return ast.BoundRef(func=str(items[0]), name=str(items[1]), span=_span(meta))

    def quantity(self, meta, items):
        unit = str(items[1]) if len(items) > 1 else None
        return ast.Quantity(value=_number(items[0]), unit=unit, span=_span(meta))


def _join(a: Span | None, b: Span | None) -> Span | None:
    if a is None or b is None:
        return a or b
    return Span(line=a.line, col=a.col, end_line=b.end_line, end_col=b.end_col)


# Names of terminals as a person would say them, for "expected ..." messages.
_HUMAN = {
    "NAME": "a name", "STRING": 'a "quoted phrase"', "NUMBER": "a number", "UNIT": "a unit (e.g. mg/dL)",
    "QTYPE": "'boolean' or 'numeric'", "ORDER": "an order (highest, lowest, first, last, most recent, last written, value)",
    "SEX": "male, female or any", "COMP_OP": "a comparison (>, >=, <, <=, =, !=)", "COLON": "':'",
    "LPAR": "'('", "RPAR": "')'", "COMMA": "','", "EQUAL": "'='", "MISSING_POLICY": "met, not met or unknown",
    "CRITERION_KIND": "include or exclude", "__ANON_0": "'..'", "TRIAL_ID": "a trial id (e.g. NCT00412984)",
    "BOOL": "true or false", "INDEX_ANCHOR": "first note or last note", "RANGE_SIDE": "above, below or within", "BETWEEN": "'between'", "MINUS": "'-'", "AGGREGATE": "any, all or count", "BOUND_FN": "uln or lln",
}
_STATEMENT_STARTS = {"TRIAL", "QTYPE", "RANGE", "LET", "CRITERION_KIND", "CONVERT", "INDEX"}


def _expected_text(expected: set[str]) -> str:
    # After a question, "not" can only begin `not aka`: say so, not a bare 'not'.
    human = {**_HUMAN, "NOT": "'not aka'"} if "AKA" in expected else _HUMAN
    names = sorted({human.get(e, f"'{e.lower()}'") for e in expected if e not in _STATEMENT_STARTS})
    if expected & _STATEMENT_STARTS:
        names.append("a new statement")
    if not names:
        return "something else"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _diagnostic(err: UnexpectedInput, text: str, path: str | None) -> Diagnostic:
    diag = _plain_diagnostic(err, text, path)
    if diag.code == "E002" and diag.span is not None:
        keyword = _misspelt_keyword(text, diag.span.line, diag.span.col)
        if keyword:
            return diag.model_copy(update={"hint": f"did you mean '{keyword}'?"})
    return diag


def _plain_diagnostic(err: UnexpectedInput, text: str, path: str | None) -> Diagnostic:
    line, col = max(err.line, 1), max(err.column, 1)
    lines = text.splitlines() or [""]
    rest_of_line = lines[line - 1][col - 1 :] if line <= len(lines) else ""
    span = Span(line=line, col=col, end_line=line, end_col=col + 1)
    if isinstance(err, UnexpectedCharacters):
        char = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        if char == '"':
            return Diagnostic(
                code="E001", message="unclosed string", file=path,
                span=Span(line=line, col=col, end_line=line, end_col=col + max(1, len(rest_of_line))),
                label="this string has no closing quote", hint='close it with " on the same line',
            )
        shown = repr(char) if char.isprintable() else f"character U+{ord(char):04X}" if char else "end of line"
        return Diagnostic(
            code="E002", message=f"unexpected {shown}", file=path, span=span,
            label=_expected_label(set(err.allowed or ())),
            hint=_hint(set(err.allowed or ()), char),
        )
    if isinstance(err, UnexpectedToken):
        token = err.token
        expected = set(err.expected or ())
        if token.type == "$END":
            return Diagnostic(
                code="E003", message="the file ends in the middle of a statement", file=path,
                span=Span(line=line, col=col, end_line=line, end_col=col + 1),
                label=_expected_label(expected), hint=_hint(expected, ""),
            )
        width = max(1, len(str(token)))
        return Diagnostic(
            code="E002", message=f"unexpected {str(token)!r}", file=path,
            span=Span(line=line, col=col, end_line=line, end_col=col + width),
            label=_expected_label(expected), hint=_hint(expected, str(token)),
        )
    if isinstance(err, UnexpectedEOF):
        return Diagnostic(code="E003", message="the file ends in the middle of a statement", file=path, span=span)
    return Diagnostic(code="E002", message="syntax error", file=path, span=span)


# The language's words, for "did you mean" when an unexpected word is one letter or two away from one.
_KEYWORDS = ("trial", "boolean", "numeric", "range", "let", "include", "exclude", "convert", "index", "date", "aka",
             "assumed", "cap", "guide", "gate", "off", "infer", "highest", "lowest", "first", "last", "value", "recent",
             "written", "male", "female", "any", "all", "count", "and", "or", "not", "within", "above", "below",
             "between", "missing", "met", "unknown", "true", "false", "uln", "lln")


def _misspelt_keyword(text: str, line: int, col: int) -> str | None:
    """The keyword the word at (or just before) an error looks like a slip of ("boolen", "akaa", "incldue")."""
    import difflib
    import re

    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return None
    row, at = lines[line - 1], col - 1
    words = [m for m in re.finditer(r"[A-Za-z_]+", row) if m.start() <= at]
    for m in reversed(words[-2:]):  # the word the error is in, else the one before it
        word = m.group(0).lower()
        if word in _KEYWORDS or len(word) < 3:
            continue
        close = difflib.get_close_matches(word, _KEYWORDS, n=1, cutoff=0.75)
        if close:
            return close[0]
    return None


def _expected_label(expected: set[str]) -> str:
    # A long list of alternatives helps nobody; the hint line carries the advice then.
    text = _expected_text(expected)
    return f"expected {text}" if text.count(",") < 7 else "not expected here"


# Operators other languages spell another way, and what crit writes for them.
_FOREIGN_OPERATORS = {"AND": "and", "&&": "and", "&": "and", "OR": "or", "||": "or", "|": "or", "NOT": "not",
                      "!": "not", "BETWEEN": "between"}


def _hint(expected: set[str], got: str) -> str | None:
    if got in _FOREIGN_OPERATORS:
        word = _FOREIGN_OPERATORS[got]
        if word == "between":
            return "write 'between' in lower case, e.g. hba1c between 7 and 10 %"
        return f"write '{word}': crit's operators are the lower-case words and, or, not"
    if got.startswith('"') and ("COMP_OP" in expected or "SEX_VALUE" in expected or "NAME" in expected):
        return "values in a rule are not quoted: write sex = female, or a question's name"
    if "__ANON_0" in expected or (got == "-" and "NUMBER" in expected):
        return "write a range as low..high, e.g. male 0.7..1.3 female 0.6..1.1"
    if expected == {"UNIT"} or ("UNIT" in expected and "NAME" not in expected and got and got[0].isdigit()):
        return "write the unit after 'in', e.g. in mg/dL"
    if expected & {"STRING"} and got and got[0].isalpha():
        return 'put the phrase in double quotes, e.g. boolean af "atrial fibrillation"'
    if "COLON" in expected and got:
        return 'a criterion reads: include "label": expression'
    if "MISSING_POLICY" in expected:
        return "write: if missing: met | not met | unknown"
    return None


def parse_text(text: str, path: str | None = None) -> ast.CritFile:
    """Parse .crit source. Raises CritError (never a lark or Python error) on bad input."""
    if len(text) > MAX_SOURCE_CHARS:
        raise CritError(Diagnostic(code="E005", message=f"file is too large for a criteria file ({len(text):,} characters)", file=path), text)
    try:
        tree = parser().parse(text)
    except UnexpectedInput as err:
        raise CritError(_diagnostic(err, text, path), text) from None
    except RecursionError:
        raise CritError(Diagnostic(code="E006", message="expression is nested too deeply", file=path), text) from None
    try:
        statements = _ToAst().transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, CritError):
            for_file = [d.model_copy(update={"file": path}) for d in err.orig_exc.diagnostics]
            raise CritError(for_file, text) from None
        raise
    except RecursionError:
        raise CritError(Diagnostic(code="E006", message="expression is nested too deeply", file=path), text) from None
    for stmt in statements:
        expr = getattr(stmt, "expr", None)
        if expr is not None and _depth(expr) > MAX_DEPTH:
            raise CritError(Diagnostic(
                code="E006", message=f"expression is nested too deeply (more than {MAX_DEPTH} levels)", file=path,
                span=stmt.span, hint="split it into named parts with `let`, or use any(...), all(...) or count(...)",
            ), text)
    statements = [_label_unlabelled(s, text) for s in statements]
    return ast.CritFile(path=path, statements=statements)


MAX_DEPTH = 64  # a sum of 300 terms is 300 levels deep: every later stage would recurse that far


def _depth(expr: ast.Node) -> int:
    """How deep an expression nests, counted without recursion."""
    deepest, stack = 0, [(expr, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in ast.children(node))
    return deepest


def _label_unlabelled(stmt: ast.Node, text: str) -> ast.Node:
    # An unlabelled criterion is named by its own expression, as written.
    if isinstance(stmt, ast.CriterionDecl) and not stmt.label and stmt.expr.span:
        return stmt.model_copy(update={"label": _slice(text, stmt.expr.span)})
    return stmt


def _slice(text: str, span: Span) -> str:
    lines = text.splitlines(keepends=True)
    start = sum(len(l) for l in lines[: span.line - 1]) + span.col - 1
    end = sum(len(l) for l in lines[: span.end_line - 1]) + span.end_col - 1
    return " ".join(text[start:end].split())


def read_source(path: str | Path) -> str:
    """Read a .crit file as UTF-8, or raise a CritError naming the file and the bad byte."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise CritError(Diagnostic(code="E007", message=f"no such file: {p}", hint="check the path")) from None
    except IsADirectoryError:
        raise CritError(Diagnostic(code="E007", message=f"{p} is a folder, not a .crit file")) from None
    except OSError as err:
        raise CritError(Diagnostic(code="E007", message=f"cannot read {p}: {err.strerror}")) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        before = data[: err.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        raise CritError(
            Diagnostic(
                code="E008", message=f"not UTF-8 text (byte 0x{data[err.start]:02x})", file=str(p),
                span=Span(line=line, col=col, end_line=line, end_col=col + 1),
                hint="save the file as UTF-8; is this really a .crit file?",
            )
        ) from None
