"""The log line of a failed task (``errors="log"``), shared by Pool and shoal.map.

shoal.map logs at its reader, naming the input item rather than the pool's
(index, item) pair; Pool logs on the worker. Both must write the same line.
"""

from __future__ import annotations

import logging
import reprlib
from typing import Any

__all__ = ["log_failure"]

logger = logging.getLogger(__name__)

# An item may be a whole page or a long URL list: its repr in a log line is bounded.
_ITEM_REPR = reprlib.Repr()
_ITEM_REPR.maxstring = 160
_ITEM_REPR.maxother = 160
_MAX_MESSAGE = 300


def log_failure(item: Any, attempts: int, exc: BaseException) -> None:
    """The ``errors="log"`` record of a failed task: one WARNING line (item, exception
    type and message); the traceback goes in a DEBUG record of its own.

    A failure per item is expected in a "log and skip" run (a 404 among a thousand URLs),
    so a traceback each would bury everything else; with DEBUG logging it is there.
    """
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the record
        message = "<unprintable message>"
    lines = message.strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > _MAX_MESSAGE or len(lines) > 1:
        first = first[:_MAX_MESSAGE] + " ..."
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    shown = _ITEM_REPR.repr(item)
    if len(shown) > _MAX_MESSAGE:  # a tuple of long strings: each is bounded, not the whole
        shown = shown[:_MAX_MESSAGE] + "..."
    logger.warning("task %s failed after %d attempt(s): %s", shown, attempts, what)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("traceback of task %s", shown, exc_info=(type(exc), exc, exc.__traceback__))
