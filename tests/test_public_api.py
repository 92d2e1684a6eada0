"""The public API is what we mean it to be, and importing it stays light."""

from __future__ import annotations

import builtins
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

import shoal

EXPECTED = {
    "CrawlMismatch",
    "CrawlResult",
    "Crawler",
    "ErrorPolicy",
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
}


def test_exported_names() -> None:
    assert set(shoal.__all__) == EXPECTED
    for name in shoal.__all__:
        obj = getattr(shoal, name)
        if name == "__version__":
            from shoal import _version

            assert obj is _version.__version__
            continue
        # The very object its defining module holds under the same name, not a look-alike.
        assert obj.__module__.startswith("shoal."), name
        assert obj.__name__ == name
        assert getattr(sys.modules[obj.__module__], name) is obj, name


def test_all_is_sorted_and_is_every_public_name() -> None:
    """As httpx's test_exported_members: what the package binds is what it exports (plus
    ``map`` and the subpackages); no helper it imports leaks into vars(shoal)."""
    for name in shoal.__all__:
        getattr(shoal, name)  # the lazy names are bound on first use
    assert shoal.__all__ == sorted(shoal.__all__)
    public = {
        name
        for name, value in vars(shoal).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == (set(shoal.__all__) - {"__version__"}) | {"map"}


def test_dir_shows_the_public_api_and_the_subpackages() -> None:
    root = Path(shoal.__file__).parent
    subpackages = {m.name for m in pkgutil.iter_modules([str(root)]) if m.ispkg}
    assert dir(shoal) == sorted({*shoal.__all__, "map", *subpackages})
    for leaked in ("importlib", "Any", "TYPE_CHECKING", "annotations", "typing"):
        assert leaked not in dir(shoal)


def test_map_is_reachable_but_not_star_exported() -> None:
    from shoal.runtime._map import map as defined

    assert shoal.map is defined
    assert "map" not in shoal.__all__
    # A star import leaves the builtin map alone (checked in a fresh interpreter).
    code = "from shoal import *\nimport builtins\nassert map is builtins.map\nprint(Pool)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "shoal.runtime._pool.Pool" in done.stdout
    assert builtins.map is not shoal.map


def test_every_error_is_a_shoal_error() -> None:
    for name in shoal.__all__:
        obj = getattr(shoal, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, shoal.ShoalError), name


# How light `import shoal` is, and which way imports go: tests/test_layout.py.
