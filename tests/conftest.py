"""Shared fixtures: leaked-thread detection for every test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest


def _live_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves threads behind (once they had a moment to exit)."""
    before = _live_threads()
    yield
    deadline = time.monotonic() + 5.0
    leaked = _live_threads() - before
    while leaked and time.monotonic() < deadline:
        # Threads that are finishing: join them briefly rather than sleeping blindly.
        for t in leaked:
            t.join(timeout=0.05)
        leaked = _live_threads() - before
    assert not leaked, f"leaked threads: {sorted(t.name for t in leaked)}"
