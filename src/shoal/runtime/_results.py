"""The bounded buffer between a pool's workers and the one thread reading its results.

It lives under the pool's own lock (so "no more results" and "the pool is finished" are
decided together) with two conditions on it: the reader waits on ``ready``, workers
wait on ``room``. Every method whose name ends in ``_locked`` is called with that
lock held; none of them calls user code. It knows nothing of the pool: the pool reads
it (``Pool.results()``, and shoal.map's reader through the pool) and tells it what it
needs to know, such as whether the pool is dropping values.

Room is counted as values in the buffer *plus* values the reader took but has not
handed out yet (``held``), so the bound holds for everything between the workers and
the reader's caller. The reader takes at most half the bound at a time: workers keep
filling the other half while the reader's caller works through its share.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .._errors import TaskError

__all__ = ["Failure", "ResultBuffer"]


class Failure:
    """A task that failed for good, put in the buffer only for readers that ask for it
    (``shoal.map`` skips the item's slot in ordered mode)."""

    __slots__ = ("error",)

    def __init__(self, error: TaskError) -> None:
        self.error = error


class ResultBuffer:
    """Values returned or emitted by handlers, waiting for ``results()``."""

    __slots__ = (
        "closed",
        "held",
        "items",
        "keep_none",
        "mark_failures",
        "maxsize",
        "reader",
        "ready",
        "room",
        "room_waiters",
        "waiting",
    )

    def __init__(self, lock: threading.Lock, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("buffer must be >= 1")
        self.items: deque[Any] = deque()
        self.maxsize = maxsize
        self.held = 0  # values the reader took and has not handed out yet
        self.ready = threading.Condition(lock)
        self.room = threading.Condition(lock)
        self.room_waiters = 0
        self.waiting = False  # the reader sleeps on ``ready``
        self.closed = False  # nobody will read again: values are dropped, nobody waits
        self.reader: threading.Thread | None = None
        self.keep_none = False  # shoal.map: None is a result like any other
        self.mark_failures = False  # shoal.map: failures take their place in the stream

    def put_locked(self, values: list[Any], dropping: Callable[[], bool]) -> None:
        """Add values, waiting while the buffer is full. Drops them if nobody will read."""
        pos = 0
        while pos < len(values):
            if self.closed or dropping():
                return
            free = self.maxsize - len(self.items) - self.held
            if free <= 0:
                self.room_waiters += 1
                try:
                    self.room.wait()
                finally:
                    self.room_waiters -= 1
                continue
            part = values[pos : pos + free] if pos or free < len(values) else values
            pos += len(part)
            self.items.extend(part)
            if self.waiting:
                self.ready.notify()

    def open_locked(self, reader: threading.Thread) -> None:
        """``reader`` will read: values are kept for it again."""
        self.reader = reader
        self.closed = False

    def wait_locked(self) -> None:
        """The reader found nothing: sleep until a value, a failure or the end."""
        self.waiting = True
        try:
            self.ready.wait()
        finally:
            self.waiting = False

    def fail_locked(self, error: TaskError) -> None:
        # Not bounded by ``maxsize``: a failure replaces the value its task would have
        # produced, which the reader's own bound (shoal.map's buffer) already counted.
        if self.mark_failures and not self.closed:
            self.items.append(Failure(error))
            if self.waiting:
                self.ready.notify()

    def release_held_locked(self) -> None:
        if self.held:
            self.held = 0
            if self.room_waiters:
                self.room.notify_all()

    def take_locked(self) -> list[Any]:
        """Up to half the bound of waiting values (see :meth:`release_held_locked`)."""
        n = min(len(self.items), max(1, self.maxsize // 2))
        if n == len(self.items):
            taken = list(self.items)
            self.items.clear()
        else:
            taken = [self.items.popleft() for _ in range(n)]
        self.held = n
        if self.room_waiters:
            self.room.notify_all()
        return taken

    def wake_all_locked(self) -> None:
        self.ready.notify_all()
        self.room.notify_all()

    def close_locked(self) -> None:
        self.closed = True
        self.items.clear()
        self.held = 0
        self.wake_all_locked()
