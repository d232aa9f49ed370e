"""Command-line options more than one command takes, defined once (run, synth, eval).

Each is a decorator; a command stacks the ones it needs, so the same flag has the same
name, default and help everywhere. The note-column flags are made from
crit.engine.notes.NoteColumns, whose field descriptions are their help.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from pydantic import BaseModel, ValidationError

from crit.engine.notes.columns import NoteColumns


class CommandOptions(BaseModel):
    """A command's options gathered into one model (crit select, train, synth, eval): a value it refuses is a
    usage error of that option, which the command line reports as `--option: why`."""


def is_option_error(error: ValidationError) -> bool:
    """Whether a validation error is about a command's options (not data crit read or made)."""

    def subclasses(cls: type) -> list[type]:
        return [c for s in cls.__subclasses__() for c in (s, *subclasses(s))]

    return error.title in {c.__name__ for c in subclasses(CommandOptions)}


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

# No default here: each backend that takes a device has its own (auto), and one that takes none is not
# handed one it would refuse.
device_option: Decorator = click.option("--device", default=None, help="auto (the default), cpu or cuda.")


def column_options(*fields: str) -> Decorator:
    """The flags of the named NoteColumns fields (all six when none is named), e.g. --id-column."""
    names = fields or tuple(NoteColumns.model_fields)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            flag = "--" + name.replace("_", "-")
            func = click.option(flag, name, default=None, help=NoteColumns.model_fields[name].description)(func)
        return func

    return decorate


def pop_columns(options: dict[str, Any]) -> NoteColumns:
    """Take the NoteColumns fields out of a command's keyword arguments."""
    return NoteColumns(**{name: options.pop(name) for name in NoteColumns.model_fields if name in options})
