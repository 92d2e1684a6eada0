"""Durable storage for crawl state. Knows SQLite and Redis, not HTTP: the crawler builds on it.

The Redis state imports redis-py only when a state is opened, so importing this package
never loads it.
"""

from ._combine import CombinedPart, combine_parts
from ._fingerprints import FingerprintSet, fingerprint
from ._jobs import Candidate, HostPolicy, JobKind, Lease, Released, host_key
from ._redis import CrawlCounts, HostTally, RedisCrawlState, WorkerInfo
from ._status import read_status, state_for_output
from ._store import (
    DONE,
    FAILED,
    QUEUED,
    SCHEMA_VERSION,
    RunCounts,
    StateStore,
    UrlRow,
    identity_outputs,
    peek_identity,
)

__all__ = [
    "DONE",
    "FAILED",
    "QUEUED",
    "Candidate",
    "CombinedPart",
    "CrawlCounts",
    "FingerprintSet",
    "HostPolicy",
    "HostTally",
    "JobKind",
    "Lease",
    "RedisCrawlState",
    "Released",
    "SCHEMA_VERSION",
    "StateStore",
    "UrlRow",
    "WorkerInfo",
    "combine_parts",
    "fingerprint",
    "host_key",
    "RunCounts",
    "identity_outputs",
    "peek_identity",
    "read_status",
    "state_for_output",
]
