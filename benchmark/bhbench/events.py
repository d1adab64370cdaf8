"""What a library call reports while it works, as small typed events to one callback
(`bhbench.api`'s `progress=`). The library never prints: the CLI renders these with rich, a
notebook or a service may log them, tests may collect them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from bhbench.checks import CheckResult
    from bhbench.runner import JobResult

Level = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class StepStarted:
    """A step with a progress count began (`total` None: not known in advance)."""

    label: str
    total: int | None = None


@dataclass(frozen=True)
class StepAdvanced:
    """The current step did `n` more of its units."""

    n: int = 1


@dataclass(frozen=True)
class StepEnded:
    """The current step is over."""

    label: str


@dataclass(frozen=True)
class Message:
    """Something to tell the user: `label` names its kind ("note", "warning", "leak"...; "" for a
    plain line) and `level` how much it matters."""

    text: str
    label: str = ""
    level: Level = "info"


@dataclass(frozen=True)
class JobFinished:
    """A (method, fold) job finished (or was found finished earlier: `result.skipped`)."""

    result: JobResult
    label: str  # the method with the parameters that make this variant: `lbp_svm [C=10]`


@dataclass(frozen=True)
class StillWorking:
    """No job finished for `quiet` seconds: a long fold, not a hang."""

    done: int
    total: int
    quiet: float


@dataclass(frozen=True)
class TrialFinished:
    """A tuning trial of outer fold `fold` ended: `value` its inner PRR, or None when it failed."""

    fold: int
    number: int
    value: float | None
    params: dict[str, Any]
    error: str | None


@dataclass(frozen=True)
class CheckFinished:
    """One check of `bhbench check` on one method."""

    result: CheckResult


Event = StepStarted | StepAdvanced | StepEnded | Message | JobFinished | StillWorking | TrialFinished | CheckFinished
Progress = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default callback: nothing reported."""


@contextmanager
def step(progress: Progress, label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A counted step: started, advanced by the function it yields, ended."""
    progress(StepStarted(label, total))
    try:
        yield lambda n: progress(StepAdvanced(n))
    finally:
        progress(StepEnded(label))
