"""shoal: threads that talk through queues, and a web crawler built on them.

The runtime (``Pool``, ``Writer``, ``Pipeline``) is imported eagerly and uses only the
standard library. The crawler's names are loaded on first use, so ``import shoal``
stays light: no HTTP client, HTML parser, click or jinja2 until you ask for them.
"""

# No ``from __future__ import annotations`` and no plain ``import importlib``/``typing``:
# every name bound here is an attribute of the package (vars(shoal)), so only the public
# API, ``map`` and private names are bound.
import typing as _typing
from importlib import import_module as _import_module

from ._errors import (
    CrawlMismatch,
    FrontierError,
    InvalidURL,
    JoinTimeout,
    LoginFailed,
    NoProxyLeft,
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
)
from .runtime import (
    map as map,  # public as shoal.map, not in __all__ (see below); "as": an explicit export
)

if _typing.TYPE_CHECKING:
    from typing import Any

    from .crawler import Crawler, CrawlResult, Page, Request

# ``map`` is left out on purpose: ``from shoal import *`` must not shadow the builtin.
# It stays ``shoal.map``.
__all__ = [
    "CrawlMismatch",
    "CrawlResult",
    "Crawler",
    "ErrorPolicy",
    "FrontierError",
    "InvalidURL",
    "JoinTimeout",
    "LoginFailed",
    "MapIterator",
    "NoProxyLeft",
    "OutputError",
    "Page",
    "Pipeline",
    "Pool",
    "PoolClosed",
    "PoolStats",
    "QueueFull",
    "RedisStateError",
    "RedisUnavailable",
    "Request",
    "RetryLater",
    "RetryPolicy",
    "ShoalError",
    "ShutdownReport",
    "Stage",
    "StaleCommit",
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
]

_LAZY = {
    "Crawler": ".crawler",
    "CrawlResult": ".crawler",
    "Page": ".crawler",
    "Request": ".crawler",
}
# The subpackages, listed by dir(shoal) whether imported yet or not.
_SUBPACKAGES = ("cli", "crawler", "http", "report", "runtime", "state")


def __getattr__(name: str) -> "Any":
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    value = getattr(_import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The public API and the subpackages: not the helpers this module imports.
    return sorted({*__all__, "map", *_SUBPACKAGES})
