"""Command-line options more than one command takes, defined once (run, synth, eval).

Each is a decorator; a command stacks the ones it needs, so the same flag has the same
name, default and help everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

device_option: Decorator = click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")


def note_columns(func: Callable[..., Any]) -> Callable[..., Any]:
    """--id-column and --text-column: which columns of a table of notes hold the id and the text."""
    func = click.option("--text-column", default=None,
                        help="Column with the note text. Default: text, note, note_text, ... (first present).")(func)
    return click.option("--id-column", default=None,
                        help="Column with the note id. Default: note_id, id, row_id, ... (first present).")(func)


def columns(id_column: str | None, text_column: str | None) -> dict[str, str]:
    """The reader options (crit.engine.notes) for the columns a user named."""
    return {k: v for k, v in (("id_column", id_column), ("text_column", text_column)) if v is not None}


def patient_columns(func: Callable[..., Any]) -> Callable[..., Any]:
    """--patient-column, --date-column and --index-date-column: who a note is about, and when."""
    func = click.option("--index-date-column", default=None,
                        help="Column with each patient's index date, where windows end. "
                             "Default: index_date when present, else the patient's last note date.")(func)
    func = click.option("--date-column", default=None,
                        help="Column with the note date (YYYY-MM-DD). Default: note_date, date, chartdate, "
                             "record_date (first present).")(func)
    return click.option("--patient-column", default=None,
                        help="Column with the patient id: eligibility is then per patient, over all their notes. "
                             "Default: patient_id, subject_id, person_id, mrn (first present).")(func)
