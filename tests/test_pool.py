"""The worker pool: join over task trees, bounded intake, error policies, retries, stop."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import shoal
from shoal import Pool, RetryLater, RetryPolicy, TaskContext, Writer

FAST_RETRY = RetryPolicy(attempts=3, base=0.0)


_writers: list[Writer] = []


def quiet_writer() -> Writer:
    writer = Writer(io.StringIO())
    _writers.append(writer)
    return writer


@pytest.fixture(autouse=True)
def _close_writers() -> Iterator[None]:
    yield
    while _writers:
        _writers.pop().close()


def test_seed_pattern_job_finished_is_last() -> None:
    out = io.StringIO()
    with Writer(out) as writer:

        def handle(item: str, ctx: TaskContext[str]) -> None:
            ctx.print(f"{ctx.worker} get {item}")

        with Pool(handle, workers=5, output=writer) as pool:
            pool.print("waiting job...")
            pool.put_many("qwertyuiopasdfghjkl")
            pool.join()
            pool.print("job finished")
    lines = out.getvalue().splitlines()
    assert lines[0] == "waiting job..."
    assert lines[-1] == "job finished"
    assert sorted(line.split()[-1] for line in lines[1:-1]) == sorted("qwertyuiopasdfghjkl")


def test_join_waits_for_the_whole_tree_with_maxsize_1() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def handle(depth: int, ctx: TaskContext[int]) -> None:
        with lock:
            seen.append(depth)
        if depth < 16:
            ctx.put(depth + 1)
            ctx.put(depth + 1)

    with Pool(handle, workers=4, maxsize=1, output=quiet_writer()) as pool:
        pool.put(0)
        pool.join()
        stats = pool.stats()
    assert len(seen) == 2**17 - 1
    assert stats.done == 2**17 - 1 and stats.queued == 0 and stats.in_flight == 0
    # Depth-first spawning bounds the queue by depth x fan-out x (workers + largest batch,
    # 64), here 2176, where breadth-first order would hold the widest level, 65,536.
    assert stats.peak_queued <= 16 * 2 * (4 + 64)


def test_outside_put_blocks_at_maxsize_and_times_out() -> None:
    gate = threading.Event()
    started = threading.Event()

    def handle(item: int, ctx: TaskContext[int]) -> None:
        started.set()
        gate.wait()

    with Pool(handle, workers=1, maxsize=2, output=quiet_writer()) as pool:
        pool.put(0)
        assert started.wait(5)
        pool.put(1)
        pool.put(2)
        with pytest.raises(shoal.QueueFull):
            pool.put(3, timeout=0.01)
        gate.set()
        pool.put(3, timeout=5)  # room comes back as the worker drains the queue
        pool.join()
        assert pool.stats().done == 4


def test_blocked_producer_wakes_when_room_appears() -> None:
    gate = threading.Event()
    done = threading.Event()

    def handle(item: int, ctx: TaskContext[int]) -> None:
        gate.wait()

    with Pool(handle, workers=1, maxsize=1, output=quiet_writer()) as pool:

        def produce() -> None:
            pool.put_many(range(10))
            done.set()

        producer = threading.Thread(target=produce)
        producer.start()
        assert not done.wait(0.05)  # blocked: the queue is full and the worker is gated
        gate.set()
        producer.join(5)
        assert done.is_set()
        pool.join()
        assert pool.stats().done == 10


def test_fail_fast_cancels_queued_and_raises_at_join() -> None:
    ran: list[int] = []

    def handle(item: int, ctx: TaskContext[int]) -> None:
        ran.append(item)
        if item == 0:
            raise ValueError("boom")

    pool = Pool(handle, workers=1, output=quiet_writer())
    try:
        gate_items = [0, 1, 2, 3]
        pool.put_many(gate_items)
        with pytest.raises(shoal.TaskError) as info:
            pool.join()
        assert info.value.item == 0
        assert isinstance(info.value.__cause__, ValueError)
        assert pool.stats().failed == 1
        # Item 0 ran first; whatever had not been claimed was cancelled, not run.
        assert sorted(ran + pool.cancelled_items) == gate_items
        with pytest.raises(shoal.PoolClosed):
            pool.put(9)
    finally:
        pool.close()


def test_collect_raises_one_group_with_every_failure() -> None:
    def handle(item: int, ctx: TaskContext[int]) -> None:
        if item % 3 == 0:
            raise KeyError(item)

    with Pool(handle, workers=4, errors="collect", output=quiet_writer()) as pool:
        pool.put_many(range(30))
        with pytest.raises(shoal.TaskErrorGroup) as info:
            pool.join()
        assert sorted(info.value.items) == list(range(0, 30, 3))
        assert all(isinstance(e.__cause__, KeyError) for e in info.value.exceptions)
        assert isinstance(info.value, shoal.ShoalError)
        assert pool.stats().done == 20
        pool.join()  # errors are reported once


def test_log_policy_logs_and_continues(caplog: pytest.LogCaptureFixture) -> None:
    def handle(item: int, ctx: TaskContext[int]) -> None:
        if item == 5:
            raise RuntimeError("bad item")

    with caplog.at_level(logging.INFO, logger="shoal"):
        with Pool(handle, workers=2, errors="log", output=quiet_writer()) as pool:
            pool.put_many(range(10))
            pool.join()
            stats = pool.stats()
    assert stats.done == 9 and stats.failed == 1
    # One line per failure at WARNING; the traceback only at DEBUG.
    assert [(r.levelno, r.getMessage(), r.exc_info) for r in caplog.records] == [
        (logging.WARNING, "task 5 failed after 1 attempt(s): RuntimeError: bad item", None)
    ]
    assert "Traceback" not in caplog.text

    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="shoal"):
        with Pool(handle, workers=2, errors="log", output=quiet_writer()) as pool:
            pool.put_many(range(10))
    assert [r.levelno for r in caplog.records if "task 5" in r.getMessage()] == [
        logging.WARNING,
        logging.DEBUG,
    ]
    assert "Traceback" in caplog.text and "bad item" in caplog.text


def test_pipeline_stage_log_policy_logs_one_line_per_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handle(item: int, ctx: TaskContext[int]) -> int:
        if item % 4 == 1:
            raise KeyError(item)
        return item

    def last(item: int, ctx: TaskContext[int]) -> None:
        pass

    stages = [shoal.Stage(handle, workers=2, errors="log"), shoal.Stage(last)]
    with caplog.at_level(logging.INFO, logger="shoal"):
        with shoal.Pipeline(stages, output=quiet_writer()) as pipe:
            pipe.put_many(range(8))
        pipe.output.close()
    failures = sorted(r.getMessage() for r in caplog.records)
    assert failures == [
        "task 1 failed after 1 attempt(s): KeyError: 1",
        "task 5 failed after 1 attempt(s): KeyError: 5",
    ]
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in caplog.records)


def test_retry_later_runs_again_then_succeeds() -> None:
    attempts: dict[int, list[int]] = {}
    lock = threading.Lock()

    def handle(item: int, ctx: TaskContext[int]) -> None:
        with lock:
            attempts.setdefault(item, []).append(ctx.attempt)
        if ctx.attempt < 3:
            raise RetryLater("not yet")

    with Pool(handle, workers=3, retry=FAST_RETRY, output=quiet_writer()) as pool:
        pool.put_many(range(5))
        pool.join()
        stats = pool.stats()
    assert attempts == {i: [1, 2, 3] for i in range(5)}
    assert stats.retried == 10 and stats.done == 5 and stats.failed == 0


def test_retries_are_capped_and_report_attempts() -> None:
    def handle(item: int, ctx: TaskContext[int]) -> None:
        raise ConnectionError("down")

    pool = Pool(
        handle, workers=2, retry=FAST_RETRY, retry_on=(ConnectionError,), output=quiet_writer()
    )
    try:
        pool.put(1)
        with pytest.raises(shoal.TaskError) as info:
            pool.join()
        assert info.value.attempts == 3
        assert pool.stats().retried == 2
    finally:
        pool.close()


def test_errors_not_marked_retryable_are_not_retried() -> None:
    calls = []

    def handle(item: int, ctx: TaskContext[int]) -> None:
        calls.append(item)
        raise ValueError("permanent")

    with Pool(
        handle,
        workers=1,
        retry=FAST_RETRY,
        retry_on=(ConnectionError,),
        errors="collect",
        output=quiet_writer(),
    ) as pool:
        pool.put(1)
        with pytest.raises(shoal.TaskErrorGroup):
            pool.join()
    assert calls == [1]


def test_backoff_delay_grows_and_is_capped() -> None:
    policy = RetryPolicy(attempts=10, base=0.5, multiplier=2, cap=3, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(1, requested=99) == 3
    jittered = RetryPolicy(base=1.0, cap=8)
    assert all(0 <= jittered.delay(3) <= 4 for _ in range(100))


def test_every_outcome_is_captured_even_base_exceptions() -> None:
    def handle(item: int, ctx: TaskContext[int]) -> None:
        raise SystemExit(3)

    with Pool(handle, workers=2, errors="collect", output=quiet_writer()) as pool:
        pool.put_many(range(4))
        with pytest.raises(shoal.TaskErrorGroup) as info:
            pool.join()
    assert len(info.value.exceptions) == 4


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("repr() of this item raises")


def test_a_failure_is_recorded_even_when_repr_of_its_item_raises() -> None:
    """TaskError's message shows the item and the exception: a __repr__ that raises must
    not take the worker down along with the failure it was delivering."""
    items = [_Unprintable(), _Unprintable()]

    def handle(item: _Unprintable, ctx: TaskContext[_Unprintable]) -> None:
        raise ValueError(item)  # the exception's repr() calls the item's too

    with Pool(handle, workers=2, errors="collect", output=quiet_writer()) as pool:
        pool.put_many(items)
        with pytest.raises(shoal.TaskErrorGroup) as info:
            pool.join(timeout=30)  # a bound, not a timing assertion: it used to hang
    errors = info.value.errors
    assert sorted(id(e.item) for e in errors) == sorted(id(item) for item in items)
    assert all("_Unprintable object: repr() failed" in str(e) for e in errors)
    assert all(isinstance(e.__cause__, ValueError) for e in errors)


def test_join_timeout() -> None:
    gate = threading.Event()

    def handle(item: int, ctx: TaskContext[int]) -> None:
        gate.wait()

    with Pool(handle, workers=1, output=quiet_writer()) as pool:
        pool.put(1)
        with pytest.raises(shoal.JoinTimeout):
            pool.join(timeout=0.01)
        gate.set()
        pool.join(timeout=10)


def test_join_from_a_worker_is_refused() -> None:
    errors: list[BaseException] = []

    def handle(item: int, ctx: TaskContext[int]) -> None:
        try:
            pool.join()
        except RuntimeError as exc:
            errors.append(exc)

    with Pool(handle, workers=1, output=quiet_writer()) as pool:
        pool.put(1)
        pool.join()
    assert len(errors) == 1


def test_delayed_put_is_waited_for() -> None:
    ran = threading.Event()

    def handle(item: int, ctx: TaskContext[int]) -> None:
        ran.set()

    with Pool(handle, workers=2, output=quiet_writer()) as pool:
        pool.put(1, delay=0.02)
        pool.join(timeout=10)
    assert ran.is_set()


def test_cancel_drops_queued_and_in_flight_finish() -> None:
    gate = threading.Event()
    started = threading.Event()
    finished: list[int] = []

    def handle(item: int, ctx: TaskContext[int]) -> None:
        started.set()
        gate.wait()
        finished.append(item)
        ctx.put(item + 100)  # spawned after cancel(): dropped, not run

    pool = Pool(handle, workers=1, output=quiet_writer())
    pool.put_many(range(5))
    assert started.wait(5)
    dropped = pool.cancel()
    assert sorted(dropped) == [1, 2, 3, 4]
    gate.set()
    pool.join(timeout=10)
    pool.close()
    assert finished == [0]
    assert pool.stats().cancelled == 5  # four queued, one spawned after cancel


def test_close_is_idempotent_and_refuses_new_work() -> None:
    pool: Pool[int] = Pool(lambda item, ctx: None, workers=3, output=quiet_writer())
    pool.close()
    pool.close()
    with pytest.raises(shoal.PoolClosed):
        pool.put(1)


def test_exception_in_with_block_cancels_and_closes() -> None:
    started, cancelled = threading.Event(), threading.Event()
    ran: list[int] = []
    lock = threading.Lock()

    class Observed(Pool[int]):
        def cancel(self) -> list[Any]:
            dropped = super().cancel()
            cancelled.set()  # lets the in-flight task end only once the queue is dropped
            return dropped

    def handle(item: int, ctx: TaskContext[int]) -> None:
        with lock:
            ran.append(item)
        started.set()
        # Bounded, so that a pool that never cancels fails the test instead of hanging it.
        assert cancelled.wait(10), "leaving the with block did not cancel"

    with pytest.raises(ZeroDivisionError):
        with Observed(handle, workers=1, output=quiet_writer(), name="doomed") as pool:
            pool.put_many(range(5))
            assert started.wait(10)
            1 / 0  # noqa: B018
    # The in-flight task finished, the queued ones never ran, the workers are gone.
    assert ran == [0]
    assert pool.cancelled_items == [1, 2, 3, 4]
    s = pool.stats()
    assert (s.done, s.cancelled, s.queued, s.in_flight) == (1, 4, 0, 0)
    assert not [t for t in threading.enumerate() if t.name.startswith("doomed-worker")]
    with pytest.raises(shoal.PoolClosed):
        pool.put(5)


def test_stats_are_consistent() -> None:
    def handle(item: int, ctx: TaskContext[int]) -> None:
        if item < 3:
            ctx.put(item + 10)

    with Pool(handle, workers=2, output=quiet_writer()) as pool:
        pool.put_many(range(5))
        pool.join()
        s = pool.stats()
    assert (s.submitted, s.done, s.failed, s.queued, s.in_flight) == (8, 8, 0, 0, 0)
    assert s.finished == 8 and s.rate > 0
    assert "done=8" in repr(pool)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        Pool(lambda i, c: None, workers=0)
    with pytest.raises(ValueError):
        Pool(lambda i, c: None, maxsize=-1)
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def _random_tree_run(seed: int) -> None:
    import random

    rng = random.Random(seed)
    workers = rng.randint(1, 8)
    maxsize = rng.choice([0, 1, 3])
    fail_at = rng.choice([None, rng.randint(0, 200)])
    counter = {"n": 0}
    lock = threading.Lock()

    def handle(item: int, ctx: TaskContext[int]) -> None:
        with lock:
            counter["n"] += 1
        if item == fail_at:
            raise ValueError(item)
        if item < 100:
            ctx.put(2 * item + 1)
            ctx.put(2 * item + 2)

    pool = Pool(handle, workers=workers, maxsize=maxsize, errors="collect", output=quiet_writer())
    try:
        pool.put(0)
        if fail_at is None:
            pool.join(timeout=30)
        else:
            with pytest.raises(shoal.TaskErrorGroup):
                pool.join(timeout=30)
        s = pool.stats()
        assert s.queued == 0 and s.in_flight == 0
        assert s.done + s.failed == counter["n"]
    finally:
        pool.close(timeout=30)


@pytest.mark.parametrize("seed", range(5))
def test_random_trees_short(seed: int) -> None:
    _random_tree_run(seed)


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(300))
def test_random_trees_stress(seed: int) -> None:
    _random_tree_run(1000 + seed)


def test_many_pools_leave_no_threads() -> None:
    for _ in range(20):
        with Pool(lambda i, c: None, workers=4, output=quiet_writer()) as pool:
            pool.put_many(range(50))


# -- issue 11: retry policy without retry_on, work spread over workers -----------------------


def test_a_retry_policy_without_retry_on_retries_exceptions() -> None:
    runs: dict[int, int] = {}
    lock = threading.Lock()

    def flaky(item: int, ctx: TaskContext[int]) -> None:
        with lock:
            runs[item] = runs.get(item, 0) + 1
        if ctx.attempt < 3:
            raise ValueError("not yet")

    with Pool(flaky, workers=2, retry=FAST_RETRY, output=quiet_writer()) as pool:
        pool.put_many(range(4))
        pool.join(timeout=30)
    assert runs == {0: 3, 1: 3, 2: 3, 3: 3}


def test_an_explicit_empty_retry_on_retries_only_retry_later() -> None:
    def fails(item: int, ctx: TaskContext[int]) -> None:
        raise ValueError("no")

    with pytest.raises(shoal.TaskError) as info:
        with Pool(fails, workers=1, retry=FAST_RETRY, retry_on=(), output=quiet_writer()) as p:
            p.put(1)
            p.join(timeout=30)
    assert info.value.attempts == 1


def test_blocking_tasks_spread_over_workers_even_after_cheap_ones() -> None:
    """A worker warmed up on cheap tasks (claiming batches) must not claim blocking tasks
    that other idle workers could run: 4 tasks that wait for each other need 4 workers."""
    barrier = threading.Barrier(4)
    phase = {"blocking": False}

    def handle(item: int, ctx: TaskContext[int]) -> int:
        if phase["blocking"]:
            barrier.wait(timeout=20)  # BrokenBarrierError if fewer than 4 run at once
        return ctx.worker

    with Pool(handle, workers=4, output=quiet_writer()) as pool:
        pool.put_many(range(20_000))
        pool.join(timeout=60)
        phase["blocking"] = True
        pool.put_many(range(4))
        pool.join(timeout=60)


def test_fail_fast_error_caught_from_join_is_not_raised_again_at_exit() -> None:
    def handle(item: int, ctx: TaskContext[int]) -> None:
        if item == 2:
            raise ValueError("boom")

    caught: list[shoal.TaskError] = []
    with Pool(handle, workers=2, output=quiet_writer()) as pool:
        pool.put_many(range(5))
        try:
            pool.join()
        except shoal.TaskError as err:
            caught.append(err)
        pool.join()  # raised once, to the first caller: handled now
    assert [e.item for e in caught] == [2]


def test_fail_fast_error_never_caught_surfaces_at_exit() -> None:
    def handle(item: int, ctx: TaskContext[int]) -> None:
        if item == 2:
            raise ValueError("boom")

    with pytest.raises(shoal.TaskError) as info:
        with Pool(handle, workers=2, output=quiet_writer()) as pool:
            pool.put_many(range(5))
    assert info.value.item == 2
