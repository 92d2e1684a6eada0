"""Pipelines: stages with their own workers, bounded hand-offs, one join, error routing."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest

import shoal
from shoal import Pipeline, Stage, TaskContext, Writer


def test_three_stages_one_join() -> None:
    results: list[int] = []
    lock = threading.Lock()

    def fetch(item: int, ctx: TaskContext[Any]) -> int:
        return item * 2

    def parse(item: int, ctx: TaskContext[Any]) -> None:
        ctx.emit(item)
        ctx.emit(item + 1)

    def write(item: int, ctx: TaskContext[Any]) -> None:
        with lock:
            results.append(item)

    with (
        Writer(io.StringIO()) as out,
        Pipeline(
            [Stage(fetch, workers=8), Stage(parse, workers=2), Stage(write, workers=1)], output=out
        ) as pipe,
    ):
        pipe.put_many(range(500))
        pipe.join()
        stats = pipe.stats()
    assert sorted(results) == list(range(1000))
    assert [s.done for s in stats] == [500, 500, 1000]


def test_slow_stage_bounds_the_queue_before_it() -> None:
    gate = threading.Event()
    reached_last = threading.Event()
    produced = []
    lock = threading.Lock()

    def first(item: int, ctx: TaskContext[Any]) -> int:
        with lock:
            produced.append(item)
        return item

    def last(item: int, ctx: TaskContext[Any]) -> None:
        reached_last.set()
        gate.wait()

    pipe = Pipeline([Stage(first, workers=2, maxsize=0), Stage(last, workers=1, maxsize=2)])
    try:
        feeder = threading.Thread(target=pipe.put_many, args=(range(100),))
        feeder.start()
        assert reached_last.wait(10)
        feeder.join(0.05)
        # However long we wait, while the last stage is stuck at most 1 in flight there,
        # 2 queued for it, and one blocked hand-off per first-stage worker can exist.
        with lock:
            assert len(produced) <= 1 + 2 + 2
        gate.set()
        feeder.join(10)
        pipe.join(timeout=30)
        assert pipe.stats()[1].done == 100
    finally:
        gate.set()
        pipe.close()


def test_collected_errors_from_several_stages_form_one_group() -> None:
    def first(item: int, ctx: TaskContext[Any]) -> int:
        if item == 1:
            raise ValueError("first")
        return item

    def second(item: int, ctx: TaskContext[Any]) -> None:
        if item == 2:
            raise KeyError("second")

    with Pipeline(
        [Stage(first, errors="collect"), Stage(second, errors="collect")],
        output=shoal.Writer(io.StringIO()),
    ) as pipe:
        pipe.put_many(range(5))
        with pytest.raises(shoal.TaskErrorGroup) as info:
            pipe.join()
        pipe.output.close()
    assert sorted(info.value.items) == [1, 2]


def test_fail_fast_in_a_later_stage_cancels_all() -> None:
    last_started, last_gate = threading.Event(), threading.Event()
    last_ran: list[int] = []
    lock = threading.Lock()

    def first(item: int, ctx: TaskContext[Any]) -> int:
        return item

    def second(item: int, ctx: TaskContext[Any]) -> int:
        if item == 5:
            raise RuntimeError("stop")
        return item

    def last(item: int, ctx: TaskContext[Any]) -> None:
        with lock:
            last_ran.append(item)
        last_started.set()
        last_gate.wait()

    stages = [Stage(first, workers=1), Stage(second, workers=1), Stage(last, workers=1)]
    pipe = Pipeline(stages, output=Writer(io.StringIO()))
    try:
        pipe.put_many(range(20))
        assert last_started.wait(10)  # 0 runs in the last stage; 1-4 wait behind it
        with pytest.raises(shoal.TaskError):
            pipe.join(timeout=30)
        # The failure in the middle stage cancelled the stages on both sides of it: what
        # waited in the last stage is dropped, not run once the gate opens.
        assert pipe.pools[2].cancelled_items == [1, 2, 3, 4]
        assert all(s.queued == 0 for s in pipe.stats())
    finally:
        last_gate.set()
        pipe.close()
        pipe.output.close()
    assert last_ran == [0]
    assert all(s.submitted == s.done + s.failed + s.cancelled for s in pipe.stats())  # none lost


def test_emit_without_next_stage_is_an_error() -> None:
    def handle(item: int, ctx: TaskContext[int]) -> None:
        ctx.emit(item)

    with pytest.raises(shoal.TaskError) as info:
        with shoal.Pool(handle, workers=1, output=shoal.Writer(io.StringIO())) as pool:
            pool.put(1)
            try:
                pool.join()
            finally:
                pool.output.close()
    assert isinstance(info.value.__cause__, RuntimeError)


def test_empty_pipeline_is_refused() -> None:
    with pytest.raises(ValueError):
        Pipeline([])


def test_a_handler_that_emits_and_returns_forwards_both_emitted_first() -> None:
    got: list[str] = []
    lock = threading.Lock()

    def first(item: int, ctx: TaskContext[Any]) -> str:
        ctx.emit(f"{item}-emitted")
        return f"{item}-returned"

    def last(item: str, ctx: TaskContext[Any]) -> None:
        with lock:
            got.append(item)

    with Writer(io.StringIO()) as out, Pipeline([Stage(first), Stage(last)], output=out) as pipe:
        pipe.put(7)
        pipe.join(timeout=30)
    assert got == ["7-emitted", "7-returned"]
    assert "emitted values go first" in (Stage.__doc__ or "")
