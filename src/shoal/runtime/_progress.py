"""A live progress line on a terminal whose total may grow while it runs.

Silent unless the stream is a TTY (so logs and pipes stay clean). rich is imported
only when a display actually starts, which keeps ``import shoal`` light.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["ProgressDisplay", "ProgressState"]


@dataclass(frozen=True, slots=True)
class ProgressState:
    done: int
    total: int  # grows as tasks spawn tasks, or a crawl discovers pages
    failed: int = 0
    note: str = ""


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
        stream: TextIO | None = None,
        refresh: float = 0.25,
        enabled: bool | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._description = description
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

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=Console(file=self._stream),
            auto_refresh=False,
            transient=False,
        )
        self._task = self._progress.add_task(self._description, total=None, note="")
        self._progress.start()
        self._thread = threading.Thread(target=self._run, name="shoal-progress", daemon=True)
        self._thread.start()
        return self

    def _draw(self) -> None:
        s = self._snapshot()
        note = s.note + (f" failed={s.failed}" if s.failed else "")
        self._progress.update(self._task, completed=s.done, total=max(s.total, s.done), note=note)
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
