"""Pool.feed(): put an iterable's items from a thread of its own.

Why: with ``results=True`` the thread that reads results() must not also be the one that
waits for room in a bounded queue (the workers may be waiting for it to read). A feed
thread does the waiting instead, and counts as one unfinished task of the pool while it
runs, so join() and results() do not end before the last item is in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._errors import PoolClosed

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["start_feed"]

_MAX_CHUNK = 256
_CHEAP_READ = 20e-6  # seconds per item under which the input counts as fast


def start_feed(pool: Pool[Any], items: Iterable[Any]) -> threading.Thread:
    source = iter(items)  # a non-iterable fails here, in the caller
    pool._hold()

    def run() -> None:
        chunk_size = 1
        try:
            while True:
                chunk: list[Any] = []
                error: BaseException | None = None
                started = time.perf_counter()
                try:  # user code, no lock held; items read before an error still go in
                    for _ in range(chunk_size):
                        chunk.append(next(source))
                except StopIteration:
                    error = StopIteration()
                except BaseException as exc:  # noqa: BLE001 - join() raises it
                    error = exc
                fast = time.perf_counter() - started < _CHEAP_READ * chunk_size
                if chunk:
                    pool.put_many(chunk)  # waits for room; PoolClosed once closed
                if error is not None:
                    if not isinstance(error, StopIteration):
                        with pool._lock:
                            pool._feed_error = error
                    return
                # Grow while the input is fast; hand a slow input over item by item.
                chunk_size = min(chunk_size * 2, _MAX_CHUNK) if fast else 1
        except PoolClosed:
            pass  # closed, cancelled or failed: the rest of the input is not wanted
        finally:
            pool._release()

    thread = threading.Thread(target=run, name=f"{pool.name}-feed", daemon=True)
    try:
        thread.start()
    except BaseException:
        pool._release()
        raise
    return thread
