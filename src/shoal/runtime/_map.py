"""``shoal.map``: fn over an iterable on worker threads, lazily, with bounded memory.

Three kinds of threads take part: one *feeder* reads the input, the pool's workers run
``fn``, and the caller's thread (the *reader*) hands results out. They share the pool's
lock. The one bound that matters is on items *taken from the input and not yet handed
out* (``buffer``): the feeder waits while that many are outstanding, so a slow reader or
a slow item at the head of an ordered map holds the input back instead of piling up
results (``ThreadPoolExecutor.map`` submits the whole input up front). Because nothing
else is bounded, nothing else can block: the workers' result buffer is as large as the
bound, so a worker never waits for the reader, and the reader never waits for the
feeder. There is no cycle to deadlock on.

The feeder reads the input with no lock held (the input is user code), in chunks that
grow while items come fast and fall back to one as soon as one is slow, so a trickling
input is handed to workers item by item and a list costs one lock round trip per chunk.
The reader reports what it handed out when it comes back for more, not once per item.

Leaving early (``close()``, ``with``, ``break`` once the iterator is garbage, Ctrl-C)
stops the feeder, drops queued items, lets in-flight items finish for up to ``grace``
seconds and joins every thread it started: only a thread stuck in user code past the
grace (an ``fn`` or an input that never returns) is left behind, with a warning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, NoReturn, TypeVar

from .._errors import JoinTimeout, TaskError, TaskErrorGroup
from ._failures import log_failure
from ._pool import Pool, TaskContext
from ._results import Failure, ResultBuffer
from ._retry import RetryPolicy
from ._types import ErrorPolicy

__all__ = ["MapIterator", "map"]

logger = logging.getLogger(__name__)

R = TypeVar("R")

# The default ``buffer``: large enough that cheap items move in batches (per-item cost
# roughly halves from 256 to 1024 in bench/runtime.py), small enough to bound memory, and
# never fewer than 4 items per worker.
DEFAULT_BUFFER = 1024
_MAX_CHUNK = 256  # most input items the feeder hands over per lock round trip
_CHEAP_READ = 20e-6  # seconds per item under which the input counts as fast


def map(
    fn: Callable[[Any], R],
    iterable: Iterable[Any],
    *,
    workers: int = 8,
    ordered: bool = True,
    buffer: int | None = None,
    errors: ErrorPolicy | str = ErrorPolicy.FAIL_FAST,
    retry: RetryPolicy | None = None,
    retry_on: tuple[type[BaseException], ...] | None = None,
    grace: float = 5.0,
    name: str = "shoal-map",
) -> MapIterator[R]:
    """Run ``fn(item)`` for every item on ``workers`` threads; iterate over the results.

    >>> for size in shoal.map(len, ["a", "bb", "ccc"], workers=2):   # doctest: +SKIP
    ...     print(size)

    ``ordered=True`` yields results in input order, ``ordered=False`` as they finish.
    The input is read lazily (an infinite generator is fine) and at most ``buffer``
    items (default 1024, or ``4 * workers`` if more) are taken from it and not yet
    yielded: a slow consumer, or in ordered mode one slow item at the head, holds the
    input back. Lower it when items or results are big, raise it for very cheap items.

    ``errors``: ``"fail_fast"`` raises :class:`TaskError` (``.item`` is the input item)
    as soon as a failure is known and stops the rest; ``"collect"`` yields the successes
    and raises one :class:`TaskErrorGroup` at the end; ``"log"`` logs and skips failed
    items. ``retry``/``retry_on`` retry as in :class:`Pool` (``RetryLater`` always;
    with ``retry`` and no ``retry_on``, any ``Exception``). An exception raised by the
    input itself comes out after the results of the items before it.

    Leaving early cancels what is queued and waits up to ``grace`` seconds for items in
    flight. Use ``with shoal.map(...) as results:`` (or call ``close()``) to make that
    happen at once; a plain ``break`` does it when the iterator is garbage-collected,
    which in CPython is immediately unless you keep a reference to it.
    """
    return MapIterator(
        fn,
        iterable,
        workers=workers,
        ordered=ordered,
        buffer=max(DEFAULT_BUFFER, 4 * workers) if buffer is None else buffer,
        errors=errors,
        retry=retry,
        retry_on=retry_on,
        grace=grace,
        name=name,
    )


class _Feed:
    """What the feeder thread and the reader share (never the iterator object itself, so
    that dropping the iterator lets it be collected and closed)."""

    def __init__(self, pool: Pool[Any], source: Iterator[Any], buffer: int, ordered: bool) -> None:
        self.pool = pool
        self.source = source
        self.buffer = buffer
        self.ordered = ordered
        self.room = threading.Condition(pool._lock)
        self.taken = 0  # items read from the input
        self.released = 0  # items handed out or skipped, as reported by the reader
        self.waiting = False
        self.stop = False
        self.holding = True  # the pool counts the input as one unfinished task
        self.input_error: BaseException | None = None

    def release_locked(self) -> None:
        """The input will add nothing more: let the pool become idle. Idempotent, so
        close() need not wait for a feeder stuck in a slow input."""
        if self.holding:
            self.holding = False
            self.pool._release_locked()

    def run(self) -> None:
        pool, source = self.pool, self.source
        chunk_size = 1
        try:
            while True:
                with pool._lock:
                    while not self.stop and self.taken - self.released >= self.buffer:
                        self.waiting = True
                        try:
                            self.room.wait()
                        finally:
                            self.waiting = False
                    if self.stop or pool._dropping:
                        return
                    want = min(chunk_size, self.buffer - (self.taken - self.released))
                    first = self.taken
                chunk: list[Any] = []
                exhausted = False
                error: BaseException | None = None
                started = time.perf_counter()
                try:  # user code: no lock held
                    for _ in range(want):
                        chunk.append(next(source))
                except StopIteration:
                    exhausted = True
                except BaseException as exc:  # noqa: BLE001 - handed to the reader
                    error = exc
                    exhausted = True
                fast = time.perf_counter() - started < _CHEAP_READ * want
                if self.ordered:
                    chunk = list(zip(range(first, first + len(chunk)), chunk, strict=True))
                with pool._lock:
                    self.input_error = error
                    if self.stop or pool._dropping:
                        return
                    if chunk:
                        pool._add_many_locked(chunk)
                        self.taken += len(chunk)
                if exhausted:
                    return
                chunk_size = min(chunk_size * 2, _MAX_CHUNK) if fast else 1
        finally:
            with pool._lock:
                self.release_locked()


class MapIterator(Generic[R]):
    """The iterator :func:`map` returns; also a context manager that closes it."""

    def __init__(
        self,
        fn: Callable[[Any], R],
        iterable: Iterable[Any],
        *,
        workers: int,
        ordered: bool,
        buffer: int,
        errors: ErrorPolicy | str,
        retry: RetryPolicy | None,
        retry_on: tuple[type[BaseException], ...] | None,
        grace: float,
        name: str,
    ) -> None:
        if buffer < 1:
            raise ValueError("buffer must be >= 1")
        self._closed = True  # until everything below exists: __del__ must not close
        source = iter(iterable)  # a non-iterable fails here, in the caller
        self._ordered = ordered
        self._grace = grace
        self._ready: deque[Any] = deque()  # results ready to hand out, in order
        self._pending: dict[int, Any] = {}  # ordered mode: results ahead of their turn
        self._next_index = 0
        self._unreported = 0  # handed out or skipped since the feeder last heard
        self._errors: list[TaskError] = []  # collect policy
        if ordered:

            def task(pair: tuple[int, Any], ctx: TaskContext[Any]) -> tuple[int, R]:
                return pair[0], fn(pair[1])

            self._pool: Pool[Any] = Pool(
                task, workers, errors=errors, retry=retry, retry_on=retry_on, grace=grace,
                name=name, results=True, buffer=buffer,
            )  # fmt: skip
        else:

            def bare(item: Any, ctx: TaskContext[Any]) -> R:
                return fn(item)

            self._pool = Pool(
                bare, workers, errors=errors, retry=retry, retry_on=retry_on, grace=grace,
                name=name, results=True, buffer=buffer,
            )  # fmt: skip
        buf = self._pool._results
        assert buf is not None
        self._buf: ResultBuffer = buf
        buf.keep_none = True
        buf.mark_failures = True
        self._pool._results_report_failures = False
        self._feed = _Feed(self._pool, source, buffer, ordered)
        self._pool._hold()  # released by the feeder when the input ends or it is stopped
        self._feeder = threading.Thread(target=self._feed.run, name=f"{name}-feeder", daemon=True)
        try:
            self._feeder.start()
        except BaseException:
            self._pool._release()
            self._pool.shutdown(0)
            raise
        self._closed = False

    def __iter__(self) -> MapIterator[R]:
        return self

    def __next__(self) -> R:
        if self._ready:
            self._unreported += 1
            value: R = self._ready.popleft()
            return value
        return self._refill()

    def _refill(self) -> R:
        pool, feed = self._pool, self._feed
        while not self._ready:
            if self._closed:
                raise StopIteration
            try:
                with pool._lock:
                    feed.released += self._unreported
                    self._unreported = 0
                    if feed.waiting:
                        feed.room.notify()
                    values = pool._next_results_locked(self._buf)
            except TaskError as err:
                self.close()
                raise self._own(err) from err.__cause__
            if not values:
                self._finish()
            if self._ordered:
                self._sort_in(values)
            else:
                for value in values:
                    if type(value) is Failure:
                        self._failed(value.error)
                    else:
                        self._ready.append(value)
        self._unreported += 1
        result: R = self._ready.popleft()
        return result

    def _sort_in(self, values: list[Any]) -> None:
        pending, ready = self._pending, self._ready
        for entry in values:
            if type(entry) is Failure:
                self._failed(entry.error)
                pending[entry.error.item[0]] = Failure
            else:
                pending[entry[0]] = entry[1]
        nxt = self._next_index
        while nxt in pending:
            value = pending.pop(nxt)
            nxt += 1
            if value is Failure:
                self._unreported += 1  # its slot is free: count it as handed out
            else:
                ready.append(value)
        self._next_index = nxt

    def _failed(self, error: TaskError) -> None:
        """A failure marker reached the reader (no lock held: logging runs user code)."""
        if not self._ordered:
            self._unreported += 1
        policy = self._pool._policy
        if policy is ErrorPolicy.COLLECT:
            self._errors.append(self._own(error))
        elif policy is ErrorPolicy.LOG:
            err = self._own(error)
            log_failure(err.item, err.attempts, err.error)

    def _own(self, err: TaskError) -> TaskError:
        """The pool's error names the (index, item) pair in ordered mode: name the item."""
        if not self._ordered:
            return err
        return TaskError(err.item[1], err.error, err.attempts)

    def _finish(self) -> NoReturn:
        """The input is done and every item is out: close, then say how it ended."""
        self.close()
        if self._feed.input_error is not None:
            raise self._feed.input_error
        if self._errors:
            errors, self._errors = self._errors, []
            raise TaskErrorGroup(f"{len(errors)} task(s) failed", errors)
        raise StopIteration

    def close(self) -> None:
        """Stop: no more input is read, queued items are dropped, items in flight get
        ``grace`` seconds to finish, and the feeder and workers are joined. Idempotent."""
        if self._closed:
            return
        self._closed = True
        pool, feed = self._pool, self._feed
        with pool._lock:
            feed.stop = True
            feed.room.notify_all()
            feed.release_locked()
        pool.cancel()
        with pool._lock:
            self._buf.close_locked()
        self._ready.clear()
        self._pending.clear()
        deadline = time.monotonic() + self._grace
        try:
            pool.close(timeout=self._grace)
        except JoinTimeout:
            logger.warning(
                "%s: items still running after %.1fs are abandoned", pool.name, self._grace
            )
            pool._stop_now()
        except BaseException:  # a second Ctrl-C: leave now
            pool._stop_now()
            raise
        if self._feeder is not threading.current_thread():
            self._feeder.join(max(0.0, deadline - time.monotonic()))
        if self._feeder.is_alive():
            logger.warning("%s: the input iterator did not return; its thread is left", pool.name)

    def __enter__(self) -> MapIterator[R]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        try:
            me = threading.current_thread()
            if me is self._feeder or me in self._pool._threads:
                # A garbage collection inside one of our own threads, which may hold the
                # pool's lock right now: close from a thread of its own, never wait here.
                threading.Thread(target=self.close, name="shoal-map-closer", daemon=True).start()
                return
            self.close()
        except BaseException:  # nowhere to raise from a finalizer
            logger.debug("closing a shoal.map iterator failed", exc_info=True)
