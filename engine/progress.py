"""A rich progress bar for a run: on the terminal's stderr for `crit run`, or in a notebook's cell."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from crit.engine.run import Progress


@contextmanager
def progress_bar(console: Console | None = None) -> Iterator[Callable[[Progress], None]]:
    """A bar of notes done, with notes/s and questions/s, and the `on_progress` callback that moves it.
    `console`: where it draws (default: stderr, which rich shows in a notebook's output too)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    columns = (
        TextColumn("notes"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rates]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
    )
    with Bar(*columns, console=console or Console(stderr=True), transient=False) as bar:
        task = bar.add_task("notes", total=None, rates="")

        def on_progress(p: Progress) -> None:
            elapsed = bar.tasks[0].elapsed or 1e-9
            done = p.notes_done + p.bad_rows
            rates = f"{p.notes_done / elapsed:.2f} notes/s  {p.questions_asked / elapsed:.2f} questions/s"
            bar.update(task, total=p.notes_total, completed=done, rates=rates)

        yield on_progress
