"""shoal: threads that talk through queues, and a web crawler built on them.

The runtime (``Pool``, ``Writer``, ``Pipeline``) is imported eagerly and uses only the
standard library. The crawler's names are loaded on first use, so ``import shoal``
stays light: no HTTP client, HTML parser, click or jinja2 until you ask for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    CrawlMismatch,
    FrontierError,
    InvalidURL,
    JoinTimeout,
    OutputError,
    PoolClosed,
    QueueFull,
    RedisStateError,
    RedisUnavailable,
    RetryLater,
    ShoalError,
    StaleCommit,
    StateError,
    StateLocked,
    StateMismatch,
    TaskError,
    TaskErrorGroup,
    TransportError,
    UsageError,
    WriterError,
)
from ._version import __version__
from .runtime import (
    ErrorPolicy,
    MapIterator,
    Pipeline,
    Pool,
    PoolStats,
    RetryPolicy,
    ShutdownReport,
    Stage,
    TaskContext,
    Writer,
    map,
)

if TYPE_CHECKING:
    from .crawler import Crawler, CrawlResult, Page

__all__ = [
    "CrawlMismatch",
    "CrawlResult",
    "Crawler",
    "ErrorPolicy",
    "InvalidURL",
    "JoinTimeout",
    "MapIterator",
    "Page",
    "Pipeline",
    "Pool",
    "PoolClosed",
    "PoolStats",
    "QueueFull",
    "RedisStateError",
    "RedisUnavailable",
    "RetryLater",
    "RetryPolicy",
    "OutputError",
    "ShoalError",
    "ShutdownReport",
    "StaleCommit",
    "Stage",
    "FrontierError",
    "StateError",
    "StateLocked",
    "StateMismatch",
    "TaskContext",
    "TaskError",
    "TaskErrorGroup",
    "TransportError",
    "UsageError",
    "Writer",
    "WriterError",
    "__version__",
    "map",
]

_LAZY = {"Crawler": ".crawler", "CrawlResult": ".crawler", "Page": ".crawler"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
