"""The public API is what we mean it to be, and importing it stays light."""

from __future__ import annotations

import shoal

EXPECTED = {
    "CrawlMismatch",
    "CrawlResult",
    "Crawler",
    "ErrorPolicy",
    "InvalidURL",
    "JoinTimeout",
    "MapIterator",
    "OutputError",
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
}


def test_exported_names() -> None:
    assert set(shoal.__all__) == EXPECTED
    for name in shoal.__all__:
        assert getattr(shoal, name) is not None


def test_every_error_is_a_shoal_error() -> None:
    for name in shoal.__all__:
        obj = getattr(shoal, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, shoal.ShoalError), name


# How light `import shoal` is, and which way imports go: tests/test_layout.py.
