"""Where the CLI prints: stdout for results, stderr for progress and messages; plain lines in CI."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# Wide tables when piped (CI logs), the terminal's width otherwise.
console = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


@contextmanager
def progress_bar(label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A rich bar on a terminal (a pulsing one when the total is unknown); in CI and pipes a single
    line when done, with no control codes."""
    if not console.is_terminal:
        count = [0]

        def bump(n: int) -> None:
            count[0] += n

        yield bump
        if count[0]:
            console.print(f"{label}: {count[0]} done")
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
        done = bar.tasks[0].completed
    if done:
        console.print(f"{label}: {done:.0f} done")
