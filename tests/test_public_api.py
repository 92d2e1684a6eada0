"""The public API is what we mean it to be, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import shoal

EXPECTED = {
    "CrawlMismatch",
    "CrawlResult",
    "Crawler",
    "ErrorPolicy",
    "InvalidURL",
    "JoinTimeout",
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
    "StateError",
    "StateLocked",
    "StateMismatch",
    "TaskContext",
    "TaskError",
    "TaskErrorGroup",
    "UsageError",
    "Writer",
    "WriterError",
    "__version__",
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


def test_import_is_light() -> None:
    code = (
        "import sys, shoal; heavy = {'urllib3', 'click', 'redis', 'rich', 'selectolax', 'parsel'}"
        " & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_imports_flow_one_way() -> None:
    """runtime <- state <- crawler <- cli: no layer imports one above it."""
    import ast
    from pathlib import Path

    root = Path(shoal.__file__).parent
    rank = {"runtime": 0, "state": 1, "crawler": 2, "cli": 3}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).parts
        if rel[0] not in rank:
            continue
        mine = rank[rel[0]]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2 and node.module:
                target = node.module.split(".")[0]
                if target in rank:
                    assert rank[target] <= mine, f"{'/'.join(rel)} imports {target}"
