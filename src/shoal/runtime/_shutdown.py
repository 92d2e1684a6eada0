"""Pool.shutdown(): stop now, give running tasks a grace period, say what was left undone."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ._types import ShutdownReport

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["shutdown_pool"]

logger = logging.getLogger(__name__)


def shutdown_pool(pool: Pool[Any], grace: float, *, log: bool = True) -> ShutdownReport:
    cancelled: list[Any] = []
    abandoned = False
    try:
        cancelled = pool.cancel()
        deadline = time.monotonic() + grace
        with pool._lock:
            while pool._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    abandoned = True
                    break
                pool._done.wait(remaining)
            unfinished = pool._in_flight
    except KeyboardInterrupt:
        # The second Ctrl-C: leave in-flight tasks to die with the process.
        pool._stop_now()
        if log:
            _report(pool, ShutdownReport(cancelled, pool.stats().in_flight, True))
        raise
    pool._stop_now()
    report = ShutdownReport(cancelled, unfinished, abandoned)
    if log:
        _report(pool, report)
    return report


def _report(pool: Pool[Any], report: ShutdownReport) -> None:
    logger.warning(
        "pool %r stopped: %d queued task(s) cancelled, %d in flight %s",
        pool.name,
        len(report.cancelled),
        report.unfinished,
        "abandoned" if report.abandoned else "finished",
    )
