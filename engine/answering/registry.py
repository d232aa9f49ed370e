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
import pkgutil
from functools import cache
from typing import Any, Protocol

from crit.engine.answering.backend import Backend
from crit.grammar.errors import CritError


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


@cache
def backends() -> dict[str, type]:
    """`--backend` name -> factory class, one per module of crit.engine.answering.backends, by name."""
    from crit.engine.answering import backends as package

    found: dict[str, type] = {}
    for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__)):
        factory = getattr(importlib.import_module(f"{package.__name__}.{module}"), "FACTORY", None)
        if factory is not None:
            found[factory.name] = factory
    return found


def describe(name: str) -> str:
    """The first line of a backend factory's docstring: what the backend is, for --help."""
    return (backends()[name].__doc__ or name).strip().splitlines()[0].rstrip(".")


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
