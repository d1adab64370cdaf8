"""Where the CLI prints: stdout for results, stderr for progress and messages; plain lines in CI.
`Render` turns the library's events (`bhbench.events`) into those lines and bars."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from bhbench.events import Event
    from bhbench.runner import JobResult

# Wide tables when piped (CI logs), the terminal's width otherwise.
console = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)

COLOURS = {"info": "", "warning": "yellow", "error": "red"}


def tagged(text: str, label: str = "", level: str = "info") -> str:
    """A message as rich markup: `[yellow]note:[/] text`; the text itself is never markup."""
    colour = COLOURS[level]
    if label:
        return f"[{colour}]{escape(label)}:[/] {escape(text)}" if colour else f"{escape(label)}: {escape(text)}"
    return f"[{colour}]{escape(text)}[/]" if colour else escape(text)


def number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Render:
    """The `progress=` callback of every command: a rich bar per step on a terminal (a pulsing one
    when the total is unknown), in CI and pipes a single line when a step is done, with no control
    codes; each message and finished job one line."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._done = 0.0

    def __call__(self, event: Event) -> None:
        from bhbench import events

        match event:
            case events.StepStarted(label, total):
                self._done = 0.0
                if console.is_terminal:
                    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
                    self._bar = Progress(*columns, console=console, transient=True)
                    self._bar.start()
                    self._bar.add_task(label, total=total)
            case events.StepAdvanced(n):
                self._done += n
                if self._bar is not None:
                    self._bar.advance(self._bar.task_ids[0], n)
            case events.StepEnded(label):
                if self._bar is not None:
                    self._bar.stop()
                    self._bar = None
                if self._done:
                    console.print(f"{escape(label)}: {self._done:.0f} done")
            case events.Message(text, label, level):
                console.print(tagged(text, label, level))
            case events.JobFinished(result, label):
                r = result.record
                state = result.note or ("finished earlier" if result.skipped else r.status)
                if result.job.rerun and not result.skipped:
                    state += f" (redone: {result.job.rerun})"
                prr = f" PRR {100 * r.metrics.headline:.1f}" if r.metrics else ""
                console.print(f"  {escape(label)} fold {result.job.fold.index}: {escape(state)}{prr}")
            case events.StillWorking(done, total, quiet):
                console.print(
                    f"  still working: {done} of {total} (method, fold) jobs done, "
                    f"none finished in the last {quiet:.0f} s"
                )
            case events.TrialFinished(fold, trial, value, params, error):
                shown = ", ".join(f"{k}={number(v)}" for k, v in params.items())
                said = f"inner PRR {100 * value:.1f}" if value is not None else f"failed: {error}"
                console.print(escape(f"  fold {fold} trial {trial}: {said} ({shown})"))
            case events.CheckFinished(result):
                out.print(result.line(), style=None if result.passed else "red", markup=False)


def failures(jobs: list[JobResult], verbose: bool = False) -> None:
    """One line per method variant with failed folds (how many, the first reason, its log); with
    `verbose`, each failed fold's log: the whole message and the method's traceback."""
    from bhbench.api import label

    variants: dict[str, list[JobResult]] = {}
    for j in jobs:
        variants.setdefault(label(j.job.spec), []).append(j)
    for name, found in variants.items():
        failed = [j for j in found if not j.record.ok]
        if not failed:
            continue
        others = " (the other folds' logs are beside it)" if len(failed) > 1 else ""
        said = f"{name}: {len(failed)} of {len(found)} folds failed: {failed[0].record.error}; see {failed[0].job.log}"
        console.print(tagged(said + others, "failed", "error"))
        for j in failed if verbose else ():
            try:
                text = j.job.log.read_text()
            except OSError as exc:
                text = f"(no log: {exc.strerror})"
            console.print(f"--- {j.job.log}\n{text.rstrip()}", markup=False)


def progress_bar(label: str, total: int | None = None) -> AbstractContextManager[Callable[[int], None]]:
    """One counted step of a command that reports no other events (data download, check, synth)."""
    from bhbench.events import step

    return step(Render(), label, total)
