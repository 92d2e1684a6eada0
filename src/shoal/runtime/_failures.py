"""What a pool does with a task that raised: retry it later, or record it per the policy.

Split in two on purpose: :func:`before_failure` runs on the worker with no lock held
(it may log, which runs logging handlers, and draws the random backoff);
:func:`record_failure_locked` then updates the pool's books under its lock.
"""

from __future__ import annotations

import heapq
import logging
import time
from typing import TYPE_CHECKING, Any

from .._errors import RetryLater, TaskError
from ._types import ErrorPolicy

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["before_failure", "record_failure_locked"]

logger = logging.getLogger(__name__)


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
        logger.error(
            "task %r failed after %d attempt(s)",
            item,
            attempt,
            exc_info=(type(exc), exc, exc.__traceback__),
        )


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
