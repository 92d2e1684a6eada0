"""Small value types of the runtime: error policies and the pool's reports."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["ErrorPolicy", "PoolStats", "ShutdownReport"]


class ErrorPolicy(StrEnum):
    """What a pool does when a task fails for good (retries used up or not retryable)."""

    FAIL_FAST = "fail_fast"  # cancel what is queued; join() raises TaskError
    COLLECT = "collect"  # keep going; join() raises one TaskErrorGroup with every failure
    LOG = "log"  # log one WARNING line (traceback at DEBUG), keep going


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A consistent snapshot of a pool's counters (taken under its lock)."""

    queued: int  # waiting to run, including delayed retries
    in_flight: int
    done: int  # finished without error
    failed: int  # failed for good
    retried: int  # retries scheduled
    cancelled: int  # dropped from the queue by cancel(), fail-fast or Ctrl-C
    submitted: int  # every task ever put, spawned tasks included
    peak_queued: int
    workers: int
    elapsed: float  # seconds since the pool started

    @property
    def finished(self) -> int:
        """Tasks that ran to an end: ``done + failed``."""
        return self.done + self.failed

    @property
    def rate(self) -> float:
        """Tasks finished per second since the pool started."""
        return self.finished / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What an interrupted or cancelled pool left undone."""

    cancelled: list[Any]  # queued items that never ran
    unfinished: int  # tasks still in flight when the pool gave up waiting
    abandoned: bool  # True when in-flight tasks were left running (second Ctrl-C, timeout)
