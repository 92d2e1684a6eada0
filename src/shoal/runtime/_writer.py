"""One thread owns an output; every other thread hands it lines and records.

The seed program's print queue, done so that it can be relied on: a bounded queue
(producers block instead of growing memory without limit), batched writes (one
``stream.write`` per batch, not per line), a flush whenever the writer catches up,
``flush()`` that waits for everything handed in before it, and an error in the sink
that reaches producers instead of killing the thread silently.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TextIO

from .._errors import WriterError

__all__ = ["Sink", "TextSink", "Writer", "json_line"]

logger = logging.getLogger(__name__)

# Entries handed over in one batch; large enough to amortize a write() call, small enough
# that one batch never holds the writer away from a flush() request for long.
_BATCH = 1024


def json_line(record: Any) -> str:
    """One JSON document on one line, non-ASCII kept readable; objects JSON does not know
    are written as their str()."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


class Sink(Protocol):
    """Where a Writer puts what it is handed. Only the writer thread calls these."""

    def write_batch(self, entries: Sequence[Any]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class TextSink:
    """Writes text lines as they are and records through ``formatter``, one per line."""

    def __init__(
        self,
        stream: TextIO,
        *,
        formatter: Callable[[Any], str] = json_line,
        close_stream: bool = False,
    ) -> None:
        self.stream = stream
        self.formatter = formatter
        self.close_stream = close_stream

    def write_batch(self, entries: Sequence[Any]) -> None:
        fmt = self.formatter
        parts = [e if isinstance(e, str) else fmt(e) + "\n" for e in entries]
        self.stream.write("".join(parts))

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        try:
            self.stream.flush()
        finally:
            if self.close_stream:
                self.stream.close()


class Writer:
    """A thread that serializes all output to one sink.

    ``print()`` takes text like the built-in (and adds the newline on the caller's
    side, so a line is never torn); ``write()`` takes a record that the sink formats.
    Entries from one producer keep their order; entries never interleave.

    ``maxsize`` bounds how many entries may wait: a producer that outruns the sink blocks
    until the writer catches up. Use as a context manager, or call :meth:`close`.

    ``linger`` (seconds, default 0) is group commit: when fewer than half of ``maxsize``
    entries wait, the writer waits up to this long for more before writing them, so a
    sink with a fixed cost per batch (a flush, a database transaction) pays it for
    several entries at once. ``flush()`` and ``close()`` cut the wait short.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        sink: Sink | None = None,
        formatter: Callable[[Any], str] = json_line,
        maxsize: int = 65536,
        name: str = "shoal-writer",
        linger: float = 0.0,
    ) -> None:
        if sink is not None and stream is not None:
            raise ValueError("give a stream or a sink, not both")
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        if not 0 <= linger <= 1:
            raise ValueError("linger must be between 0 and 1 second")
        if sink is None:
            sink = TextSink(stream if stream is not None else sys.stdout, formatter=formatter)
        self.sink = sink
        self._maxsize = maxsize
        self._linger = linger
        # A batch this large is written at once, lingering or not.
        self._enough = max(1, min(maxsize // 2, _BATCH))
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._has_room = threading.Condition(self._lock)
        self._progressed = threading.Condition(self._lock)
        self._entries: deque[Any] = deque()
        self._enqueued = 0  # sequence number of the last entry handed in
        self._flushed = 0  # every entry up to this number is written and flushed
        self._flush_wanted = False
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- producers -------------------------------------------------------------------

    def print(self, *args: object, sep: str = " ", end: str = "\n") -> None:
        """Write one line of text, formatted like the built-in print()."""
        self._put(sep.join(map(str, args)) + end)

    def write(self, record: Any) -> None:
        """Hand a record to the sink (a dict becomes one JSON line with the default sink)."""
        if isinstance(record, str):
            raise TypeError("write() takes records; use print() for text")
        self._put(record)

    def _put(self, entry: Any) -> None:
        with self._lock:
            while True:
                if self._error is not None:
                    raise WriterError("the writer's sink failed") from self._error
                if self._closing:
                    raise WriterError("the writer is closed")
                if len(self._entries) < self._maxsize:
                    break
                self._has_room.wait()
            self._entries.append(entry)
            self._enqueued += 1
            waiting = len(self._entries)
            if waiting in (1, self._enough):
                self._has_work.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything handed in so far is written and flushed.

        Returns False if ``timeout`` ran out first; raises WriterError if the sink failed.
        """
        with self._lock:
            target = self._enqueued
            self._flush_wanted = True
            self._has_work.notify()
            ok = self._progressed.wait_for(
                lambda: self._flushed >= target or self._error is not None, timeout
            )
            if self._error is not None:
                raise WriterError("the writer's sink failed") from self._error
            return ok

    def close(self, timeout: float | None = None) -> None:
        """Write what is pending, flush and close the sink, and stop the thread."""
        with self._lock:
            self._closing = True
            self._has_work.notify()
            self._has_room.notify_all()
        self._thread.join(timeout)
        if self._error is not None:
            raise WriterError("the writer's sink failed") from self._error

    @property
    def closed(self) -> bool:
        """True once ``close()`` has begun: ``write()`` then raises WriterError."""
        return self._closing

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the writer thread -------------------------------------------------------------

    def _linger_locked(self) -> None:
        """Wait, up to ``linger`` seconds, for a batch worth writing."""
        deadline: float | None = None
        while len(self._entries) < self._enough and not self._closing and not self._flush_wanted:
            now = time.monotonic()
            if deadline is None:
                deadline = now + self._linger
            elif now >= deadline:
                return
            self._has_work.wait(deadline - now)

    def _run(self) -> None:
        sink = self.sink
        try:
            while True:
                with self._lock:
                    while not self._entries and not self._closing and not self._flush_wanted:
                        self._has_work.wait()
                    if self._linger:
                        self._linger_locked()
                    n = min(len(self._entries), _BATCH)
                    batch = [self._entries.popleft() for _ in range(n)]
                    upto = self._enqueued - len(self._entries)
                    drained = not self._entries
                    finishing = self._closing and drained
                    # Flush when caught up, or after every batch while someone waits in
                    # flush(): under a steady stream the queue might never drain.
                    do_flush = drained or self._flush_wanted
                    if n:
                        self._has_room.notify_all()
                # The sink is user-supplied code: call it with no lock held.
                if batch:
                    sink.write_batch(batch)
                if do_flush:
                    sink.flush()
                    with self._lock:
                        self._flushed = upto
                        if self._enqueued == upto:
                            self._flush_wanted = False
                        self._progressed.notify_all()
                if finishing:
                    sink.close()
                    return
        except BaseException as exc:  # noqa: BLE001 - delivered to every producer
            logger.error("writer sink failed: %r", exc)
            with self._lock:
                self._error = exc
                self._entries.clear()
                self._has_room.notify_all()
                self._progressed.notify_all()
            # Flush and close what can be: the first error is the one to report.
            with contextlib.suppress(BaseException):
                sink.flush()
            with contextlib.suppress(BaseException):
                sink.close()
