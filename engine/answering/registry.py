"""Backends by name: every file of crit.engine.answering.backends is one backend, found here by its FACTORY.

`crit run` needs every question's answer_key (question fingerprint + backend
identity) before it can tell which answers are cached; when none are missing it
must not load a model at all. So each backend comes with a factory whose
`identity()` is cheap (file names and sizes, a model name) and whose `create()`
does the expensive part. A backend file keeps its heavy imports (torch, vLLM, Ray)
inside `create()`, so listing the backends imports none of them.

Adding a backend is adding one file to crit/engine/answering/backends/ that defines a
factory class and names it `FACTORY`: the CLI's `--backend` choices and `crit.run`
read them from here.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from crit.grammar.errors import CritError

if TYPE_CHECKING:
    from crit.engine.answering.backend import Backend


class BackendFactory(Protocol):
    name: str  # the --backend choice, stored with the run

    def identity(self) -> str:
        """The identity the backend will report, computed without starting it."""
        ...

    def parameters(self) -> dict[str, Any]:
        """Settings worth recording with the run (JSON-serialisable)."""
        ...

    def create(self) -> Backend:
        """Start the backend (load a model, open a connection)."""
        ...


def require(factory: BackendFactory) -> None:
    """Check, before any note is read, that the backend can start on this machine: a factory's `require()`
    (where it has one) finds its packages without importing them, and raises CritError with the install
    hint. A run whose gate answers every question would otherwise finish without ever finding out."""
    check = getattr(factory, "require", None)
    if check is not None:
        check()


@cache
def backends() -> dict[str, type]:
    """`--backend` name -> factory class: the FACTORY of each backend file (backend_names), imported."""
    from crit.engine.answering import backends as package

    return {name: importlib.import_module(f"{package.__name__}.{name}").FACTORY for name in backend_names()}


@cache
def _sources() -> dict[str, str]:
    """Each backend file's text, by module name: read, not imported."""
    from crit.engine.answering import backends as package

    folder = Path(package.__file__).parent
    return {f.stem: f.read_text(encoding="utf-8") for f in sorted(folder.glob("*.py")) if f.stem != "__init__"}


def _factory_doc(source: str) -> str | None:
    """The first docstring line of the class a module names as its FACTORY, or None when it names none."""
    named = re.search(r"^FACTORY = (\w+)\s*$", source, re.M)
    if named is None:
        return None
    found = re.search(rf'^class {named.group(1)}\b[^\n]*:\n\s+"""([^\n]*)', source, re.M)
    return found.group(1).removesuffix('"""') if found else None


# The command line lists the backends and says what each is before any of them is imported (so
# `crit --help` and `crit check` start fast): a backend's name is its file's name, and its help is its
# factory's docstring, both read from the source text. tests/test_backend_llamacpp.py checks both against
# the imported factories.
@cache
def backend_names() -> tuple[str, ...]:
    """The `--backend` choices: the backend files that name a FACTORY."""
    return tuple(name for name, source in _sources().items() if _factory_doc(source) is not None)


def describe(name: str) -> str:
    """The first line of a backend factory's docstring: what the backend is, for --help."""
    return (_factory_doc(_sources()[name]) or name).strip().rstrip(".")


def factory_for(name: str, **options: Any) -> Any:
    """The factory for `--backend name`, given the options that backend takes.

    An option the backend does not use but the user set (not None) is an error, so
    `--base-url` with the embedded backend is not silently ignored."""
    known = backends()
    if name not in known:
        raise CritError(f"unknown backend {name!r}; choose one of {', '.join(known)}")
    cls = known[name]
    accepted = {f.name for f in dataclasses.fields(cls) if f.init}
    unused = sorted(k for k, v in options.items() if k not in accepted and v is not None)
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise CritError(f"--backend {name} does not take {flags}")
    return cls(**{k: v for k, v in options.items() if k in accepted and v is not None})
