"""bhbench: one leak-free protocol, harness-computed metrics and one leaderboard for BreaKHis.

The public API for method authors is what this module exports."""

from bhbench.config import cache_dir
from bhbench.constraints import Interval
from bhbench.method import Method, NotFittedError, TestSet, TrainSet, check_is_fitted
from bhbench.protocol import MAGNIFICATIONS, TASK_CLASSES
from bhbench.registry import MethodCard, register

__version__ = "0.1.0"
__all__ = [
    "MAGNIFICATIONS",
    "TASK_CLASSES",
    "Interval",
    "Method",
    "MethodCard",
    "NotFittedError",
    "TestSet",
    "TrainSet",
    "cache_dir",
    "check_is_fitted",
    "register",
]
