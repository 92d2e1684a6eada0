"""Stages of worker pools joined by bounded queues: fetch x64 -> parse x2 -> write x1.

Stage *i*'s workers hand results to stage *i+1* with a blocking put(), so a slow stage
holds back the ones before it instead of letting memory grow (each stage's ``maxsize``
is the bound). Stages never wait on an earlier stage, so the chain cannot deadlock.
Joining stage by stage in order is enough for "everything is done": when stage *i* has
no unfinished task, every value it emitted is already counted in stage *i+1*.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import TaskError, TaskErrorGroup
from ._context import TaskContext
from ._pool import Pool
from ._retry import RetryPolicy
from ._types import ErrorPolicy, PoolStats
from ._writer import Writer

__all__ = ["Pipeline", "Stage"]


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline. The handler's return value, unless None, goes on to the
    next stage; call ``ctx.emit(value)`` to send zero or many values instead."""

    handler: Callable[[Any, TaskContext[Any]], object]
    workers: int = 1
    maxsize: int = 1024
    errors: ErrorPolicy | str = ErrorPolicy.FAIL_FAST
    retry: RetryPolicy | None = None
    retry_on: tuple[type[BaseException], ...] = ()
    name: str | None = None


class Pipeline:
    """Run items through stages; one join() for the whole chain."""

    def __init__(self, stages: Sequence[Stage], *, output: Writer | None = None) -> None:
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
            )
            pool.downstream = downstream
            pools.append(pool)
            downstream = pool.put
        self.pools: list[Pool[Any]] = pools[::-1]

    def put(self, item: Any, *, timeout: float | None = None) -> None:
        self.pools[0].put(item, timeout=timeout)

    def put_many(self, items: Iterable[Any], *, timeout: float | None = None) -> None:
        self.pools[0].put_many(items, timeout=timeout)

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
        for pool in self.pools:
            pool.cancel()

    def close(self, timeout: float | None = None) -> None:
        for pool in self.pools:
            pool.close(timeout)
        if self._own_output:
            self.output.close()

    def stats(self) -> list[PoolStats]:
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
