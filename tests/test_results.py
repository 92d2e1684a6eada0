"""Pool.results() and Pipeline.results(): values out, bounded, ending when join() would."""

from __future__ import annotations

import io
import itertools
import logging
import threading
from typing import Any

import pytest

import shoal
from conftest import interrupt_when_ready
from shoal import Pipeline, Pool, Stage, TaskContext, TaskError, TaskErrorGroup, UsageError


def _quiet() -> shoal.Writer:
    return shoal.Writer(io.StringIO())


def test_returned_and_emitted_values_come_out_while_tasks_spawn() -> None:
    def handle(item: int, ctx: TaskContext[int]) -> int | None:
        if item < 200:
            ctx.put(2 * item + 1)
            ctx.put(2 * item + 2)
        if item % 7 == 0:
            ctx.emit(-item)
        return item if item % 2 else None  # None is not a value

    with Pool(handle, workers=4, results=True, buffer=8) as pool:
        pool.put(0)
        got = list(pool.results())
        pool.join()  # nothing left: returns at once
    tasks = range(401)
    assert sorted(got) == sorted([x for x in tasks if x % 2] + [-x for x in tasks if x % 7 == 0])


def test_emitted_values_come_before_the_returned_one() -> None:
    def handle(item: int, ctx: TaskContext[int]) -> str:
        ctx.emit(f"{item}a")
        ctx.emit(f"{item}b")
        return f"{item}c"

    with Pool(handle, workers=1, results=True) as pool:
        pool.put(1)
        assert list(pool.results()) == ["1a", "1b", "1c"]


def test_results_need_results_true_and_one_reader() -> None:
    with Pool(lambda item, ctx: item, workers=1) as pool:
        with pytest.raises(UsageError):
            pool.results()
    with Pool(lambda item, ctx: item, workers=1, results=True) as pool:
        first = pool.results()
        with pytest.raises(UsageError):
            pool.results()
        pool.put(1)
        assert list(first) == [1]
        pool.put(2)
        assert list(pool.results()) == [2]  # a finished reader makes room for another


def test_slow_reader_holds_the_workers_back() -> None:
    """Counted, not timed: emitted - read never exceeds buffer + one blocked emit per worker."""
    lock = threading.Lock()
    emitted = 0
    read = 0
    worst = 0

    def handle(item: int, ctx: TaskContext[int]) -> None:
        nonlocal emitted, worst
        for k in range(50):
            with lock:
                emitted += 1
                worst = max(worst, emitted - read)
            ctx.emit((item, k))

    with Pool(handle, workers=3, results=True, buffer=6) as pool:
        pool.put_many(range(20))
        for _ in pool.results():
            with lock:
                read += 1
    assert read == 1000
    assert worst <= 6 + 3


def test_fail_fast_is_raised_by_the_reader() -> None:
    def handle(item: int, ctx: TaskContext[int]) -> int:
        if item == 3:
            raise ValueError("three")
        return item

    with pytest.raises(TaskError) as info:
        with Pool(handle, workers=2, results=True) as pool:
            pool.put_many(range(100))
            for _ in pool.results():
                pass
    assert info.value.item == 3


def test_collect_raises_one_group_after_the_values(caplog: pytest.LogCaptureFixture) -> None:
    def handle(item: int, ctx: TaskContext[int]) -> int:
        if item in (3, 8):
            raise KeyError(item)
        return item

    got: list[int] = []
    with Pool(handle, workers=2, results=True, errors="collect") as pool:
        pool.put_many(range(10))
        with pytest.raises(TaskErrorGroup) as info:
            for value in pool.results():
                got.append(value)
    assert sorted(got) == [0, 1, 2, 4, 5, 6, 7, 9]
    assert sorted(e.item for e in info.value.exceptions) == [3, 8]

    with caplog.at_level(logging.ERROR):
        with Pool(handle, workers=2, results=True, errors="log") as pool:
            pool.put_many(range(10))
            assert sorted(pool.results()) == [0, 1, 2, 4, 5, 6, 7, 9]


def test_leaving_the_loop_early_cancels_and_frees_blocked_workers() -> None:
    def handle(item: int, ctx: TaskContext[int]) -> None:
        for k in range(1000):
            ctx.emit(k)  # blocks on the full buffer until the reader leaves

    with Pool(handle, workers=3, results=True, buffer=4, name="early") as pool:
        pool.put_many(range(50))
        for n, _ in enumerate(pool.results()):
            if n == 10:
                break
        pool.join(timeout=30)  # the blocked emits were released: no hang
        stats = pool.stats()
    assert stats.cancelled >= 50 - 3 - 1
    assert stats.done + stats.cancelled == 50
    assert not [t for t in threading.enumerate() if t.name.startswith("early")]


def test_a_put_that_could_deadlock_is_refused() -> None:
    """The reading thread may not wait for queue room: workers may be waiting for it."""
    gate = threading.Event()

    def handle(item: int, ctx: TaskContext[int]) -> int:
        gate.wait(10)
        return item

    with Pool(handle, workers=1, maxsize=1, results=True, buffer=1) as pool:
        reader = pool.results()
        accepted: list[int] = []
        with pytest.raises(UsageError, match="deadlock"):
            for i in range(3):  # the worker is stuck on one, the queue holds one
                pool.put(i)
                accepted.append(i)
        gate.set()
        assert sorted(reader) == accepted


def test_pipeline_results_end_when_every_stage_is_idle() -> None:
    def split(line: str, ctx: TaskContext[Any]) -> None:
        for word in line.split():
            ctx.emit(word)

    def upper(word: str, ctx: TaskContext[Any]) -> str:
        return word.upper()

    lines = [f"w{i} x{i} y{i}" for i in range(300)]
    with (
        _quiet() as out,
        Pipeline(
            [Stage(split, workers=3), Stage(upper, workers=2, maxsize=4)],
            output=out,
            results=True,
            buffer=4,
        ) as pipe,
    ):
        pipe.put_many(lines)
        got = list(pipe.results())
    assert sorted(got) == sorted(w.upper() for line in lines for w in line.split())


def test_pipeline_results_raise_a_first_stage_failure() -> None:
    def first(item: int, ctx: TaskContext[Any]) -> int:
        if item == 5:
            raise ValueError("five")
        return item

    with pytest.raises(TaskError) as info:
        with Pipeline([Stage(first), Stage(lambda x, ctx: x)], results=True) as pipe:
            pipe.put_many(range(50))
            for _ in pipe.results():
                pass
    assert info.value.item == 5


def test_pipeline_collects_from_every_stage() -> None:
    def first(item: int, ctx: TaskContext[Any]) -> int:
        if item == 1:
            raise ValueError("first")
        return item

    def second(item: int, ctx: TaskContext[Any]) -> int:
        if item == 2:
            raise KeyError("second")
        return item

    got: list[int] = []
    with (
        _quiet() as out,
        Pipeline(
            [Stage(first, errors="collect"), Stage(second, errors="collect")],
            output=out,
            results=True,
        ) as pipe,
    ):
        pipe.put_many(range(6))
        with pytest.raises(TaskErrorGroup) as info:
            for value in pipe.results():
                got.append(value)
    assert sorted(got) == [0, 3, 4, 5]
    assert sorted(e.item for e in info.value.exceptions) == [1, 2]


def _readme_runtime_blocks() -> list[str]:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text.split("## The runtime", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


def test_readme_pool_example_spreads_blocking_work_over_workers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pool_example = next(b for b in _readme_runtime_blocks() if "shoal.Pool(handle" in b)
    exec(compile(pool_example, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "waiting job..." and lines[-1] == "job finished"
    body = lines[1:-1]
    assert sorted(int(line.split()[-1]) for line in body) == list(range(6))
    # 0.1 s of "I/O" per task and 5 idle workers: one worker doing all would mean the
    # others never woke in 0.6 s. (The barrier test in test_pool.py proves it exactly.)
    assert len({line.split()[0] for line in body}) >= 2


def test_readme_pipeline_example_iterates_the_output(capsys: pytest.CaptureFixture[str]) -> None:
    block = next(b for b in _readme_runtime_blocks() if "pipe.results()" in b)
    exec(compile(block, "README.md", "exec"), {"shoal": shoal})
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(f"{w} {len(w)}" for w in words)


def _random_results_run(seed: int) -> None:
    import random

    rng = random.Random(seed)
    parents = rng.randrange(0, 200)
    workers = rng.randrange(1, 6)
    buffer = rng.randrange(1, 20)
    emits = rng.randrange(0, 4)
    stop_after = rng.randrange(0, 300) if rng.random() < 0.3 else None
    lock = threading.Lock()
    produced = 0
    read = 0
    worst = 0

    def handle(item: int, ctx: TaskContext[int]) -> int:
        nonlocal produced, worst
        if item < parents:
            ctx.put(2 * item + 1)
            ctx.put(2 * item + 2)
        for k in range(emits):
            with lock:
                produced += 1
                worst = max(worst, produced - read)
            ctx.emit(-k)
        return item

    got: list[int] = []
    with Pool(handle, workers=workers, results=True, buffer=buffer, name="rand") as pool:
        pool.put(0)
        for value in pool.results():
            with lock:
                read += 1
            got.append(value)
            if stop_after is not None and len(got) >= stop_after:
                break
        pool.join(timeout=60)
    if stop_after is None or stop_after > len(got):
        from collections import Counter

        tasks = 2 * parents + 1
        want = Counter(range(tasks)) + Counter({-k: tasks for k in range(emits)})
        assert Counter(got) == want
    # Emitted values never run ahead of the reader by more than the buffer, plus one
    # blocked emit per worker, plus the values returned by one claimed batch per worker.
    assert worst <= buffer + workers + workers * 64


@pytest.mark.parametrize("seed", range(10))
def test_random_results_short(seed: int) -> None:
    _random_results_run(seed)


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(10, 510))
def test_random_results_stress(seed: int) -> None:
    _random_results_run(seed)


CTRL_C_CHILD = r"""
import signal, sys, threading, time
import shoal
signal.signal(signal.SIGINT, signal.default_int_handler)
def slow(item, ctx):
    time.sleep(0.05)
    return item
try:
    with shoal.Pool(slow, workers=4, results=True, buffer=4, grace=5) as pool:
        pool.put_many(range(10_000))
        for value in pool.results():
            print("ready", flush=True)
except KeyboardInterrupt:
    pass
for t in threading.enumerate():  # shutdown() stops the workers; they are on their way out
    if t is not threading.main_thread():
        t.join(5)
left = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
print("left", left, "cancelled", pool.stats().cancelled > 0, flush=True)
sys.exit(130)
"""


def test_ctrl_c_while_reading_results_stops_the_pool() -> None:
    code, out, err = interrupt_when_ready(CTRL_C_CHILD)
    assert code == 130, err
    assert "left [] cancelled True" in out, (out, err)


def test_feed_makes_a_bounded_pool_safe_to_read() -> None:
    """put_many of 5000 items into maxsize=4 from the reading thread would deadlock."""
    seen: list[int] = []
    with Pool(lambda item, ctx: item * 2, workers=3, maxsize=4, results=True, buffer=4) as pool:
        pool.feed(iter(range(5000)))
        for value in pool.results():
            seen.append(value)
        assert pool.stats().peak_queued <= 4
    assert sorted(seen) == [2 * i for i in range(5000)]


def test_a_feed_input_error_comes_out_after_its_items() -> None:
    def source() -> Any:
        yield from range(10)
        raise OSError("input broke")

    got: list[int] = []
    with Pool(lambda item, ctx: item, workers=2, maxsize=2, results=True) as pool:
        pool.feed(source())
        with pytest.raises(OSError, match="input broke"):
            for value in pool.results():
                got.append(value)
    assert sorted(got) == list(range(10))


def test_leaving_results_early_stops_an_endless_feed() -> None:
    with Pool(lambda item, ctx: item, workers=2, maxsize=8, results=True, name="endless") as p:
        p.feed(itertools.count())
        for n, _ in enumerate(p.results()):
            if n == 100:
                break
    assert not [t for t in threading.enumerate() if t.name.startswith("endless")]


def test_pipeline_feed_with_bounded_stages() -> None:
    with (
        _quiet() as out,
        Pipeline(
            [
                Stage(lambda x, ctx: x + 1, workers=2, maxsize=3),
                Stage(lambda x, ctx: -x, maxsize=2),
            ],
            output=out,
            results=True,
            buffer=2,
        ) as pipe,
    ):
        pipe.feed(range(3000))
        got = list(pipe.results())
    assert sorted(got) == sorted(-(x + 1) for x in range(3000))


# -- an error raised to the caller is handled: the with block does not raise it again ----


def _fails_on_3(item: int, ctx: TaskContext[int]) -> int:
    if item == 3:
        raise ValueError("bad item")
    return item


def test_pipeline_error_caught_from_results_is_not_raised_again_at_exit() -> None:
    caught: list[TaskError] = []
    with Pipeline([Stage(_fails_on_3, workers=2)], results=True) as pipe:
        pipe.feed(range(10))
        try:
            for _ in pipe.results():
                pass
        except TaskError as err:
            caught.append(err)
        pipe.join()  # handled: join() after results() raised it returns quietly
    assert [e.item for e in caught] == [3]


def test_pipeline_error_in_an_earlier_stage_caught_from_results_is_handled() -> None:
    def last(item: int, ctx: TaskContext[int]) -> int:
        return item

    stages = [Stage(_fails_on_3, workers=2), Stage(last, workers=2)]
    caught: list[TaskError] = []
    with Pipeline(stages, results=True) as pipe:
        pipe.feed(range(10))
        try:
            for _ in pipe.results():
                pass
        except TaskError as err:
            caught.append(err)
    assert [e.item for e in caught] == [3]


def test_pipeline_error_never_delivered_still_surfaces_at_exit() -> None:
    with pytest.raises(TaskError) as info:
        with Pipeline([Stage(_fails_on_3)], results=True) as pipe:
            pipe.put_many(range(5))  # results() never read: the with block's join raises
    assert info.value.item == 3


def test_pool_error_caught_from_results_is_not_raised_again() -> None:
    caught: list[TaskError] = []
    with Pool(_fails_on_3, workers=2, results=True) as pool:
        pool.put_many(range(10))
        try:
            for _ in pool.results():
                pass
        except TaskError as err:
            caught.append(err)
        pool.join()
        assert list(pool.results()) == []  # nothing more: the pool stopped on the failure
    assert [e.item for e in caught] == [3]
