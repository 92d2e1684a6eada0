"""Every exception shoal raises on purpose descends from :class:`ShoalError`.

Errors from the libraries underneath (sqlite3, urllib3, redis) are translated where
shoal calls them, so ``except shoal.ShoalError`` is enough to catch anything shoal
means to report::

    ShoalError
    ├── PoolClosed            put() on a pool that no longer takes work
    ├── QueueFull             put(timeout=...) found no room in time
    ├── JoinTimeout           join(timeout=...) ran out (also a TimeoutError)
    ├── TaskError             a task failed for good; .item, .attempts, __cause__
    ├── TaskErrorGroup        every failure of a "collect" pool (also an ExceptionGroup)
    ├── RetryLater            raised by a handler: run this task again after a backoff
    ├── WriterError           the writer's sink failed; nothing more is accepted
    ├── UsageError            a bad option or argument (exit code 2)
    │   └── InvalidURL        a URL that cannot be crawled
    └── StateError            the crawl state cannot be used (exit code 3)
        ├── StateLocked       another crawl holds the state file
        ├── StateMismatch     the state file was made with other scope options
        │   └── CrawlMismatch a shared crawl (Redis) was started with other options
        ├── StaleCommit       a commit was refused: a lease or output position moved on
        └── RedisStateError   the crawl's Redis cannot be used (refused, too old, ...)
            └── RedisUnavailable  Redis cannot be reached (or the connection was lost)

Each error carries ``exit_code``, which the command line uses as its exit status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "CrawlMismatch",
    "InvalidURL",
    "JoinTimeout",
    "PoolClosed",
    "QueueFull",
    "RedisStateError",
    "RedisUnavailable",
    "RetryLater",
    "ShoalError",
    "StaleCommit",
    "StateError",
    "StateLocked",
    "StateMismatch",
    "TaskError",
    "TaskErrorGroup",
    "UsageError",
    "WriterError",
]


class ShoalError(Exception):
    """Root of every error shoal raises on purpose."""

    exit_code: int = 1


class PoolClosed(ShoalError):
    """The pool was closed, cancelled or failed; it takes no more tasks."""


class QueueFull(ShoalError):
    """A bounded put() found no room within its timeout."""


class JoinTimeout(ShoalError, TimeoutError):
    """join(timeout=...) returned before every task finished."""


class TaskError(ShoalError):
    """A task failed for good (after any retries). The original error is ``__cause__``."""

    def __init__(self, item: Any, error: BaseException, attempts: int = 1) -> None:
        super().__init__(f"task {item!r} failed after {attempts} attempt(s): {error!r}")
        self.item = item
        self.error = error
        self.attempts = attempts
        self.__cause__ = error


class TaskErrorGroup(ExceptionGroup[TaskError], ShoalError):
    """All the failures a pool with ``errors="collect"`` saw, one TaskError each."""

    def __new__(cls, message: str, errors: Sequence[TaskError]) -> TaskErrorGroup:
        return super().__new__(cls, message, errors)

    def derive(self, excs: Sequence[TaskError]) -> TaskErrorGroup:  # type: ignore[override]
        return TaskErrorGroup(self.message, excs)

    @property
    def errors(self) -> list[TaskError]:
        """The failures, flat (a group made by shoal never nests)."""
        return [e for e in self.exceptions if isinstance(e, TaskError)]

    @property
    def items(self) -> list[Any]:
        """The items of the failed tasks."""
        return [e.item for e in self.errors]


class RetryLater(ShoalError):
    """Raise from a handler to have the task run again, after ``after`` seconds if given.

    Raise it ``from`` the underlying error so the final TaskError can name it.
    """

    def __init__(self, reason: str = "retry requested", *, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class WriterError(ShoalError):
    """The writer's sink raised; the writer accepts nothing more. ``__cause__`` says why."""


class UsageError(ShoalError):
    """A bad argument or option."""

    exit_code = 2


class InvalidURL(UsageError):
    """A URL that shoal cannot crawl (bad syntax, unsupported scheme, no host)."""

    def __init__(self, url: str, reason: str) -> None:
        shown = url if len(url) <= 200 else url[:200] + "..."
        super().__init__(f"invalid URL {shown!r}: {reason}")
        self.url = url
        self.reason = reason


class StateError(ShoalError):
    """The crawl state file cannot be opened, read or written."""

    exit_code = 3


class StateLocked(StateError):
    """Another running crawl holds this state file."""


class StateMismatch(StateError):
    """The state file belongs to a crawl with other start URLs or scope options."""


class CrawlMismatch(StateMismatch):
    """A crawl of this id exists in Redis with other scope or politeness options."""


class StaleCommit(StateError):
    """A commit was refused, nothing of it applied: one of its leases expired and went to
    another worker, or the stored output position is not the one the commit started from
    (another process registered with this worker id). The records it covers must be cut
    from the output, since another worker fetches those URLs again. ``committed_offset`` is
    the offset Redis holds for this worker when that is the reason: cut the output back to it."""

    committed_offset: int | None = None


class RedisStateError(StateError):
    """The crawl's Redis cannot be used: it refused the password, is older than 7.0, evicts
    keys, or answered with an error."""


class RedisUnavailable(RedisStateError):
    """Redis cannot be reached, or the connection was lost and did not come back in time."""
