"""What a handler gets besides its item: one TaskContext per worker thread."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["TaskContext"]

T = TypeVar("T")


class TaskContext(Generic[T]):
    """What a handler gets besides its item: one context per worker thread.

    ``worker`` is the worker's number (0 .. workers-1), ``attempt`` is 1 on a task's
    first run and counts up on retries, ``item`` is the task being run.
    """

    __slots__ = ("_pool", "attempt", "item", "worker")

    def __init__(self, pool: Pool[T], worker: int) -> None:
        self._pool = pool
        self.worker = worker
        self.attempt = 1
        self.item: Any = None

    def put(self, item: T, *, delay: float | None = None) -> None:
        """Spawn a task; the pool's join() waits for it too. Never blocks.

        ``delay`` runs it no sooner than that many seconds from now.
        """
        self._pool._put_inside(item, delay)

    def put_many(self, items: Iterable[T]) -> None:
        """Spawn many tasks at once (see :meth:`put`)."""
        for item in items:
            self._pool._put_inside(item, None)

    def emit(self, value: Any) -> None:
        """Send one value on: to the pool's ``results()`` (a pool made with
        ``results=True``, or a pipeline's last stage) or to the next stage of a pipeline.

        A task may emit any number of values and also return one; the emitted ones go
        first. Blocks while the receiving buffer or stage is full.
        """
        self._pool._emit(value)

    def print(self, *args: object, sep: str = " ", end: str = "\n") -> None:
        """Print a line through the pool's writer thread."""
        self._pool.output.print(*args, sep=sep, end=end)

    def write(self, record: Any) -> None:
        """Hand a record to the pool's writer thread."""
        self._pool.output.write(record)

    def __repr__(self) -> str:
        return f"<TaskContext worker={self.worker} attempt={self.attempt}>"
