"""Durable storage for crawl state. Knows SQLite, not HTTP: the crawler builds on it."""

from ._fingerprints import FingerprintSet, fingerprint
from ._store import (
    DONE,
    FAILED,
    QUEUED,
    RunCounts,
    StateStore,
    UrlRow,
    peek_identity,
    read_status,
)

__all__ = [
    "DONE",
    "FAILED",
    "QUEUED",
    "FingerprintSet",
    "StateStore",
    "UrlRow",
    "fingerprint",
    "RunCounts",
    "peek_identity",
    "read_status",
]
