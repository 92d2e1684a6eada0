"""shoal.map: order, laziness, bounded memory, error policies, leaving early, Ctrl-C."""

from __future__ import annotations

import itertools
import logging
import random
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

import shoal
from conftest import interrupt_when_ready
from shoal import RetryLater, RetryPolicy, TaskError, TaskErrorGroup
from sites import Site


def _map_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("shoal-map")]


class Counted:
    """An input that counts what was taken from it against what the consumer saw, and
    checks the bound at every step: taken - consumed <= buffer."""

    def __init__(self, buffer: int, limit: int | None = None) -> None:
        self.buffer = buffer
        self.limit = limit
        self.lock = threading.Lock()
        self.taken = 0
        self.consumed = 0
        self.worst = 0

    def __iter__(self) -> Iterator[int]:
        for i in itertools.count() if self.limit is None else range(self.limit):
            with self.lock:
                self.taken += 1
                self.worst = max(self.worst, self.taken - self.consumed)
            yield i

    def saw(self) -> None:
        with self.lock:
            self.consumed += 1


def _wait_until_feeder_waits(it: shoal.MapIterator[Any]) -> None:
    """The feeder stops only when the bound is reached: wait for that (bounded), by state."""
    for _ in range(10_000):
        with it._pool._lock:
            if it._feed.waiting:
                return
        threading.Event().wait(0.001)
    raise AssertionError("the feeder never reached the buffer bound")


@pytest.mark.parametrize("workers", [1, 3, 8])
def test_ordered_results_come_in_input_order(workers: int) -> None:
    assert list(shoal.map(lambda x: x * x, range(2000), workers=workers)) == [
        x * x for x in range(2000)
    ]


def test_unordered_results_are_all_there() -> None:
    out = list(shoal.map(lambda x: x + 1, range(5000), ordered=False, workers=4))
    assert sorted(out) == list(range(1, 5001))


def test_unordered_yields_in_completion_order() -> None:
    """Item 0 waits for item 1's result to be seen: only completion order can finish."""
    seen_one = threading.Event()

    def fn(x: int) -> int:
        if x == 0:
            assert seen_one.wait(10)
        return x

    out = []
    for value in shoal.map(fn, range(2), workers=2, ordered=False):
        out.append(value)
        if value == 1:
            seen_one.set()
    assert out == [1, 0]


def test_none_is_a_result_and_empty_input_is_fine() -> None:
    assert list(shoal.map(lambda x: None, range(3))) == [None, None, None]
    assert list(shoal.map(lambda x: None, range(3), ordered=False)) == [None] * 3
    assert list(shoal.map(lambda x: x, [])) == []


def test_not_iterable_fails_in_the_caller() -> None:
    with pytest.raises(TypeError):
        shoal.map(lambda x: x, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        shoal.map(lambda x: x, [1], buffer=0)


@pytest.mark.parametrize("ordered", [True, False])
def test_infinite_input_with_break_is_lazy_and_leaves_no_thread(ordered: bool) -> None:
    source = Counted(buffer=16)
    for i, _value in enumerate(shoal.map(lambda x: x, source, buffer=16, ordered=ordered)):
        source.saw()
        if i == 100:
            break
    assert _map_threads() == []
    assert source.taken <= 101 + 16
    assert source.worst <= 16


@pytest.mark.parametrize("ordered", [True, False])
def test_slow_consumer_holds_the_input_back(ordered: bool) -> None:
    source = Counted(buffer=8, limit=400)
    with shoal.map(lambda x: x, source, buffer=8, workers=4, ordered=ordered) as it:
        for n, _ in enumerate(it):
            source.saw()
            if n % 50 == 0:
                # A pause of the consumer: the input must stop at the bound, not run on.
                _wait_until_feeder_waits(it)
                assert source.taken - source.consumed <= 8
    assert source.consumed == 400
    assert source.worst <= 8


def test_slow_head_item_is_bounded_by_the_buffer() -> None:
    gate = threading.Event()
    ran: list[int] = []
    lock = threading.Lock()

    def fn(x: int) -> int:
        if x == 0:
            assert gate.wait(10)
        with lock:
            ran.append(x)
        return x

    source = Counted(buffer=10)
    with shoal.map(fn, source, buffer=10, workers=4) as it:
        first: list[int] = []
        reader = threading.Thread(target=lambda: first.append(next(it)))
        reader.start()
        _wait_until_feeder_waits(it)
        # Item 0 holds the line: only the buffer's worth was read, whatever the wait.
        assert source.taken == 10
        with lock:
            assert len(ran) <= 9
        gate.set()
        reader.join(10)
        assert first == [0]
        assert [next(it) for _ in range(50)] == list(range(1, 51))


def test_fail_fast_raises_when_known_with_the_item_and_stops_the_rest() -> None:
    calls = itertools.count()

    def fn(x: int) -> int:
        next(calls)
        if x == 5:
            raise ValueError("five")
        return x

    got: list[int] = []
    with pytest.raises(TaskError) as info:
        for value in shoal.map(fn, itertools.count(), buffer=16, workers=2):
            got.append(value)
    assert info.value.item == 5
    assert isinstance(info.value.__cause__, ValueError)
    assert got == list(range(len(got))) and len(got) <= 5
    assert next(calls) <= 5 + 16 + 1  # nothing ran beyond what was taken by then
    assert _map_threads() == []


def test_fail_fast_is_raised_before_the_failed_item_is_reached() -> None:
    """Ordered mode does not wait for the failed item's turn (unlike Executor.map)."""
    release = threading.Event()

    def fn(x: int) -> int:
        if x == 0:
            release.wait(10)  # the head item is slow...
        if x == 3:
            raise ValueError("three")
        return x

    try:
        with pytest.raises(TaskError) as info:
            list(shoal.map(fn, range(10), workers=4))
        assert info.value.item == 3
        assert not release.is_set()  # ...and still running when the error came out
    finally:
        release.set()


@pytest.mark.parametrize("ordered", [True, False])
def test_collect_yields_successes_then_one_group(ordered: bool) -> None:
    def fn(x: int) -> int:
        if x % 10 == 3:
            raise KeyError(x)
        return x

    got: list[int] = []
    with pytest.raises(TaskErrorGroup) as info:
        for value in shoal.map(fn, range(100), errors="collect", ordered=ordered, buffer=8):
            got.append(value)
    expected = [x for x in range(100) if x % 10 != 3]
    assert (got if ordered else sorted(got)) == expected
    assert sorted(e.item for e in info.value.exceptions) == list(range(3, 100, 10))
    assert _map_threads() == []


@pytest.mark.parametrize("ordered", [True, False])
def test_log_skips_failed_items(ordered: bool, caplog: pytest.LogCaptureFixture) -> None:
    def fn(x: int) -> int:
        if x in (2, 7):
            raise RuntimeError("boom")
        return x

    with caplog.at_level(logging.WARNING):
        got = list(shoal.map(fn, range(10), errors="log", ordered=ordered, buffer=4))
    assert sorted(got) == [0, 1, 3, 4, 5, 6, 8, 9]
    if ordered:
        assert got == [0, 1, 3, 4, 5, 6, 8, 9]
    messages = sorted(r.getMessage() for r in caplog.records if "failed" in r.getMessage())
    # The item itself, not the (index, item) pair ordered mode carries inside.
    assert messages == [
        "task 2 failed after 1 attempt(s): RuntimeError: boom",
        "task 7 failed after 1 attempt(s): RuntimeError: boom",
    ]


def test_retries() -> None:
    attempts: dict[int, int] = {}
    lock = threading.Lock()

    def fn(x: int) -> int:
        with lock:
            attempts[x] = attempts.get(x, 0) + 1
            n = attempts[x]
        if x % 2 and n < 3:
            raise ConnectionError("flaky")
        if x == 4 and n == 1:
            raise RetryLater(after=0)
        return x

    quick = RetryPolicy(attempts=3, base=0.0)
    assert list(shoal.map(fn, range(6), retry=quick)) == list(range(6))
    assert attempts == {0: 1, 1: 3, 2: 1, 3: 3, 4: 2, 5: 3}
    attempts.clear()
    with pytest.raises(TaskError) as info:
        list(shoal.map(fn, range(6), retry=quick, retry_on=(KeyError,)))
    assert info.value.item in (1, 3, 5) and info.value.attempts == 1


def test_input_error_comes_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield from range(5)
        raise OSError("input broke")

    got: list[int] = []
    with pytest.raises(OSError, match="input broke"):
        for value in shoal.map(lambda x: x, source(), workers=3):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]


def test_exception_in_the_consumer_cancels_and_leaves_no_thread() -> None:
    started = itertools.count()

    def fn(x: int) -> int:
        next(started)
        return x

    with pytest.raises(ZeroDivisionError):
        for value in shoal.map(fn, itertools.count(), buffer=32):
            if value == 10:
                1 / 0  # noqa: B018
    assert _map_threads() == []
    assert next(started) <= 11 + 32


def test_close_and_with_stop_early_and_are_idempotent() -> None:
    it = shoal.map(lambda x: x, itertools.count(), buffer=4)
    assert next(it) == 0
    it.close()
    it.close()
    assert _map_threads() == []
    with pytest.raises(StopIteration):
        next(it)
    with shoal.map(lambda x: x, itertools.count()) as again:
        assert next(again) == 0
    assert _map_threads() == []


def test_in_flight_items_get_the_grace_then_are_abandoned(caplog: pytest.LogCaptureFixture) -> None:
    stuck = threading.Event()
    release = threading.Event()

    def fn(x: int) -> int:
        if x == 1:
            stuck.set()
            release.wait(30)
        return x

    it = shoal.map(fn, range(10), workers=2, grace=0.05)
    try:
        assert next(it) == 0
        assert stuck.wait(10)
        with caplog.at_level(logging.WARNING):
            it.close()
        assert any("abandoned" in r.getMessage() for r in caplog.records)
    finally:
        release.set()  # the abandoned worker may now finish; the leak check joins it


CTRL_C_CHILD = r"""
import itertools, signal, sys, threading, time
import shoal
signal.signal(signal.SIGINT, signal.default_int_handler)
def slow(x):
    time.sleep(0.05)
    return x
try:
    for value in shoal.map(slow, itertools.count(), workers=4, grace=5):
        if value == 0:
            print("ready", flush=True)
except KeyboardInterrupt:
    pass
left = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
print("left", left, flush=True)
sys.exit(130)
"""


def test_ctrl_c_stops_the_map_and_leaves_no_thread() -> None:
    code, out, err = interrupt_when_ready(CTRL_C_CHILD)
    assert code == 130, err
    assert "left []" in out, (out, err)


def _random_run(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randrange(0, 300)
    ordered = rng.random() < 0.5
    buffer = rng.randrange(1, 40)
    workers = rng.randrange(1, 9)
    policy = rng.choice(["fail_fast", "collect", "log"])
    failing = {x for x in range(n) if rng.random() < 0.05}
    stop_at = rng.randrange(0, n + 1) if rng.random() < 0.3 else None
    source = Counted(buffer=buffer, limit=n)

    def fn(x: int) -> int:
        if x in failing:
            source.saw()  # a failed item frees its slot without reaching the consumer
            raise ValueError(x)
        return x * 3

    got: list[int] = []
    try:
        for i, value in enumerate(
            shoal.map(fn, source, workers=workers, ordered=ordered, buffer=buffer, errors=policy)
        ):
            source.saw()
            got.append(value)
            if stop_at is not None and i + 1 >= stop_at:
                break
    except TaskErrorGroup as group:
        assert policy == "collect" and {e.item for e in group.exceptions} == failing
    except TaskError as err:
        assert policy == "fail_fast" and err.item in failing
    else:
        if stop_at is None:
            assert policy == "log" or not failing
            want = [x * 3 for x in range(n) if x not in failing]
            assert (got if ordered else sorted(got)) == want
    if ordered:
        assert got == [x * 3 for x in range(n) if x not in failing][: len(got)]
    assert source.worst <= buffer
    assert _map_threads() == []


@pytest.mark.parametrize("seed", range(20))
def test_random_maps_short(seed: int) -> None:
    _random_run(seed)


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(20, 1020))
def test_random_maps_stress(seed: int) -> None:
    _random_run(seed)


def test_seed_crawler_example_crawls_levels_and_skips_failures() -> None:
    from pathlib import Path

    from sites import Site, html

    example = Path(__file__).resolve().parent.parent / "examples" / "seed_crawler_map.py"
    with Site() as site:
        site.routes.update(
            {
                "/": html("home", "/a", "/b", "/missing", "https://elsewhere.invalid/"),
                "/a": html("A", "/", "/c"),
                "/b": html("B", "/a"),
                "/c": html("C", "/too-deep"),
                "/too-deep": html("D"),
            }
        )
        proc = subprocess.run(
            [sys.executable, str(example), site.url("/"), "--depth", "2", "--workers", "4"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        fetched = sorted(line.split()[1] for line in proc.stdout.splitlines())
        assert fetched == sorted(site.url(p) for p in ("/", "/a", "/b", "/c"))
        assert all(line.startswith("200 ") for line in proc.stdout.splitlines())
        assert "/missing" in proc.stderr and "404" in proc.stderr  # logged, skipped
        assert site.count("/too-deep") == 0


@pytest.mark.parametrize("ordered", [True, False])
def test_error_caught_inside_with_is_not_raised_again(ordered: bool) -> None:
    def fn(x: int) -> int:
        if x == 3:
            raise ValueError("bad")
        return x

    caught: list[TaskError] = []
    with shoal.map(fn, range(10), workers=2, ordered=ordered) as results:
        try:
            for _ in results:
                pass
        except TaskError as err:
            caught.append(err)
        assert list(results) == []  # closed by the failure: nothing more, nothing raised
    assert [e.item for e in caught] == [3]
    assert _map_threads() == []


def test_log_is_one_warning_line_per_failure_with_the_traceback_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 404 among many URLs is one line, not a 25-line traceback; DEBUG has the traceback."""
    long_path = "/missing/" + "x" * 5000

    def fetch(url: str) -> int:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)

    with Site({"/ok": "fine"}) as site:
        urls = [site.url("/ok"), site.url("/gone"), site.url(long_path)]
        with caplog.at_level(logging.INFO, logger="shoal"):
            assert list(shoal.map(fetch, urls, workers=2, errors="log")) == [200]
        failures = [r for r in caplog.records if "failed after" in r.getMessage()]
        assert [r.levelno for r in failures] == [logging.WARNING] * 2
        assert all(r.exc_info is None for r in failures)
        assert "Traceback" not in caplog.text
        assert all("\n" not in r.getMessage() for r in failures)
        gone = next(r.getMessage() for r in failures if "/gone" in r.getMessage())
        assert gone.endswith("HTTPError: HTTP Error 404: Not Found")
        long_one = next(r.getMessage() for r in failures if "xxx" in r.getMessage())
        assert len(long_one) < 500  # the item's repr is bounded

        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="shoal"):
            assert list(shoal.map(fetch, [site.url("/gone")], errors="log")) == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is None
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert len(debug) == 1 and "/gone" in debug[0].getMessage()
    assert "Traceback" in caplog.text and "HTTPError" in caplog.text
