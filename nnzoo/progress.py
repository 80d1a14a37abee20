"""Rich progress bars for long work (dataset builds, loading many files, benchmark grids)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


def _console(stderr: bool) -> Console:
    """A Rich console; where the output is not a terminal (logs, pipes) 160 columns wide instead of Rich's 80,
    so tables and paths stay on their lines (``COLUMNS`` still decides when set)."""
    import os
    made = Console(stderr=stderr)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made.width = 160
    return made


console = _console(stderr=True)  # progress, notes and tables of long work
stdout_console = _console(stderr=False)  # results a command prints (nnzoo list, metrics tables)


def note(text: str) -> None:
    """One plain line on stderr about how a run was set up (no Rich markup read from ``text``)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def warn(text: str) -> None:
    """One ``warning:`` line on stderr: the run goes on, but its result may not mean what the user expects."""
    note(f"warning: {text}")


@contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """Show a bar for ``total`` units of work; yields ``advance(n)``.

    Only on a terminal: in logs and captured output a bar's last frame is
    noise (and would break the one-line error contract of the CLI).
    """
    if not console.is_terminal:
        yield lambda n=1: None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def quiet_lightning() -> None:
    """Drop Lightning's lines that say nothing about the run: the litlogger advertisement and its own
    deprecation warning about ``LeafSpec`` (the model summary's "Total FLOPs: 0" is replaced by
    :class:`nnzoo.callbacks.ParameterLine`)."""
    import logging
    import warnings
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdvert) for f in rank_zero.filters):
        rank_zero.addFilter(_NoAdvert())


class _NoAdvert:
    def filter(self, record) -> bool:
        return "litlogger" not in record.getMessage()
