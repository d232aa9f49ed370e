"""Diagnostics: one error type for people, and one renderer.

Every problem crit reports about a user's input (a .crit file, a notes file, a
model path, a unit) becomes a CritError carrying one or more Diagnostics. The CLI
renders them and exits 1; nothing below the CLI prints.
"""

from __future__ import annotations

import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict

Severity = Literal["error", "warning"]


class Span(BaseModel):
    """A 1-based, end-exclusive region of a source text (lines and columns count characters)."""

    model_config = ConfigDict(frozen=True)

    line: int
    col: int
    end_line: int
    end_col: int


class Diagnostic(BaseModel):
    model_config = ConfigDict(frozen=True)

    severity: Severity = "error"
    code: str  # stable, e.g. E102
    message: str
    file: str | None = None
    span: Span | None = None
    label: str | None = None  # short text under the caret
    hint: str | None = None

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    @property
    def col(self) -> int | None:
        return self.span.col if self.span else None


class CritError(Exception):
    """A user error: bad input, never a bug. The CLI prints it and exits 1."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic | str, source: str | None = None):
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(code="E000", message=diagnostics)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = diagnostics
        self.source = source
        super().__init__(diagnostics[0].message if diagnostics else "error")

    def render(self, color: bool = False) -> str:
        return "\n\n".join(render(d, self.source, color=color) for d in self.diagnostics)

    def __str__(self) -> str:
        """A notebook prints an error by str(): where the file is known, the whole diagnostic with its line and
        caret; otherwise the one-line message (which run records and other messages also quote)."""
        if self.source is not None and any(d.span for d in self.diagnostics):
            return self.render()
        return self.diagnostics[0].message if self.diagnostics else "error"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def render(diag: Diagnostic, source: str | None = None, color: bool = False) -> str:
    """Render in the rustc/Elm manner: header, location, the user's own line, carets, hint."""
    bold, red, yellow, blue, reset = ("\x1b[1m", "\x1b[31m", "\x1b[33m", "\x1b[34m", "\x1b[0m") if color else ("",) * 5
    tint = red if diag.severity == "error" else yellow
    out = [f"{bold}{tint}{diag.severity}[{diag.code}]{reset}{bold}: {diag.message}{reset}"]
    if diag.file or diag.span:
        where = diag.file or "<input>"
        if diag.span:
            where += f":{diag.span.line}:{diag.span.col}"
        out.append(f"  {blue}-->{reset} {where}")
    lines = source.splitlines() if source is not None else []
    if diag.span and 1 <= diag.span.line <= len(lines):
        text = lines[diag.span.line - 1].replace("\t", " ")
        gutter = str(diag.span.line)
        pad = " " * len(gutter)
        start = diag.span.col - 1
        if diag.span.end_line == diag.span.line:
            length = max(1, diag.span.end_col - diag.span.col)
        else:
            length = max(1, len(text) - start)
        lead = _width(text[:start])
        carets = "^" * max(1, _width(text[start : start + length]))
        out.append(f"{blue}{gutter} |{reset} {text}")
        tail = f" {diag.label}" if diag.label else ""
        out.append(f"{blue}{pad} |{reset} {' ' * lead}{tint}{carets}{tail}{reset}")
        if diag.hint:
            out.append(f"{blue}{pad} = hint:{reset} {diag.hint}")
    elif diag.hint:
        out.append(f"  = hint: {diag.hint}")
    return "\n".join(out)
