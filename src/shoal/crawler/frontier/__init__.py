"""Where a crawl's URLs live: the seam (``_base``) and its backends.

``memory`` keeps everything in this process; ``sqlite`` keeps it in the crawl's state
file (resumable, bounded memory); ``redis`` shares one crawl among many processes (redis-py
is imported only when one is opened). Only ``_base`` is needed by the crawler itself.
"""

from ._base import (
    MAX_HOLD,
    Candidate,
    Committed,
    Frontier,
    FrontierStats,
    HostCounts,
    HostPace,
    HostPolicy,
    JobKind,
    Lease,
    Outcome,
    Release,
    Released,
)
from .memory import MemoryFrontier
from .redis import RedisFrontier
from .sqlite import SqliteFrontier

__all__ = [
    "MAX_HOLD",
    "Candidate",
    "Committed",
    "Frontier",
    "FrontierStats",
    "HostCounts",
    "HostPace",
    "HostPolicy",
    "JobKind",
    "Lease",
    "MemoryFrontier",
    "Outcome",
    "RedisFrontier",
    "Release",
    "Released",
    "SqliteFrontier",
]
