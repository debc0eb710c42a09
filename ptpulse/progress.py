"""Progress reporting shared by long-running commands.

Library code takes an optional `progress(step, done, total)` callback and never imports rich; the CLI
passes one that draws a rich progress bar, tests pass None.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ProgressFn = Optional[Callable[[str, float, float], None]]

console = Console(stderr=True)


@contextmanager
def progress_bar(title: str) -> Iterator[Callable[[str, float, float], None]]:
    """A rich bar for one command; each call sets the current step and how far along it is."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(title, total=None)

        def report(step: str, done: float, total: float) -> None:
            bar.update(task, description=f"{title}: {step}", completed=done, total=total)

        yield report
