"""The live progress display: silent off a terminal, and a growing total on one."""

from __future__ import annotations

import io
import threading

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


def test_pool_progress_option_leaves_no_thread() -> None:
    def handle(item: int, ctx: TaskContext[int]) -> None:
        if item < 20:
            ctx.put(item + 20)

    with Writer(io.StringIO()) as out, Pool(handle, workers=2, progress=True, output=out) as pool:
        pool.put_many(range(20))
        pool.join()
        assert pool.stats().done == 40
