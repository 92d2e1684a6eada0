"""A live progress line on a terminal whose total may grow while it runs.

Silent unless the stream is a TTY (so logs and pipes stay clean). rich is imported
only when a display actually starts, which keeps ``import shoal`` light.

The line answers "how fast, how long": a smoothed rate, and the time left when the
total means something (``bounded``: a limit such as ``--max-pages``; otherwise the
queue, which may still grow, so the time left is shown as a lower bound). While it runs,
anything written to ``sys.stderr`` (log lines) is printed above it, never through it.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["ProgressDisplay", "ProgressState", "RateMeter", "describe", "format_eta"]


# Time constant of the rate's exponential smoothing: a stall shows within a few
# seconds, and one slow response does not swing the estimate.
_RATE_WINDOW = 5.0


@dataclass(frozen=True, slots=True)
class ProgressState:
    done: int
    total: int  # grows as tasks spawn tasks, or a crawl discovers pages
    failed: int = 0
    note: str = ""
    bounded: bool = False  # total is a hard limit (e.g. max_pages), not a growing queue
    errors: tuple[tuple[str, int], ...] = ()  # (kind, count), most frequent first
    time_left: float | None = None  # seconds to a time limit (e.g. max_time), if any


class RateMeter:
    """Items per second, smoothed exponentially over about ``window`` seconds."""

    def __init__(self, window: float = _RATE_WINDOW, clock: Callable[[], float] = time.monotonic):
        self._window = window
        self._clock = clock
        self._started = clock()
        self._last_t = self._started
        self._last_done = 0
        self.rate: float | None = None

    def update(self, done: int) -> float | None:
        now = self._clock()
        dt = now - self._last_t
        if dt <= 0:
            return self.rate
        instant = (done - self._last_done) / dt
        if self.rate is None:
            # Until a full window has passed, the plain average is the better guess.
            if now - self._started >= min(self._window, 1.0) or done:
                self.rate = done / (now - self._started)
        else:
            alpha = 1 - math.exp(-dt / self._window)
            self.rate += alpha * (instant - self.rate)
        self._last_t, self._last_done = now, done
        return self.rate


def format_eta(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def describe(state: ProgressState, rate: float | None, unit: str) -> tuple[str, str, str]:
    """(rate, time left, note) as the live line shows them."""
    rate_text = f"{rate:.1f} {unit}/s" if rate is not None else f"- {unit}/s"
    left = max(state.total - state.done, 0)
    limit = None if state.time_left is None else max(state.time_left, 0.0)
    if rate is None or rate <= 0 or state.total <= 0:
        eta = "left ?" if limit is None else f"left ≤{format_eta(limit)}"
    elif limit is not None and limit < left / rate:
        eta = f"left ~{format_eta(limit)}"  # the time limit ends the run first
    elif state.bounded:
        eta = f"left ~{format_eta(left / rate)}"
    else:
        eta = f"left ≥{format_eta(left / rate)}"  # the queue may still grow
    note = state.note
    if state.errors:
        shown = ", ".join(f"{kind} {n}" for kind, n in state.errors[:3])
        more = len(state.errors) - 3
        errors = f"errors: {shown}" + (f" +{more} kinds" if more > 0 else "")
        note = f"{note}; {errors}" if note else errors
    elif state.failed:
        note = f"{note}; failed {state.failed}" if note else f"failed {state.failed}"
    return rate_text, eta, note.strip()


class ProgressDisplay:
    """Redraws ``snapshot()`` a few times a second until stopped.

    The refresh thread sleeps on an Event, so stop() wakes it at once and no frame is
    drawn after stop() returns.
    """

    def __init__(
        self,
        snapshot: Callable[[], ProgressState],
        *,
        description: str = "tasks",
        unit: str = "tasks",
        stream: TextIO | None = None,
        refresh: float = 0.25,
        enabled: bool | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._description = description
        self._unit = unit
        self._meter = RateMeter()
        self._stream = stream if stream is not None else sys.stderr
        self._refresh = refresh
        isatty = getattr(self._stream, "isatty", None)
        self.enabled = bool(isatty and isatty()) if enabled is None else enabled
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress: Any = None
        self._task: Any = None

    def start(self) -> ProgressDisplay:
        if not self.enabled or self._thread is not None:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.text import Text

        class _WithDetail(Progress):
            """The bar line, then a line of details (queue, hosts, errors) when there
            are any: one line holding both would not fit an 80-column terminal."""

            def get_renderables(self) -> Any:
                yield self.make_tasks_table(self.tasks)
                for task in self.tasks:
                    note = task.fields.get("note")
                    if note:
                        yield Text("  " + note, no_wrap=True, overflow="ellipsis")

        self._progress = _WithDetail(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[eta]}"),
            TimeElapsedColumn(),
            console=Console(file=self._stream),
            auto_refresh=False,
            transient=False,
            # Log lines written to sys.stderr go above the bar; stdout is left alone
            # (it may carry records, and must never pass through the display).
            redirect_stdout=False,
            redirect_stderr=True,
        )
        self._meter = RateMeter()
        self._task = self._progress.add_task(
            self._description, total=None, note="", rate="", eta=""
        )
        self._progress.start()
        self._thread = threading.Thread(target=self._run, name="shoal-progress", daemon=True)
        self._thread.start()
        return self

    def _draw(self) -> None:
        s = self._snapshot()
        rate, eta, note = describe(s, self._meter.update(s.done), self._unit)
        self._progress.update(
            self._task,
            completed=s.done,
            total=max(s.total, s.done),
            note=note,
            rate=rate,
            eta=eta,
        )
        self._progress.refresh()

    def _run(self) -> None:
        while not self._stopped.wait(self._refresh):
            self._draw()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopped.set()
        self._thread.join()
        self._thread = None
        self._draw()
        self._progress.stop()

    def __enter__(self) -> ProgressDisplay:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
