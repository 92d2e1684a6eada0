"""What a pool does with a task that raised: retry it later, or record it per the policy.

Split in two on purpose: :func:`before_failure` runs on the worker with no lock held
(it may log, which runs logging handlers, and draws the random backoff);
:func:`record_failure_locked` then updates the pool's books under its lock.
"""

from __future__ import annotations

import heapq
import logging
import reprlib
import time
from typing import TYPE_CHECKING, Any

from .._errors import RetryLater, TaskError
from ._types import ErrorPolicy

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["before_failure", "log_failure", "record_failure_locked"]

logger = logging.getLogger(__name__)

# An item may be a whole page or a long URL list: its repr in a log line is bounded.
_ITEM_REPR = reprlib.Repr()
_ITEM_REPR.maxstring = 160
_ITEM_REPR.maxother = 160
_MAX_MESSAGE = 300


def log_failure(item: Any, attempts: int, exc: BaseException) -> None:
    """The ``errors="log"`` record of a failed task: one WARNING line (item, exception
    type and message); the traceback goes in a DEBUG record of its own.

    A failure per item is expected in a "log and skip" run (a 404 among a thousand URLs),
    so a traceback each would bury everything else; with DEBUG logging it is there.
    """
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the record
        message = "<unprintable message>"
    lines = message.strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > _MAX_MESSAGE or len(lines) > 1:
        first = first[:_MAX_MESSAGE] + " ..."
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    shown = _ITEM_REPR.repr(item)
    if len(shown) > _MAX_MESSAGE:  # a tuple of long strings: each is bounded, not the whole
        shown = shown[:_MAX_MESSAGE] + "..."
    logger.warning("task %s failed after %d attempt(s): %s", shown, attempts, what)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("traceback of task %s", shown, exc_info=(type(exc), exc, exc.__traceback__))


def before_failure(pool: Pool[Any], item: Any, attempt: int, exc: BaseException) -> None:
    # Built here, not under the lock: its message calls repr() on the item (user code).
    # Also when a retry is planned: a cancel() before it is recorded makes it final.
    pool._local.task_error = TaskError(item, exc, attempt)
    retryable = isinstance(exc, RetryLater) or bool(
        pool._retry_on and isinstance(exc, pool._retry_on)
    )
    if retryable and attempt < pool._retry.attempts:
        requested = exc.after if isinstance(exc, RetryLater) else None
        pool._local.retry_delay = pool._retry.delay(attempt, requested)
        return
    pool._local.retry_delay = None
    if pool._policy is ErrorPolicy.LOG and pool._results_report_failures:
        log_failure(item, attempt, exc)


def record_failure_locked(pool: Pool[Any], item: Any, attempt: int, exc: BaseException) -> None:
    delay = pool._local.retry_delay
    if delay is not None and not pool._dropping:
        pool._retried += 1
        due = time.monotonic() + delay
        first = not pool._delayed or due < pool._delayed[0][0]
        heapq.heappush(pool._delayed, (due, next(pool._seq), item, attempt + 1))
        if first:
            pool._work.notify()
        return  # still unfinished: the retry carries the count
    pool._failed += 1
    pool._unfinished -= 1
    err: TaskError = pool._local.task_error
    pool._local.task_error = None
    if pool._results is not None:
        pool._results.fail_locked(err)
    if pool._policy is ErrorPolicy.FAIL_FAST:
        if pool._failure is None:
            pool._failure = err
            pool._drop_queued_locked()
            if pool._results is not None:
                pool._results.wake_all_locked()  # the reader raises it now
    elif pool._policy is ErrorPolicy.COLLECT and pool._results_report_failures:
        pool._collected.append(err)
