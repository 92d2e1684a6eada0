"""The live progress display: silent off a terminal, and a growing total on one."""

from __future__ import annotations

import io
import sys
import threading

import pytest

from shoal import Pool, TaskContext, Writer
from shoal.runtime import ProgressDisplay, ProgressState


def test_silent_when_not_a_tty() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(lambda: ProgressState(1, 2), stream=stream)
    assert not display.enabled
    with display:
        pass
    assert stream.getvalue() == ""


def test_draws_a_growing_total_and_stops_cleanly() -> None:
    stream = io.StringIO()
    state = {"done": 0, "total": 1}
    lock = threading.Lock()

    def snapshot() -> ProgressState:
        with lock:
            return ProgressState(state["done"], state["total"], note="queued 3")

    with ProgressDisplay(snapshot, description="crawl", stream=stream, enabled=True, refresh=0.01):
        with lock:
            state.update(done=5, total=40)  # the total grows as tasks spawn tasks
    out = stream.getvalue()
    assert "crawl" in out and "5/40" in out and "queued 3" in out


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr is in an interactive shell."""

    def isatty(self) -> bool:
        return True


def _progress_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "shoal-progress" and t.is_alive()]


def test_pool_progress_option_leaves_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def handle(item: int, ctx: TaskContext[int]) -> None:
        if item < 20:
            ctx.put(item + 20)

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)  # the display draws only on a terminal
    assert not _progress_threads()
    with Writer(io.StringIO()) as out, Pool(handle, workers=2, progress=True, output=out) as pool:
        assert len(_progress_threads()) == 1  # drawing while the pool runs
        pool.put_many(range(20))
        pool.join()
        assert pool.stats().done == 40
    assert not _progress_threads()  # stopped and joined when the pool closed
    assert "40/40" in terminal.getvalue()  # the last frame shows the finished count
