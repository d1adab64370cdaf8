"""Wall-clock limits: per (method, fold) job in run, tune and audit, and per check in `bhbench check`.

A job's default depends on its method's family. Measured on the committed records (fit + predict
seconds of one fold, on the 283-image BreaKHis subset and the synthetic default): reference <= 0.6 s,
handcrafted <= 11 s, submissions <= 91 s, a deep smoke recipe on CPU <= 56 s. The complete BreaKHis
has 28 times as many images, and a worker's start-up, the contract check and the FPS timing come on
top; a full deep recipe on CPU takes hours. Each default leaves a wide margin over that: it is there
so that a hung method ends (in CI too), not to judge speed."""

from __future__ import annotations

from bhbench.record import TimeLimit

HOUR = 3600.0
FAMILY_SECONDS = {"reference": 600.0, "test": 600.0, "handcrafted": HOUR, "deep": 6 * HOUR}
OTHER_SECONDS = 6 * HOUR  # submissions and any other family: their cost is unknown, so generous
# One check of the battery (several fits of the tiny set, whose CPU time `--budget` bounds apart): a
# method that sleeps or waits on a lock spends no CPU time, and only a wall clock ends it.
CHECK_SECONDS = 600.0


def job_limit(family: str, timeout: float | None) -> TimeLimit:
    """The limit of one job of a method of `family`: `timeout` seconds when given (0: none), else the
    family's default."""
    if timeout is None:
        return TimeLimit(FAMILY_SECONDS.get(family, OTHER_SECONDS), "family default")
    return TimeLimit(timeout or None, "given")
