"""Putting tasks into a Pool from outside it: waiting for room and putting in chunks.

Apart from ``_pool`` for size only (like ``_shutdown``); these run under the pool's
lock and touch its state directly. Only threads outside the pool come here: a worker's
puts never wait (see ``_pool``'s module notes).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._errors import QueueFull, UsageError

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["put_many_outside", "wait_for_room_locked"]


def put_many_outside(pool: Pool[Any], items: Iterable[Any], timeout: float | None) -> None:
    """Pool.put_many from outside the pool: the lock is taken once per chunk, not per item."""
    it = iter(items)
    chunk = list(itertools.islice(it, 4096))
    while chunk:
        with pool._lock:
            pool._check_open()
            pos = 0
            while pos < len(chunk):
                if pool._maxsize:
                    wait_for_room_locked(pool, timeout)
                    room = pool._maxsize - len(pool._queue)
                else:
                    room = len(chunk)
                part = chunk[pos : pos + room]
                pos += len(part)
                pool._queue.extend(part)
                pool._count_added_locked(len(part))
        chunk = list(itertools.islice(it, 4096))


def wait_for_room_locked(pool: Pool[Any], timeout: float | None) -> None:
    """Wait, holding ``pool._lock``, until the queue is below ``maxsize`` (QueueFull after
    ``timeout``; PoolClosed if the pool closes meanwhile)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while len(pool._queue) >= pool._maxsize:
        if pool._results is not None and pool._results.reader is threading.current_thread():
            # Workers may be waiting for this very thread to read their results.
            raise UsageError(
                f"pool {pool.name!r}: put() would wait for room in the thread that reads "
                "results(), which can deadlock; put from another thread, spawn with "
                "ctx.put(), or use maxsize=0"
            )
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise QueueFull(f"pool {pool.name!r}: {pool._maxsize} tasks already waiting")
        pool._room_waiters += 1
        try:
            pool._room.wait(remaining)
        finally:
            pool._room_waiters -= 1
        pool._check_open()
