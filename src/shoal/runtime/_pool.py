"""A pool of worker threads fed by one queue; tasks may spawn tasks.

All shared state lives behind one lock, ``_lock``, with three conditions on it:
workers wait on ``_work``, outside producers on ``_room``, joiners on ``_done``.
Every task is counted in ``_unfinished`` from put() until its outcome is recorded,
so join() over a tree of tasks is simply "wait until the count is zero": a parent's
children are counted before the parent itself is marked finished.

Design points, each for a reason:

* Handlers run with no lock held; a worker captures *every* outcome of the handler,
  BaseException included, and records it, so no outcome can be lost and join() can
  never hang on a task that raised.
* ``maxsize`` bounds the queue for producers outside the pool. A task spawned by a
  worker never blocks (a worker waiting for room that only workers can make is a
  deadlock); it goes to the *front* of the queue instead. Children therefore run
  before their parent's siblings, the tree is walked depth-first, and the number of
  waiting tasks stays below ~``depth x fan-out x (workers + _MAX_BATCH)`` however wide
  the tree: a claimed batch of siblings spawns all its children before any of them
  runs, so each level of the tree can leave up to a batch's worth of them waiting.
* No polling: idle workers sleep on a condition and are woken by put(), by close(),
  or when the earliest delayed task (a retry with backoff) falls due.

The pool is one class on purpose, however long: everything that touches its state is a
method of it. :class:`TaskContext`, the handle a handler gets, lives here too; it is a
worker's view of its own pool. What stands on its own is elsewhere: the result buffer
(``_results``), the failure log line (``_failures``), retry backoff (``_retry``), the
writer thread and the progress display.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

from .._errors import (
    JoinTimeout,
    PoolClosed,
    QueueFull,
    RetryLater,
    TaskError,
    TaskErrorGroup,
    UsageError,
)
from ._failures import log_failure
from ._progress import ProgressDisplay, ProgressState
from ._results import Failure, ResultBuffer
from ._retry import NO_RETRY, RetryPolicy
from ._types import ErrorPolicy, PoolStats, ShutdownReport
from ._writer import Writer

__all__ = ["Pool", "TaskContext"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A task faster than this (seconds) lets its worker claim more tasks per lock round trip.
_CHEAP_TASK = 50e-6
_MAX_BATCH = 64
_MAX_WAIT = 3600.0  # longest single sleep of an idle worker; it then looks again
# feed(): most items read per chunk, and the seconds per item under which input is fast.
_MAX_FEED_CHUNK = 256
_CHEAP_READ = 20e-6


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


class _Failed(NamedTuple):
    """A task that raised, as judged on its worker with no lock held: the first half of
    a failure. The worker hands it to :meth:`Pool._record_failure_locked`, the second."""

    error: TaskError  # .item, .attempts and the exception the task raised
    retry_in: float | None  # seconds until it runs again; None: it failed for good


class Pool(Generic[T]):
    """Worker threads that run ``handler(item, ctx)`` for every item put in.

    >>> def handle(item, ctx):
    ...     time.sleep(0.05)                      # I/O: the other workers run meanwhile
    ...     ctx.print(f"{ctx.worker} get {item}")
    >>> with Pool(handle, workers=5) as pool:     # doctest: +SKIP
    ...     pool.put_many("qwerty")
    ...     pool.join()

    A worker that finds many waiting tasks which each take microseconds claims several
    per lock round trip (and one worker may run them all): spreading 2 µs tasks over
    threads costs more than it saves. Tasks that block (I/O, sleeps) spread out.

    ``maxsize`` bounds the queue for outside producers (0: unbounded). ``errors`` is the
    :class:`ErrorPolicy`. ``retry`` sets the :class:`RetryPolicy` for failures listed in
    ``retry_on``; with ``retry`` and no ``retry_on`` every ``Exception`` is retried.
    ``RetryLater`` is always retried (``RetryPolicy()`` unless ``retry`` is given).

    With ``results=True`` the values handlers return (``None`` is not a value) or
    ``ctx.emit()`` are kept for :meth:`results`, at most ``buffer`` of them: a worker
    with a value for a full buffer waits until the reader takes some.

    Leaving the ``with`` block joins (on success), cancels (on error), and on
    KeyboardInterrupt stops intake, drops what is queued and gives in-flight tasks
    ``grace`` seconds to finish; a second Ctrl-C during that wait abandons them.
    """

    def __init__(
        self,
        handler: Callable[[T, TaskContext[T]], object],
        workers: int = 8,
        *,
        maxsize: int = 0,
        errors: ErrorPolicy | str = ErrorPolicy.FAIL_FAST,
        retry: RetryPolicy | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
        output: Writer | None = None,
        grace: float = 5.0,
        progress: bool = False,
        name: str = "shoal",
        results: bool = False,
        buffer: int = 1024,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0 (0 means unbounded)")
        self._handler = handler
        self._workers = workers
        self._maxsize = maxsize
        self._policy = ErrorPolicy(errors)
        if retry_on is None:
            # A retry policy with nothing to retry would be silently inert: retry errors.
            retry_on = (Exception,) if retry is not None and retry.attempts > 1 else ()
        self._retry = retry if retry is not None else (RetryPolicy() if retry_on else NO_RETRY)
        self._retry_on = retry_on
        self._own_output = output is None
        self._output = output
        self.grace = grace
        self.name = name
        self.downstream: Callable[[Any], None] | None = None  # set by Pipeline

        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._queue: deque[Any] = deque()  # items on their first attempt
        self._again: deque[tuple[Any, int]] = deque()  # (item, attempt) retries now due
        self._delayed: list[tuple[float, int, Any, int]] = []  # heap (due, seq, item, attempt)
        self._seq = itertools.count()
        self._unfinished = 0
        self._in_flight = 0
        self._idle_workers = 0
        self._room_waiters = 0
        self._done_count = 0
        self._failed = 0
        self._retried = 0
        self._cancelled = 0
        self._submitted = 0
        self._peak = 0
        self._closing = False  # no more intake; workers leave once nothing is left
        self._stopped = False  # workers leave now, whatever is queued
        self._cancelling = False  # cancel() was called: drop spawns and retries too
        self._failure: TaskError | None = None  # fail-fast: the first failure
        # Raised to a caller once (by results(), join() or the with block), then handled:
        # a caller who caught it must not get it again when the with block joins.
        self._failure_raised = False
        self._collected: list[TaskError] = []
        # shoal.map logs and collects failures itself, naming the item, not its pair.
        self._results_report_failures = True
        self._feeders: list[threading.Thread] = []
        self._feed_error: BaseException | None = None  # raised by the input of feed()
        self._cancelled_items: list[Any] = []
        self._results = ResultBuffer(self._lock, buffer) if results else None
        self._hold_next: Pool[Any] | None = None  # Pipeline: held busy while this one is
        self._holding = False
        self._started = time.monotonic()
        self._local = threading.local()
        self._threads = [
            threading.Thread(target=self._worker, args=(i,), name=f"{name}-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()
        self._progress = ProgressDisplay(self._progress_state, description=name)
        if progress:
            self._progress.start()

    def _progress_state(self) -> ProgressState:
        s = self.stats()
        return ProgressState(done=s.finished, total=s.submitted - s.cancelled, failed=s.failed)

    # -- output -------------------------------------------------------------------------

    @property
    def output(self) -> Writer:
        """The writer thread that owns this pool's output (stdout unless given)."""
        out = self._output
        if out is None:
            with self._lock:
                if self._output is None:
                    self._output = Writer(name=f"{self.name}-writer")
                out = self._output
        return out

    def print(self, *args: object, sep: str = " ", end: str = "\n") -> None:
        """Print a line through the writer thread, in order with the workers' lines."""
        self.output.print(*args, sep=sep, end=end)

    # -- intake -------------------------------------------------------------------------

    def put(self, item: T, *, delay: float | None = None, timeout: float | None = None) -> None:
        """Queue one task. Blocks while ``maxsize`` tasks wait (QueueFull after ``timeout``).

        Called from one of this pool's workers it never blocks: see the module notes.
        ``delay`` runs the task no sooner than that many seconds from now.
        """
        if getattr(self._local, "inside", False):
            self._put_inside(item, delay)
            return
        with self._lock:
            self._check_open()
            if self._maxsize and delay is None:
                self._wait_for_room_locked(timeout)
            self._add_locked(item, delay, front=False)

    def put_many(self, items: Iterable[T], *, timeout: float | None = None) -> None:
        """Queue many tasks, taking the lock once per chunk rather than once per item."""
        if getattr(self._local, "inside", False):
            for item in items:
                self._put_inside(item, None)
            return
        # From outside the pool: the lock is taken once per chunk, not once per item.
        it = iter(items)
        chunk = list(itertools.islice(it, 4096))
        while chunk:
            with self._lock:
                self._check_open()
                pos = 0
                while pos < len(chunk):
                    if self._maxsize:
                        self._wait_for_room_locked(timeout)
                        room = self._maxsize - len(self._queue)
                    else:
                        room = len(chunk)
                    part = chunk[pos : pos + room]
                    pos += len(part)
                    self._add_many_locked(part)
            chunk = list(itertools.islice(it, 4096))

    def feed(self, items: Iterable[T]) -> None:
        """Put ``items`` from a thread of their own and return at once.

        For a pool read with :meth:`results`: this thread reads while the feed waits for
        room in the queue (``maxsize``). join() and results() wait until the feed has put
        its last item; an exception raised by ``items`` is raised by join() (or at the end
        of results()). Closing or cancelling the pool stops the feed.
        """
        # Why a thread: the thread that reads results() must not also be the one that
        # waits for room in a bounded queue (the workers may be waiting for it to read).
        # The feed counts as one unfinished task while it runs, so join() and results()
        # do not end before the last item is in.
        source = iter(items)  # a non-iterable fails here, in the caller
        self._hold()
        thread = threading.Thread(
            target=self._run_feed, args=(source,), name=f"{self.name}-feed", daemon=True
        )
        try:
            thread.start()
        except BaseException:
            self._release()
            raise
        self._feeders.append(thread)

    def _run_feed(self, source: Iterator[T]) -> None:
        chunk_size = 1
        try:
            while True:
                chunk: list[T] = []
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
                    self.put_many(chunk)  # waits for room; PoolClosed once closed
                if error is not None:
                    if not isinstance(error, StopIteration):
                        with self._lock:
                            self._feed_error = error
                    return
                # Grow while the input is fast; hand a slow input over item by item.
                chunk_size = min(chunk_size * 2, _MAX_FEED_CHUNK) if fast else 1
        except PoolClosed:
            pass  # closed, cancelled or failed: the rest of the input is not wanted
        finally:
            self._release()

    def _put_inside(self, item: Any, delay: float | None) -> None:
        with self._lock:
            if self._dropping:
                # A cancelled or failed pool drops what its running tasks spawn.
                self._cancelled += 1
                self._cancelled_items.append(item)
                return
            self._add_locked(item, delay, front=True)

    def _emit(self, value: Any) -> None:
        buf = self._results
        if buf is not None:
            with self._lock:
                buf.put_locked([value], lambda: self._dropping)
        elif self.downstream is not None:
            self.downstream(value)
        else:
            raise RuntimeError("emit() needs a pool made with results=True or a next stage")

    def _hold(self) -> None:
        """Count one pseudo-task so join() and results() wait until :meth:`_release`:
        shoal.map while it reads input, a pipeline stage while the one before it works."""
        with self._lock:
            self._busy_locked()
            self._unfinished += 1

    def _release(self) -> None:
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        self._unfinished -= 1
        if not self._unfinished:
            self._all_finished_locked()

    def _busy_locked(self) -> None:
        # Called before _unfinished grows. Lock order is always stage i, then i+1.
        if not self._unfinished and self._hold_next is not None and not self._holding:
            self._holding = True
            self._hold_next._hold()

    @property
    def _dropping(self) -> bool:
        return self._stopped or self._cancelling or self._failure is not None

    def _check_open(self) -> None:
        if self._closing or self._stopped:
            raise PoolClosed(f"pool {self.name!r} is closed")
        if self._failure is not None:
            raise PoolClosed(f"pool {self.name!r} was cancelled by a failure") from self._failure

    def _wait_for_room_locked(self, timeout: float | None) -> None:
        """Wait until the queue is below ``maxsize`` (QueueFull after ``timeout``;
        PoolClosed if the pool closes meanwhile). Only threads outside the pool come
        here: a worker's puts never wait (see the module notes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._queue) >= self._maxsize:
            if self._results is not None and self._results.reader is threading.current_thread():
                # Workers may be waiting for this very thread to read their results.
                raise UsageError(
                    f"pool {self.name!r}: put() would wait for room in the thread that reads "
                    "results(), which can deadlock; put from another thread, spawn with "
                    "ctx.put(), or use maxsize=0"
                )
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise QueueFull(f"pool {self.name!r}: {self._maxsize} tasks already waiting")
            self._room_waiters += 1
            try:
                self._room.wait(remaining)
            finally:
                self._room_waiters -= 1
            self._check_open()

    def _add_locked(self, item: Any, delay: float | None, *, front: bool) -> None:
        if delay is not None and delay > 0:
            due = time.monotonic() + delay
            first = not self._delayed or due < self._delayed[0][0]
            heapq.heappush(self._delayed, (due, next(self._seq), item, 1))
            self._busy_locked()
            self._unfinished += 1
            self._submitted += 1
            if first:
                # Idle workers sleep until the old earliest deadline; make one recompute.
                self._work.notify()
            return
        if front:
            self._queue.appendleft(item)
        else:
            self._queue.append(item)
        self._count_added_locked(1)

    def _add_many_locked(self, items: list[Any]) -> None:
        """Queue items at the back, room or not (the caller has checked for room)."""
        self._queue.extend(items)
        self._count_added_locked(len(items))

    def _count_added_locked(self, n: int) -> None:
        self._busy_locked()
        self._unfinished += n
        self._submitted += n
        queued = len(self._queue)
        self._peak = max(self._peak, queued)
        if self._idle_workers:
            self._work.notify(n)

    # -- workers ------------------------------------------------------------------------

    def _worker(self, index: int) -> None:
        self._local.inside = True
        ctx: TaskContext[T] = TaskContext(self, index)
        handler = self._handler
        lock = self._lock
        queue = self._queue
        workers = self._workers
        clock = time.perf_counter
        batch: list[Any] = []
        attempt = 1
        ran = 0  # tasks of the batch that returned normally
        failed: _Failed | None = None  # the task that raised, batch[ran]
        buf = self._results
        out: list[Any] | None = None if buf is None else []  # values for results()
        # How many queued tasks to claim per lock round trip. It doubles while tasks are
        # cheap and drops to one as soon as they are not: a claimed batch runs on one
        # thread, which costs nothing for 2 us tasks and would starve others of 2 s ones.
        limit = 1
        while True:
            with lock:
                if batch:
                    if out:
                        assert buf is not None
                        buf.put_locked(out, lambda: self._dropping)
                        out.clear()
                    self._finish_batch_locked(batch, ran, failed)
                # Take the next work: retries that fell due first, then the queue.
                while True:
                    if self._stopped:
                        return
                    if self._again:
                        item, attempt = self._again.popleft()
                        batch = [item]
                        break
                    if queue:
                        n = min(limit, len(queue) // workers)
                        batch = [queue.popleft() for _ in range(n)] if n > 1 else [queue.popleft()]
                        attempt = 1
                        if self._room_waiters:
                            self._room.notify(len(batch))
                        break
                    timeout = None
                    if self._delayed:
                        # Clamped: Condition.wait() rejects timeouts over TIMEOUT_MAX.
                        timeout = min(self._delayed[0][0] - time.monotonic(), _MAX_WAIT)
                        if timeout <= 0:
                            _, _, d_item, d_attempt = heapq.heappop(self._delayed)
                            self._again.append((d_item, d_attempt))
                            continue
                    elif self._closing and not self._unfinished:
                        # Not merely "queue empty": a task still in flight may spawn more.
                        return
                    self._idle_workers += 1
                    self._work.wait(timeout)
                    self._idle_workers -= 1
                self._in_flight += len(batch)
            ctx.attempt = attempt
            ran = 0
            failed = None
            started = clock()
            try:
                if out is None:
                    for item in batch:
                        ctx.item = item
                        handler(item, ctx)
                        ran += 1
                else:
                    keep_none = buf is not None and buf.keep_none
                    for item in batch:
                        ctx.item = item
                        value = handler(item, ctx)
                        if value is not None or keep_none:
                            out.append(value)
                        ran += 1
            except BaseException as exc:  # noqa: BLE001 - every outcome is recorded
                failed = self._judge_failure(batch[ran], attempt, exc)
            if failed is None and (clock() - started) < _CHEAP_TASK * len(batch):
                limit = min(limit * 2, _MAX_BATCH)
            else:
                limit = 1

    def _finish_batch_locked(self, batch: list[Any], ran: int, failed: _Failed | None) -> None:
        self._in_flight -= len(batch)
        if self._cancelling and not self._in_flight:
            self._done.notify_all()  # shutdown() waits for in-flight tasks only
        self._done_count += ran
        self._unfinished -= ran
        if failed is not None:
            rest = batch[ran + 1 :]
            if rest and self._dropping:
                self._unfinished -= len(rest)  # claimed after cancel(): cancelled, not run
                self._cancelled += len(rest)
                self._cancelled_items.extend(rest)
            elif rest:
                # Tasks claimed behind the failed one never ran: hand them back first, so
                # that a fail-fast policy cancels them along with the rest of the queue.
                self._queue.extendleft(reversed(rest))
                if self._idle_workers:
                    self._work.notify(len(rest))
            self._record_failure_locked(failed)
        if not self._unfinished:
            self._all_finished_locked()

    # A failure is handled in two halves. _judge_failure runs on the worker with no lock
    # held (it may log, which runs logging handlers, and draws the random backoff);
    # _record_failure_locked then updates the books under the lock with what it decided.

    def _judge_failure(self, item: Any, attempt: int, exc: BaseException) -> _Failed:
        # Built here, not under the lock: its message calls repr() on the item (user code).
        # Also when a retry is planned: a cancel() before it is recorded makes it final.
        error = TaskError(item, exc, attempt)
        retryable = isinstance(exc, RetryLater) or bool(
            self._retry_on and isinstance(exc, self._retry_on)
        )
        if retryable and attempt < self._retry.attempts:
            requested = exc.after if isinstance(exc, RetryLater) else None
            return _Failed(error, self._retry.delay(attempt, requested))
        if self._policy is ErrorPolicy.LOG and self._results_report_failures:
            log_failure(item, attempt, exc)
        return _Failed(error, None)

    def _record_failure_locked(self, failed: _Failed) -> None:
        error = failed.error
        if failed.retry_in is not None and not self._dropping:
            self._retried += 1
            due = time.monotonic() + failed.retry_in
            first = not self._delayed or due < self._delayed[0][0]
            heapq.heappush(self._delayed, (due, next(self._seq), error.item, error.attempts + 1))
            if first:
                self._work.notify()
            return  # still unfinished: the retry carries the count
        self._failed += 1
        self._unfinished -= 1
        if self._results is not None:
            self._results.fail_locked(error)
        if self._policy is ErrorPolicy.FAIL_FAST:
            if self._failure is None:
                self._failure = error
                self._drop_queued_locked()
                if self._results is not None:
                    self._results.wake_all_locked()  # the reader raises it now
        elif self._policy is ErrorPolicy.COLLECT and self._results_report_failures:
            self._collected.append(error)

    def _all_finished_locked(self) -> None:
        self._done.notify_all()
        if self._results is not None:
            self._results.ready.notify_all()
        if self._closing:
            self._work.notify_all()  # idle workers may now leave
        if self._holding and self._hold_next is not None:
            self._holding = False
            self._hold_next._release()

    def _drop_queued_locked(self) -> None:
        dropped: list[Any] = list(self._queue)
        dropped.extend(item for item, _ in self._again)
        dropped.extend(entry[2] for entry in self._delayed)
        self._queue.clear()
        self._again.clear()
        self._delayed.clear()
        self._cancelled += len(dropped)
        self._cancelled_items.extend(dropped)
        self._unfinished -= len(dropped)
        self._room.notify_all()
        if not self._unfinished:
            self._all_finished_locked()

    # -- waiting and stopping -----------------------------------------------------------

    def join(self, timeout: float | None = None) -> None:
        """Wait until every task, spawned ones included, has finished.

        Raises the first TaskError (fail-fast), a TaskErrorGroup (collect), or
        JoinTimeout if ``timeout`` seconds pass first. Safe to call from any thread but a
        worker of this pool. A failure is raised once: after results() or an earlier
        join() raised it, join() (and leaving the ``with`` block) returns quietly.
        """
        if getattr(self._local, "inside", False):
            raise RuntimeError("join() from a worker of the same pool would wait for itself")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._unfinished:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise JoinTimeout(f"{self._unfinished} task(s) still unfinished")
                self._done.wait(remaining)
            self._raise_outcome_locked()

    def _take_failure(self) -> TaskError | None:
        """The fail-fast failure for a caller to raise, if no caller has raised it yet."""
        with self._lock:
            return self._take_failure_locked()

    def _take_failure_locked(self) -> TaskError | None:
        if self._failure is None or self._failure_raised:
            return None
        self._failure_raised = True
        return self._failure

    def _raise_outcome_locked(self) -> None:
        # Each outcome is raised once, to the first caller that waits for it: a failure
        # the caller has caught is handled, and leaving the with block must not repeat it.
        failure = self._take_failure_locked()
        if failure is not None:
            raise failure
        if self._feed_error is not None:
            error, self._feed_error = self._feed_error, None
            raise error
        if self._collected:
            errors, self._collected = self._collected, []
            raise TaskErrorGroup(f"{len(errors)} task(s) failed", errors)

    def results(self) -> Iterator[Any]:
        """Iterate over the values handlers return or emit, as they come (needs ``results=True``).

        Usable while tasks run and spawn tasks; it ends when :meth:`join` would return
        and raises what join() would raise, except that a fail-fast failure is raised
        as soon as it is known. Leaving the loop early (``break``, an exception, closing
        the iterator) cancels the pool: queued tasks are dropped, running ones finish
        and their values are dropped.

        At most ``buffer`` values wait; workers with more wait for this reader. So the
        reading thread must not also wait for queue room: hand the input to
        :meth:`feed`, or put it all in first with ``maxsize=0`` (the default). A bounded
        put() that would wait in the reading thread raises UsageError instead of
        deadlocking. One reader at a time.
        """
        buf = self._results
        if buf is None:
            raise UsageError("results() needs a pool made with results=True")
        with self._lock:
            if buf.reader is not None:
                raise UsageError("results() is already being read by another loop")
            buf.open_locked(threading.current_thread())
        return self._read_results(buf)

    def _read_results(self, buf: ResultBuffer) -> Iterator[Any]:
        """The generator behind results(); the caller's thread is the buffer's reader."""
        ended = False
        try:
            while True:
                with self._lock:
                    values = self._next_results_locked(buf)
                    if not values:
                        ended = True
                        self._raise_outcome_locked()
                        return
                for value in values:  # handed out with no lock held
                    if type(value) is not Failure:
                        yield value
        finally:
            with self._lock:
                buf.reader = None
            if not ended:
                self.cancel()
                with self._lock:
                    buf.close_locked()

    def _next_results_locked(self, buf: ResultBuffer) -> list[Any]:
        """The next values for the reader of ``buf`` (this pool's results), waiting for
        some; [] once the pool is idle. Also shoal.map's reader.

        A fail-fast failure is raised as soon as it is recorded, values still waiting or not.
        """
        buf.release_held_locked()  # the reader is back: its earlier share is handed out
        while True:
            if self._failure is not None:
                failure = self._take_failure_locked()
                if failure is None:
                    return []  # raised to a caller already: the pool is stopped, nothing to add
                raise failure
            if buf.items:
                return buf.take_locked()
            if not self._unfinished or self._stopped:
                return []
            buf.wait_locked()

    def cancel(self) -> list[Any]:
        """Stop intake and drop every queued task; in-flight tasks run on. Returns the dropped."""
        with self._lock:
            self._closing = True
            self._cancelling = True
            before = len(self._cancelled_items)
            self._drop_queued_locked()
            self._work.notify_all()
            if self._results is not None:
                self._results.wake_all_locked()  # running tasks' values are dropped
            return self._cancelled_items[before:]

    def close(self, timeout: float | None = None) -> None:
        """Stop intake, let queued and in-flight tasks finish, stop the workers.

        Idempotent. Raises JoinTimeout if the workers are still busy after ``timeout``.
        """
        with self._lock:
            self._closing = True
            self._work.notify_all()
            self._room.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            if t is threading.current_thread():
                continue
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                raise JoinTimeout(f"pool {self.name!r}: workers still busy after {timeout}s")
        for t in self._feeders:  # done once the workers are: they waited for the feeds
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._progress.stop()
        if self._own_output and self._output is not None:
            self._output.close()

    def shutdown(self, grace: float | None = None, *, log: bool = True) -> ShutdownReport:
        """Stop now: drop what is queued, give in-flight tasks ``grace`` seconds, report.

        A KeyboardInterrupt while waiting (the second Ctrl-C) abandons the in-flight
        tasks at once; the report says so and the interrupt propagates. ``log=False``:
        no warning of what was left undone (the caller tells its user in its own terms).
        """
        grace = self.grace if grace is None else grace
        cancelled: list[Any] = []
        abandoned = False
        try:
            cancelled = self.cancel()
            deadline = time.monotonic() + grace
            with self._lock:
                while self._in_flight:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        abandoned = True
                        break
                    self._done.wait(remaining)
                unfinished = self._in_flight
        except KeyboardInterrupt:
            # The second Ctrl-C: leave in-flight tasks to die with the process.
            self._stop_now()
            if log:
                self._log_shutdown(ShutdownReport(cancelled, self.stats().in_flight, True))
            raise
        self._stop_now()
        report = ShutdownReport(cancelled, unfinished, abandoned)
        if log:
            self._log_shutdown(report)
        return report

    def _log_shutdown(self, report: ShutdownReport) -> None:
        logger.warning(
            "pool %r stopped: %d queued task(s) cancelled, %d in flight %s",
            self.name,
            len(report.cancelled),
            report.unfinished,
            "abandoned" if report.abandoned else "finished",
        )

    def _stop_now(self) -> None:
        with self._lock:
            self._stopped = True
            self._closing = True
            self._work.notify_all()
            self._room.notify_all()
            self._done.notify_all()
            if self._results is not None:
                self._results.wake_all_locked()
            if self._holding and self._hold_next is not None:
                self._holding = False  # a stopped stage sends nothing the next must wait for
                self._hold_next._release()
        self._progress.stop()
        if self._own_output and self._output is not None:
            try:
                self._output.close(timeout=1.0)
            except Exception:
                logger.debug("writer close failed during shutdown", exc_info=True)

    def stats(self) -> PoolStats:
        """A consistent snapshot of the counters: queued, in flight, done, failed,
        retried, cancelled, submitted, peak queue, workers, elapsed (and ``rate``)."""
        with self._lock:
            return PoolStats(
                queued=len(self._queue) + len(self._again) + len(self._delayed),
                in_flight=self._in_flight,
                done=self._done_count,
                failed=self._failed,
                retried=self._retried,
                cancelled=self._cancelled,
                submitted=self._submitted,
                peak_queued=self._peak,
                workers=self._workers,
                elapsed=time.monotonic() - self._started,
            )

    @property
    def cancelled_items(self) -> list[Any]:
        """Every item dropped so far by cancel(), a fail-fast failure or shutdown()."""
        with self._lock:
            return list(self._cancelled_items)

    def __enter__(self) -> Pool[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc_type is None:
            try:
                self.join()
            finally:
                self.close()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.shutdown()
        else:
            self.cancel()
            self.close()

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"<Pool {self.name!r} workers={s.workers} queued={s.queued} "
            f"in_flight={s.in_flight} done={s.done} failed={s.failed}>"
        )
