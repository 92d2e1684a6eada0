"""Stages of worker pools joined by bounded queues: fetch x64 -> parse x2 -> write x1.

Stage *i*'s workers hand results to stage *i+1* with a blocking put(), so a slow stage
holds back the ones before it instead of letting memory grow (each stage's ``maxsize``
is the bound). Stages never wait on an earlier stage, so the chain cannot deadlock.
Joining stage by stage in order is enough for "everything is done": when stage *i* has
no unfinished task, every value it emitted is already counted in stage *i+1*.

``results()`` reads the last stage, which must not look idle while an earlier stage can
still send it work: each stage counts one extra unfinished task in the next stage for
as long as it has unfinished tasks itself (taken under stage *i*'s lock, then *i+1*'s,
never the other way round). So the last stage's results end when the whole chain is
idle, which is when join() would return.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import TaskError, TaskErrorGroup
from ._pool import Pool, TaskContext
from ._retry import RetryPolicy
from ._types import ErrorPolicy, PoolStats
from ._writer import Writer

__all__ = ["Pipeline", "Stage"]


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline: ``handler(item, ctx)`` on ``workers`` threads.

    What the handler returns, unless None, goes on to the next stage (or, for the
    last stage of a pipeline made with ``results=True``, to ``results()``);
    ``ctx.emit(value)`` sends any number of values the same way. A handler may do both:
    the emitted values go first, then the returned one. ``maxsize`` bounds the stage's
    queue, which holds the stage before it back; the other fields are as in :class:`Pool`.
    """

    handler: Callable[[Any, TaskContext[Any]], object]
    workers: int = 1
    maxsize: int = 1024
    errors: ErrorPolicy | str = ErrorPolicy.FAIL_FAST
    retry: RetryPolicy | None = None
    retry_on: tuple[type[BaseException], ...] | None = None
    name: str | None = None


class Pipeline:
    """Run items through stages; one join() for the whole chain.

    >>> def double(item, ctx):
    ...     return item * 2
    >>> def keep_even(item, ctx):
    ...     if item % 4 == 0:
    ...         ctx.emit(item)
    >>> with Pipeline([Stage(double, workers=4), Stage(keep_even)], results=True) as pipe:
    ...     pipe.feed(range(10))         # doctest: +SKIP
    ...     print(sorted(pipe.results()))
    [0, 4, 8, 12, 16]

    With ``results=True`` the last stage's values (returned or emitted) are kept for
    :meth:`results`, at most ``buffer`` of them. Leaving the ``with`` block joins on
    success, cancels every stage on an error, and on Ctrl-C shuts every stage down.
    A failure is raised once: one caught from :meth:`results` or :meth:`join` is not
    raised again by a later join() or by leaving the ``with`` block.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        output: Writer | None = None,
        results: bool = False,
        buffer: int = 1024,
    ) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self._own_output = output is None
        self.output = output if output is not None else Writer(name="shoal-pipeline-writer")
        pools: list[Pool[Any]] = []
        downstream: Callable[[Any], None] | None = None
        # Build from the last stage back, so each stage knows where its results go.
        for index in range(len(stages) - 1, -1, -1):
            stage = stages[index]
            pool: Pool[Any] = Pool(
                _forwarding(stage.handler, downstream),
                stage.workers,
                maxsize=stage.maxsize,
                errors=stage.errors,
                retry=stage.retry,
                retry_on=stage.retry_on,
                output=self.output,
                name=stage.name or f"stage-{index}",
                results=results and downstream is None,
                buffer=buffer,
            )
            pool.downstream = downstream
            if pools:
                pool._hold_next = pools[-1]
            pools.append(pool)
            downstream = pool.put
        self.pools: list[Pool[Any]] = pools[::-1]

    def put(self, item: Any, *, timeout: float | None = None) -> None:
        """Put one item into the first stage (blocks while it is full; see Pool.put)."""
        self.pools[0].put(item, timeout=timeout)

    def put_many(self, items: Iterable[Any], *, timeout: float | None = None) -> None:
        """Put many items into the first stage (see Pool.put_many)."""
        self.pools[0].put_many(items, timeout=timeout)

    def feed(self, items: Iterable[Any]) -> None:
        """Put items into the first stage from a thread of their own (see Pool.feed)."""
        self.pools[0].feed(items)

    def results(self) -> Iterator[Any]:
        """Iterate over the last stage's values as they come (needs ``results=True``).

        Ends when :meth:`join` would return: every stage idle. A fail-fast failure in
        any stage is raised as soon as it is known (and cancels every stage); failures
        collected by stages come out as one TaskErrorGroup at the end. Leaving the loop
        early cancels every stage. Backpressure and the one rule to avoid a deadlock
        are as in :meth:`Pool.results`: hand the input to :meth:`feed` (every stage's
        queue is bounded, so putting many items first from the reading thread would
        wait for a reader that is not reading yet).
        """
        last = self.pools[-1].results()  # raises UsageError without results=True
        return self._read(last)

    def _read(self, last: Iterator[Any]) -> Iterator[Any]:
        ended = False
        collected: list[TaskError] = []
        try:
            while True:
                for pool in self.pools[:-1]:
                    # A fail-fast failure upstream: raise it now, as the last stage would.
                    failure = pool._take_failure()
                    if failure is not None:
                        raise failure
                try:
                    value = next(last)
                except StopIteration:
                    break
                except TaskErrorGroup as group:
                    collected = list(group.errors)
                    break
                yield value
            ended = True
            # Every stage is idle now: gather what the earlier ones collected too.
            for pool in self.pools[:-1]:
                try:
                    pool.join()
                except TaskErrorGroup as group:
                    collected[:0] = group.errors
            if collected:
                raise TaskErrorGroup(f"{len(collected)} task(s) failed", collected)
        finally:
            if not ended:
                self.cancel()
            close = getattr(last, "close", None)
            if close is not None:
                close()

    def join(self, timeout: float | None = None) -> None:
        """Wait until every stage is idle; raise as the failing stage's policy says.

        A fail-fast failure in any stage cancels every stage. Failures collected by
        several stages come out as one TaskErrorGroup.
        """
        collected: list[TaskError] = []
        for pool in self.pools:
            try:
                pool.join(timeout)
            except TaskErrorGroup as group:
                collected.extend(group.errors)
            except TaskError:
                self.cancel()
                raise
        if collected:
            raise TaskErrorGroup(f"{len(collected)} task(s) failed", collected)

    def cancel(self) -> None:
        """Stop intake and drop what every stage has queued; running tasks finish."""
        for pool in self.pools:
            pool.cancel()

    def close(self, timeout: float | None = None) -> None:
        """Let every stage finish its work, stop the workers, close the owned writer."""
        for pool in self.pools:
            pool.close(timeout)
        if self._own_output:
            self.output.close()

    def stats(self) -> list[PoolStats]:
        """One :class:`PoolStats` snapshot per stage, first stage first."""
        return [pool.stats() for pool in self.pools]

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.join()
            finally:
                self.close()
        elif issubclass(exc_type, KeyboardInterrupt):
            for pool in self.pools:
                pool.cancel()
            for pool in self.pools:
                pool.shutdown()
            if self._own_output:
                self.output.close()
        else:
            self.cancel()
            self.close()


def _forwarding(
    handler: Callable[[Any, TaskContext[Any]], object], downstream: Callable[[Any], None] | None
) -> Callable[[Any, TaskContext[Any]], object]:
    if downstream is None:
        return handler  # the last stage: what it returns goes nowhere

    def forward(item: Any, ctx: TaskContext[Any]) -> None:
        result = handler(item, ctx)
        if result is not None:
            downstream(result)

    return forward
